"""The did model on panels far larger than the demo (issue 10): a 20,000-row, 10,000-unit panel
from the generator fits with small draws and covers the truth; above the size thresholds the
post-processing thins (LOO, PPC) and keeps per-unit summaries instead of per-draw unit effects;
the report's figures of such a fit have no element per unit."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

import bayes_nqp as bn
from bayes_nqp.bayes import did as did_module
from bayes_nqp.data.panel import panel_from_frame
from bayes_nqp.data.simulate import DemoParams, simulate_demo

#: a time-constant effect with unit-varying factors and AR(1) errors: the did estimand (the mean of
#: the unit effects) and the truth's att (mean over treated cells) coincide up to the weighting
SIM = dict(ramp_start=1.0, jump=0.0, region_mult={"east": 1.0, "central": 1.0, "west": 1.0},
           size_mult={"large": 1.0, "medium": 1.0, "small": 1.0}, effect_sd=0.3, rho_y=0.5)
UNITS, PERIODS = 10_000, 2


@pytest.fixture(scope="module")
def big_fit(tmp_path_factory):
    df, cmap, truth = simulate_demo(7, n_units=UNITS, periods=PERIODS, params=replace(DemoParams(), **SIM))
    panel = panel_from_frame(df, cmap)
    mp = pytest.MonkeyPatch()
    # thresholds low enough that this panel takes the large-panel paths
    mp.setattr(did_module, "UNIT_DRAW_MAX_VALUES", 1_000_000)
    mp.setattr(did_module, "LOO_MAX_VALUES", 1_000_000)
    mp.setattr(did_module, "PPC_MAX_VALUES", 200_000)
    try:
        fit = bn.fit("did", panel, draws=300, tune=300, chains=2, seed=11, replication=False, psense=False)
    finally:
        mp.undo()
    out = tmp_path_factory.mktemp("big") / "did"
    fit.save(out)
    return fit, truth, out


def test_did_on_a_20000_row_panel_covers_the_truth(big_fit, mc):
    fit, truth, _ = big_fit
    assert truth["counts"]["cells"] == UNITS * PERIODS == 20_000
    assert truth["frame"] == "synthetic"
    mc.in_hdi(fit.draws["tau"], truth["att"], "tau on 20,000 rows")
    assert fit.diag["rhat_max"] < 1.02


def test_large_panel_keeps_unit_summaries_and_thins_loo_and_ppc(big_fit):
    fit, _, _ = big_fit
    post = fit.idata["posterior"]
    assert "alpha" not in post.data_vars and "tau_unit_z" not in post.data_vars
    ue = fit.idata["unit_effects"].to_dataset()
    assert ue["alpha_mean"].shape == (UNITS,) and np.all(ue["tau_unit_z_sd"].to_numpy() > 0)
    assert "not per draw" in ue.attrs["note"]
    ll = fit.idata["log_likelihood"].to_dataset()
    assert ll.sizes["draw"] < post.sizes["draw"] and ll.sizes["unit"] == UNITS
    assert np.isfinite(fit.diag["loo"]["elpd"])
    pp = fit.idata["posterior_predictive"].to_dataset()
    assert pp.sizes["chain"] * pp.sizes["draw"] * pp.sizes["obs"] <= 200_000 + 2 * 20_000
    assert "error" not in fit.diag["ppc"]


def test_report_figures_of_a_10000_unit_fit_have_no_per_unit_element(big_fit):
    import matplotlib.pyplot as plt

    from bayes_nqp.report import figures as F

    fit, _, out = big_fit
    summary = json.loads((out / "summary.json").read_text())
    names = list(fit.draws)
    figs = [F.rank_plot(out, names, "rank"), F.trace_plot(out, names, "trace"),
            F.ppc_plot(out, "ppc"), F.forest_plot(summary, "forest", True)]
    figs = [f for f in figs if f is not None]
    assert len(figs) >= 3
    for fig in figs:
        assert len(fig.axes) < 20
        for ax in fig.axes:
            assert len(ax.get_yticklabels()) < 50 and len(ax.patches) < 200
            assert len(ax.lines) + len(ax.collections) < 200  # never one element per unit
        plt.close(fig)


def test_loo_on_many_units_is_a_subsample_estimate_within_its_error(monkeypatch):
    from arviz_base import from_dict
    from arviz_stats import loo

    from bayes_nqp.bayes import diagnostics as D

    rng = np.random.default_rng(3)
    n = 1500
    ll = rng.normal(-2.0, 0.3, size=(2, 200, n)) + rng.normal(0.0, 1.0, size=n)
    dt = from_dict({"posterior": {"x": rng.normal(size=(2, 200))}, "log_likelihood": {"y": ll}},
                   dims={"y": ["unit"]})
    monkeypatch.setattr(D, "LOO_SUBSAMPLE_ABOVE", 1000)
    monkeypatch.setattr(D, "LOO_SUBSAMPLE", 300)
    got = D.loo_summary(dt)
    full = loo(dt)
    assert got["subsample"] == 300 and got["n_points"] == n
    assert abs(got["elpd"] - float(full.elpd)) < 4 * got["subsampling_se"]
    assert got["subsampling_se"] < 0.1 * abs(float(full.elpd))
    assert got["se"] == pytest.approx(float(full.se), rel=0.2)


def test_loo_comparison_on_many_units_is_a_subsample_estimate_within_its_error(monkeypatch):
    """The report's and the threshold stage's LOO comparison (diagnostics.loo_compare): above
    the threshold the same sub-sample of points in every fit, totals scaled, the difference's
    SE widened by its sub-sampling error; within that error of the full comparison."""
    from arviz_base import from_dict
    from arviz_stats import compare

    from bayes_nqp.bayes import diagnostics as D

    rng = np.random.default_rng(4)
    n = 1500
    base = rng.normal(0.0, 1.0, size=n)
    trees = {name: from_dict({"posterior": {"x": rng.normal(size=(2, 200))},
                              "log_likelihood": {"y": rng.normal(-2.0 - shift, 0.3, size=(2, 200, n))
                                                 + base + rng.normal(0.0, 0.2, size=n)}},
                             dims={"y": ["unit"]})
             for name, shift in (("a", 0.0), ("b", 0.05))}
    full = compare(trees, round_to="none")
    monkeypatch.setattr(D, "LOO_SUBSAMPLE_ABOVE", 1000)
    monkeypatch.setattr(D, "LOO_SUBSAMPLE", 300)
    got = D.loo_compare(trees)
    assert list(got.index) == list(full.index) == ["a", "b"]
    assert (got["subsample"] == 300).all() and (got["n_points"] == n).all()
    for k in ("a", "b"):
        assert abs(got.loc[k, "elpd"] - full.loc[k, "elpd"]) < 4 * got.loc[k, "subsampling_se"]
    d_got, d_full = got.loc["b", "elpd_diff"], full.loc["b", "elpd_diff"]
    assert abs(d_got - d_full) < 4 * got.loc["b", "dse"]
    assert got.loc["b", "dse"] > full.loc["b", "dse"]  # the sub-sampling error is added
    assert d_got < -2 * got.loc["b", "dse"]  # b is worse by 0.05 a point: 75 in all
