"""compare(fit_summary, replication, mapping): the pairing with the replication, as data."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_nqp import estimands as E
from bayes_nqp.compare import compare
from bayes_nqp.contract import FitSummary, ParamEntry
from bayes_nqp.results import Z_INTERVAL


def _fit(*names, index=None) -> FitSummary:
    return FitSummary("m", {n: ParamEntry(0.1, 0.01, (0.08, 0.12), 1.0) for n in names},
                      estimand_index=index or {})


def _slopes(n: int) -> dict:
    """The estimand index of a fit with ``n`` regime slopes ``slope(regime)``."""
    return E.index(E.dataset({"slope": E.indexed(np.zeros((1, 1, n)), "regime", range(1, n + 1), "slope[{}]")}))


def _freq(cmp) -> dict:
    return {k: c.to_json()["frequentist"] for k, c in cmp.items()}


def test_wildcards_bind_dict_keys_and_fill_the_param_and_the_source():
    rep = {"het": {"region": {"east": {"estimate": 0.2, "ci95": [0.1, 0.3]},
                              "west": {"estimate": None, "ci95": None}}}}
    mapping = [{"param": "tau[{g}={level}]", "estimate": "het.{g}.{level}.estimate",
                "ci": "het.{g}.{level}.ci95", "source": "split ({g} = {level})"}]
    out = _freq(compare(_fit("tau[region=east]", "tau[region=west]"), rep, mapping))
    assert out == {"tau[region=east]": {"estimate": 0.2, "ci95": [0.1, 0.3], "source": "split (region = east)"}}


def test_the_first_entry_that_matches_wins_and_estimands_the_fit_lacks_are_left_out():
    rep = {"a": {"estimate": None}, "b": {"estimate": 2.0, "ci95": [1.0, 3.0]}, "c": {"estimate": 9.0}}
    mapping = [{"param": "tau", "estimate": "a.estimate", "ci": "a.ci95", "source": "A"},
               {"param": "tau", "estimate": "b.estimate", "ci": "b.ci95", "source": "B"},
               {"param": "other", "estimate": "c.estimate"}]
    out = _freq(compare(_fit("tau"), rep, mapping))
    assert out == {"tau": {"estimate": 2.0, "ci95": [1.0, 3.0], "source": "B"}}


def test_list_positions_count_from_one_and_se_gives_a_normal_interval():
    rep = {"thr": {"coefs": [1.0, 2.0], "se": [0.1, 0.2]}}
    mapping = [{"param": "slope[{j_1}]", "estimate": "thr.coefs.{j}", "se": "thr.se.{j}", "same_count": True}]
    out = _freq(compare(_fit("slope[1]", "slope[2]", index=_slopes(2)), rep, mapping))
    assert out["slope[2]"]["ci95"] == pytest.approx([2.0 - Z_INTERVAL * 0.2, 2.0 + Z_INTERVAL * 0.2])
    # as many matches as the fit has slopes, or none at all
    assert compare(_fit("slope[1]", index=_slopes(1)), rep, mapping) == {}
    assert compare(_fit("slope[1]", "slope[2]", "slope[3]", index=_slopes(3)), rep, mapping) == {}


def test_unique_entries_apply_only_to_a_single_match():
    one = {"med": {"hc": {"direct": {"estimate": 0.3}}}}
    two = {"med": {"hc": {"direct": {"estimate": 0.3}}, "st": {"direct": {"estimate": 0.4}}}}
    mapping = [{"param": "direct", "estimate": "med.{m}.direct.estimate", "unique": True}]
    assert set(compare(_fit("direct"), one, mapping)) == {"direct"}
    assert compare(_fit("direct"), two, mapping) == {}


def test_no_replication_means_no_comparison():
    assert compare(_fit("tau"), None, [{"param": "tau", "estimate": "did.estimate"}]) == {}
