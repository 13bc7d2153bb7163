"""TWFE DID section: equality with pyfixest, recovery of a known effect, the map's options."""

from __future__ import annotations

import numpy as np
import pyfixest as pf
import pytest

import bayes_nqp as bn
from bayes_nqp.frequentist.did import did


def test_did_identical_to_pyfixest_called_directly(panel):
    out = did(panel).summary
    for key, fml in (("did", "y ~ D | unit + time"), ("did_controls", "y ~ D + x1 + x2 | unit + time")):
        fit = pf.feols(fml, data=panel.df, vcov={"CRV1": "unit"})
        ci = fit.confint().loc["D"].to_numpy()
        np.testing.assert_allclose(out[key]["estimate"], fit.coef()["D"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(out[key]["se"], fit.se()["D"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(out[key]["ci95"], ci, rtol=0, atol=1e-10)
        np.testing.assert_allclose(out[key]["pvalue"], fit.pvalue()["D"], rtol=0, atol=1e-10)
        assert out[key]["n_obs"] == panel.n_obs and out[key]["n_units"] == panel.n_units


def test_did_ci_covers_known_constant_effect(panel):
    # total effect of D on y in the fixture: direct 0.5 + a·b = 0.4·0.5
    lo, hi = did(panel).summary["did_controls"]["ci95"]
    assert lo < 0.7 < hi


def test_did_uses_unit_effects_only_when_map_turns_time_effects_off(make_panel):
    p = make_panel(time_effects=False, seed=3)
    fit = pf.feols("y ~ D | unit", data=p.df, vcov={"CRV1": "unit"})
    assert did(p).summary["did"]["estimate"] == pytest.approx(fit.coef()["D"], abs=1e-10)


def test_did_without_controls_in_map_reports_plain_did_only(make_panel):
    p = make_panel(controls=False, seed=4)
    out = did(p)
    # plain TWFE and, for unit-varying effects, the mean of the unit effects (no controls)
    assert set(out.summary) == {"did", "did_unit_mean"}
    assert list(out.tables["did"].columns) == ["statistic", "TWFE"]


def test_did_table_puts_both_models_side_by_side(panel):
    table = did(panel).tables["did"]
    assert list(table.columns) == ["statistic", "TWFE", "TWFE + controls"]
    assert "estimate" in set(table["statistic"])


def test_did_summary_through_replicate_carries_simulated_notice(panel):
    summary = bn.replicate("did", panel)
    assert summary["notice"].startswith("SIMULATED DATA")
    assert {"did", "did_controls"} <= set(summary)


def test_demo_twfe_did_positive_and_significant(demo):
    out = did(demo).summary
    for key in ("did", "did_controls"):
        assert out[key]["estimate"] > 0 and out[key]["pvalue"] < 0.05
        assert out[key]["n_units"] == 287
