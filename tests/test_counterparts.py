"""bn.fit compares with the counterpart sections it runs itself when given no replication; the
Bayesian fit (bayes/fit.py) only takes a summary or a function that gives one."""

from __future__ import annotations

from types import SimpleNamespace

import bayes_nqp as bn
import bayes_nqp.bayes
from bayes_nqp.counterparts import replication_for


def test_bn_fit_without_a_replication_passes_the_counterpart_runner(monkeypatch):
    seen, fitted = {}, SimpleNamespace(model="did")  # did declares no further stages
    monkeypatch.setattr(bayes_nqp.bayes, "fit", lambda *a, **k: seen.update(k) or fitted)
    assert bn.fit("did", None) is fitted and seen["replication"] is replication_for
    bn.fit("did", None, replication=False)
    assert seen["replication"] is False
    bn.fit("did", None, replication={"did": {}})
    assert seen["replication"] == {"did": {}}


def test_replication_for_runs_the_models_section_with_its_options(panel):
    rep = replication_for(SimpleNamespace(replication_section="did", replication_options={}, panel=panel))
    assert rep["did"]["estimate"] is not None and "did" in rep
    assert replication_for(SimpleNamespace(replication_section=None)) is None
