"""The Bayesian threshold model: recovery of γ and the slopes on a simulated panel, the LOO choice
of 0/1/2 thresholds (a stage of its own, not part of estimands()), validation against Hansen's (1999) estimates on his data, the exact
marginal likelihood behind the grid, and the panels it skips."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayes_nqp as bn
from bayes_nqp.bayes.fit import make_model
from bayes_nqp.bayes.spec import PriorSet, PriorSpec, load_prior_set, load_spec
from bayes_nqp.bayes.threshold import threshold_grid, uniform_weights
from bayes_nqp.errors import SectionSkipped, SpecError

HANSEN = Path(__file__).resolve().parents[1] / "data" / "hansen1999.csv"
HANSEN_MAP = {"unit": "id", "time": "year", "outcome": "i", "controls": ["q1", "q2", "q3", "d1", "qd1"],
              "threshold": "d1", "regime": "c1", "time_effects": False}
GAMMAS, SLOPES = (1.0, 2.0), (0.2, 1.0, 2.0)


def threshold_frame(gammas=GAMMAS, slopes=SLOPES, n_units=80, n_periods=10, seed=3):
    """y = α_i + λ_t + θ(q)·D + 0.3·x1 + ε, θ(q) a step function of q with the given thresholds."""
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(n_units), n_periods)
    year = np.tile(np.arange(2001, 2001 + n_periods), n_units)
    cohort = rng.choice([2003, 2004, 2005, 0], size=n_units)[unit]
    D = ((cohort > 0) & (year >= cohort)).astype(float)
    q = rng.uniform(0, 3, unit.size) + 0.2 * rng.normal(0, 1, n_units)[unit]
    theta = np.asarray(slopes)[np.searchsorted(np.asarray(gammas), q, side="left")]
    alpha = rng.normal(0, 1, n_units)[unit] + 0.5 * (cohort > 0)
    x1 = rng.normal(0, 1, unit.size) + 0.5 * alpha
    lam = rng.normal(0, 0.3, n_periods)[year - 2001]
    y = alpha + lam + theta * D + 0.3 * x1 + rng.normal(0, 0.5, unit.size)
    return pd.DataFrame({"city": unit, "year": year, "y0": y, "pilot": cohort, "x1": x1, "upg": q})


TMAP = {"unit": "city", "time": "year", "outcome": "y0", "cohort": "pilot", "controls": ["x1"],
        "threshold": "upg", "time_effects": True, "simulated": True}


def spec_with(**options):
    spec = load_spec("threshold")
    return replace(spec, options={**spec.options, **options})


@pytest.fixture(scope="module")
def two_panel():
    return bn.panel_from_frame(threshold_frame(), TMAP)


@pytest.fixture(scope="module")
def two_fit(two_panel):
    return bn.fit("threshold", two_panel, spec=spec_with(n_thresholds=2, compare=True), quick=True,
                  replication=False)


@pytest.fixture(scope="module")
def hansen_panel():
    return bn.panel_from_frame(pd.read_csv(HANSEN), HANSEN_MAP)


@pytest.fixture(scope="module")
def hansen_rep(hansen_panel):
    return bn.replicate("threshold", hansen_panel, threshold={"n_thresholds": 1, "n_boot": 0})


@pytest.fixture(scope="module")
def hansen_fit(hansen_panel, hansen_rep):
    return bn.fit("threshold", hansen_panel, spec=spec_with(compare=False), quick=True,
                  replication=hansen_rep)


# ---- recovery and model choice on a simulated panel ----------------------------------------------

def test_recovers_two_thresholds_and_three_slopes(two_fit, mc):
    p = two_fit.params
    for k, g in enumerate(GAMMAS, start=1):
        assert p[f"gamma[{k}]"]["mean"] == pytest.approx(g, abs=0.06)
    for j, s in enumerate(SLOPES, start=1):
        mc.in_hdi(two_fit.draws[f"slope[{j}]"], s, f"slope[{j}]")
    assert p["slope_diff[2-1]"]["p_positive"] > 0.99 and p["slope_diff[3-2]"]["p_positive"] > 0.99


def test_loo_prefers_two_thresholds_when_there_are_two(two_fit):
    rows = {r["n_thresholds"]: r for r in two_fit.extras["loo_compare"]}
    assert set(rows) == {0, 1, 2}
    assert rows[2]["rank"] == 0 and rows[1]["elpd_diff"] < -2 * rows[1]["dse"]
    assert two_fit.extras["n_thresholds"]["preferred"] == 2
    assert "n_thresholds" not in two_fit.params  # a comparison of three fits, not an estimand of one


def test_estimands_run_no_further_fit(two_fit, two_panel, monkeypatch):
    """The model's estimands() returns estimands only: no compilation, no sampling (the 0/1/2
    comparison is a stage of its own)."""
    import importlib

    import nutpie

    fit_mod = importlib.import_module("bayes_nqp.bayes.fit")
    calls = []
    monkeypatch.setattr(fit_mod, "compile_model", lambda *a, **k: calls.append("compile"))
    monkeypatch.setattr(fit_mod, "sample", lambda *a, **k: calls.append("sample"))
    monkeypatch.setattr(nutpie, "sample", lambda *a, **k: calls.append("nutpie"))
    m = make_model("threshold", two_panel, spec=spec_with(n_thresholds=2, compare=True))
    ds = m.estimands(two_fit.idata)
    assert calls == []
    assert set(ds.data_vars) == {"gamma", "slope", "slope_diff"}


def test_the_comparison_stage_is_skipped_when_the_spec_says_compare_false(hansen_fit, hansen_panel):
    from bayes_nqp.bayes.threshold import comparison_stage

    with pytest.raises(SectionSkipped, match="compare = false"):
        comparison_stage(hansen_fit, hansen_panel)
    assert "loo_compare" not in hansen_fit.extras and "n_thresholds" not in hansen_fit.extras


def test_gamma_posterior_mass_sums_to_one_per_threshold(two_fit):
    gp = two_fit.extras["gamma_posterior"]
    assert len(gp["mass"]) == 2
    assert all(sum(m) == pytest.approx(1.0) for m in gp["mass"])
    assert two_fit.extras["gamma_mode"][0] == pytest.approx(GAMMAS[0], abs=0.06)


def test_diagnostics_report_the_gates(two_fit, hansen_fit):
    for f in (two_fit, hansen_fit):
        d = f.diagnostics()
        assert isinstance(d["passed"], bool) and "rhat_max" in d and "ess_bulk_min" in d
        assert d["divergences"] == 0


# ---- validation against Hansen (1999) --------------------------------------------------------------

def test_hansen_panel_has_a_regime_but_no_treatment(hansen_panel, hansen_fit):
    assert not hansen_panel.has_treatment and hansen_panel.regime == "c1"
    assert hansen_fit.extras["regime_variable"] == "c1"


def test_hansen_posterior_mode_of_gamma_is_hansens_estimate(hansen_fit):
    assert hansen_fit.extras["gamma_mode"][0] == pytest.approx(0.0157, abs=0.001)


def test_hansen_gamma_interval_overlaps_the_lr_interval(hansen_fit, hansen_rep):
    lo, hi = hansen_fit.params["gamma[1]"]["hdi95"]
    lr_lo, lr_hi = hansen_rep["threshold"]["threshold_ci95"][0]
    assert lo <= lr_hi and lr_lo <= hi


def test_hansen_regime_slopes_agree_with_the_replication(hansen_fit, hansen_rep, mc):
    for j, coef in enumerate(hansen_rep["threshold"]["regime_coefs"], start=1):
        p = hansen_fit.params[f"slope[{j}]"]
        mc.close(hansen_fit.draws[f"slope[{j}]"], coef, 2 * p["sd"], f"slope[{j}] vs Hansen")
    assert {"gamma[1]", "slope[1]", "slope[2]"} <= set(hansen_fit.comparison_)


def test_gamma_figure_draws_the_lr_curve_and_its_critical_value(hansen_fit, hansen_rep):
    from bayes_nqp.report.figures import model_figures

    fig = model_figures(None, hansen_fit.summary_json(), hansen_rep, ["gamma"])["gamma"]
    ax, ax2 = fig.axes
    assert ax.patches  # the posterior mass over the grid
    ys = [ln.get_ydata() for ln in ax2.lines]
    assert any(len(y) == 2 and y[0] == pytest.approx(7.35, abs=0.01) for y in ys)
    assert any(len(y) > 50 for y in ys)  # the LR curve


# ---- the exact marginal likelihood behind the grid --------------------------------------------------

@pytest.mark.parametrize("n_thr", [0, 1, 2])
def test_grid_marginal_likelihood_equals_the_gaussian_integral(two_panel, n_thr):
    spec = spec_with(n_thresholds=n_thr, grid_size=30, grid_size_pair=12)
    m = make_model("threshold", two_panel, spec=spec)
    rng = np.random.default_rng(0)
    beta, sigma, mu0, s0 = rng.normal(size=(1, 1)), np.array([0.7]), 0.3, 0.8
    lm, _, _ = m.log_marginal(beta, sigma, mu0, s0)
    cell = lm.shape[1] // 2
    # independent reference: explicit regressors, generic linear algebra
    cuts = m.cell_gamma[cell]
    reg = np.searchsorted(cuts, m.q, side="left")
    B = m.fe(np.column_stack([m.r_s * (reg == j) for j in range(n_thr + 1)]))
    e = m.yw - m.Xw @ beta[0]
    k, s2 = n_thr + 1, sigma[0] ** 2
    Lam = B.T @ B / s2 + np.eye(k) / s0 ** 2
    eta = B.T @ e / s2 + mu0 / s0 ** 2
    ref = (-0.5 * m.fe.n_eff * np.log(2 * np.pi * s2) - e @ e / (2 * s2) - 0.5 * k * np.log(s0 ** 2)
           - 0.5 * k * mu0 ** 2 / s0 ** 2 - 0.5 * np.linalg.slogdet(Lam)[1]
           + 0.5 * eta @ np.linalg.solve(Lam, eta))
    assert lm[0, cell] == pytest.approx(ref, rel=1e-9)


def test_grid_keeps_the_trimming_share_in_every_regime():
    q = np.random.default_rng(1).normal(size=1000).round(2)
    grid = threshold_grid(q, 0.05, 40)
    below = (q[:, None] <= grid[None, :]).sum(axis=0)
    assert grid.size <= 40 and np.all(below >= 50) and np.all(1000 - below >= 50)
    every = threshold_grid(q, 0.05, "all")
    assert set(grid) <= set(every) and every.size > grid.size


def test_gamma_prior_is_uniform_over_the_trimmed_range():
    w = uniform_weights(np.array([0.0, 1.0, 3.0, 4.0]))
    np.testing.assert_allclose(w, np.array([0.5, 1.5, 1.5, 0.5]) / 4)


# ---- what it refuses ------------------------------------------------------------------------------

def test_panel_without_threshold_skips_with_a_reason(make_panel):
    p = make_panel(n_units=20, n_periods=4, cohorts={2013: 10}, seed=2)
    with pytest.raises(SectionSkipped, match="threshold"):
        make_model("threshold", p)


def test_sharp_model_refuses_a_non_normal_slope_prior(two_panel):
    base = load_prior_set("default")
    t_slope = PriorSpec("StudentT", {"nu": 3.0, "mu": 0.0, "sigma": 1.0})
    priors = PriorSet("t_slopes", {**base.priors, "slope": t_slope})
    m = make_model("threshold", two_panel, priors=priors, spec=spec_with(grid_size=30))
    with pytest.raises(SpecError, match="Normal 'slope' prior"):
        m.build()


# ---- smooth transition -------------------------------------------------------------------------------

@pytest.mark.slow  # a fit of its own: the default suite stays under 10 min
def test_logistic_transition_recovers_a_single_threshold():
    panel = bn.panel_from_frame(threshold_frame(gammas=(1.5,), slopes=(0.2, 1.5), n_units=60, seed=5), TMAP)
    f = bn.fit("threshold", panel, spec=spec_with(transition="logistic", compare=False), quick=True,
               replication=False, psense=False, ppc=False)
    assert f.params["gamma[1]"]["mean"] == pytest.approx(1.5, abs=0.15)
    assert f.params["slope_diff[2-1]"]["p_positive"] > 0.99
    assert "transition_scale[1]" in f.params


@pytest.mark.slow
def test_demo_panel_recovers_the_simulated_threshold(demo, demo_truth, mc):
    f = bn.fit("threshold", demo, spec=spec_with(compare=False))
    truth = demo_truth["threshold"]
    assert f.passed
    assert f.extras["gamma_mode"][0] == pytest.approx(truth["gamma"], abs=0.05)
    for j, key in ((1, "slope_below"), (2, "slope_above")):
        mc.in_hdi(f.draws[f"slope[{j}]"], truth[key], f"slope[{j}]")


def test_estimands_lie_along_threshold_and_regime_and_keep_their_names(two_fit):
    ds = two_fit.estimand_draws
    assert ds["gamma"].dims == ("chain", "draw", "threshold")
    assert ds["slope"].dims == ("chain", "draw", "regime")
    assert list(two_fit.draws) == ["gamma[1]", "gamma[2]", "slope[1]", "slope[2]", "slope[3]",
                                   "slope_diff[2-1]", "slope_diff[3-2]"]


def test_the_threshold_comparison_refits_other_priors_without_compiling(monkeypatch):
    """compare_thresholds' cache goes through the one refit path (refit.with_priors): a prior set
    of the same families swaps hyperparameters (no compilation); a set that
    changes a family used by the model compiles anew."""
    import importlib

    from bayes_nqp.bayes.threshold import compare_thresholds

    fit_mod = importlib.import_module("bayes_nqp.bayes.fit")  # the package's `fit` is the function

    panel = bn.panel_from_frame(threshold_frame(n_units=40, n_periods=6, seed=5), TMAP)
    calls = []
    real = fit_mod.compile_model
    monkeypatch.setattr(fit_mod, "compile_model", lambda m: calls.append(m) or real(m))
    cache = {}
    kw = dict(spec=spec_with(grid_size=30), n_thresholds=(0, 1), draws=100, tune=100, chains=1,
              seed=2, cache=cache)
    first = compare_thresholds(panel, priors="default", **kw)
    assert len(calls) == 2 and set(cache) == {0, 1}
    weak = compare_thresholds(panel, priors="weak", **kw)
    assert len(calls) == 2  # the same families: hyperparameters swapped, nothing compiled
    assert cache[1][0].priors.name == "weak"
    assert set(weak.table().index) == set(first.table().index) == {"0", "1"}
    again = compare_thresholds(panel, priors="default", **kw)  # a pure function of its inputs
    assert len(calls) == 2 and again == first
    base = load_prior_set("default")
    wider = PriorSet("cauchy_sigma", {**base.priors, "sigma": PriorSpec("HalfCauchy", {"beta": 1.0})})
    compare_thresholds(panel, priors=wider, **kw)
    assert len(calls) == 4  # sigma's family changed: both structures compiled again


def test_long_panel_log_likelihood_and_ppc_use_thinned_draws(hansen_panel, hansen_fit,
                                                             thinned_post_processing):
    """As for mediation: thinned draws for the per-unit log-likelihoods (same values at those
    draws) and at least 2 PPC draws per chain above the size limits (issue 10: 1M rows)."""
    model = make_model("threshold", hansen_panel, spec=spec_with(compare=False))
    full, thin, pp = thinned_post_processing(model, hansen_fit.idata, 8)
    assert thin.sizes["draw"] == max(1, 8 // thin.sizes["chain"]) < full.sizes["draw"]
    assert pp.sizes["draw"] == 2
