"""The staggered ATT (extended two-way model, saturated cohort × period effects with unit-level
deviations): recovery where TWFE is biased, the imputation estimator's point estimate, honest
intervals under AR(1) errors and unit-varying effects, what cannot be identified, the comparison
with the frequentist imputation / Callaway–Sant'Anna estimates, placebo refits on one compilation,
and the demo panel's known truth. The previous model (``method = "imputation"``) is checked at the end."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import bayes_nqp as bn
from bayes_nqp import estimands as E
from bayes_nqp.bayes import load_spec, make_model
from bayes_nqp.bayes.staggered_imputation import ImputationStaggeredModel
from bayes_nqp.errors import ModelError, SectionSkipped, SpecError

#: cohort (launch week) → (stores, effect as a function of weeks since launch): heterogeneous
#: across cohorts and growing with exposure, the case where TWFE's forbidden comparisons bite
COHORTS = {3: (30, lambda e: 0.2 + 0.3 * e), 5: (30, lambda e: 0.4 + 0.1 * e), 7: (20, lambda e: 0.8 + 0 * e)}
CMAP = {"unit": "store", "time": "week", "outcome": "sales", "cohort": "launch", "controls": ["price"]}
SAMPLER = dict(draws=300, tune=300, chains=2, seed=3, loo=False, ppc=False, psense=False,
               replication=False)


def store_frame(*, n_never: int = 10, weeks: int = 8, noise: float = 0.2, seed: int = 0,
                first_week_launches: int = 0) -> pd.DataFrame:
    """Integer weeks 1..8; cohorts differ in level too (a shrinkage trap for the imputation).
    ``first_week_launches`` never-treated stores launch in week 1 instead (nothing to impute)."""
    rng = np.random.default_rng(seed)
    g = np.concatenate([np.full(n, c) for c, (n, _) in COHORTS.items()] + [np.zeros(n_never)])
    g = rng.permutation(g)
    g[np.flatnonzero(g == 0)[:first_week_launches]] = 1
    n = len(g)
    store = np.repeat(np.arange(n), weeks)
    week = np.tile(np.arange(1, weeks + 1), n)
    gi = g[store]
    e = np.where(gi > 0, week - gi, -1)
    tau = np.zeros(len(store))
    for c, (_, f) in COHORTS.items():
        m = (gi == c) & (e >= 0)
        tau[m] = f(e[m])
    tau[(gi == 1)] = 1.0
    price = rng.normal(0, 1, len(store))
    sales = (rng.normal(0, 1, n)[store] + 0.5 * (gi == 3) - 0.3 * (gi == 7) + 0.1 * week
             + rng.normal(0, 0.1, weeks)[week - 1] + tau + 0.5 * price + rng.normal(0, noise, len(store)))
    return pd.DataFrame({"store": store, "week": week, "sales": sales, "launch": gi.astype(int),
                         "price": price, "tau": tau})


def truth(df: pd.DataFrame) -> dict:
    """Each estimand's true value: the mean of the known cell effects over its treated cells."""
    tr = df[(df["launch"] > 0) & (df["week"] >= df["launch"])].assign(e=lambda d: d["week"] - d["launch"])
    return {"att": tr["tau"].mean(),
            **{f"att[g={g}]": v for g, v in tr.groupby("launch")["tau"].mean().items()},
            **{f"att[e={e}]": v for e, v in tr.groupby("e")["tau"].mean().items()}}


@pytest.fixture(scope="module")
def stores():
    df = store_frame()
    return df, bn.panel_from_frame(df, CMAP)


@pytest.fixture(scope="module")
def store_fit(stores):
    return bn.fit("staggered", stores[1], **SAMPLER)


# ---- recovery -----------------------------------------------------------------------------------

def test_estimands_are_att_by_cohort_and_by_event_time(store_fit, stores):
    assert set(store_fit.params) == set(truth(stores[0]))


def test_att_covers_the_truth(store_fit, stores, mc):
    mc.in_hdi(store_fit.draws["att"], truth(stores[0])["att"], "att")


def test_cohort_and_event_time_atts_are_within_three_sd_of_the_truth(store_fit, stores, mc):
    # ten estimands share the year-effect errors: each 95% interval misses now and then, so the
    # check is a band that a correct imputation practically never leaves and a biased one does
    for name, value in truth(stores[0]).items():
        p = store_fit.params[name]
        mc.close(store_fit.draws[name], value, 3 * p["sd"], name)


def test_twfe_is_clearly_off_where_the_imputation_att_covers_the_truth(store_fit, stores):
    twfe = store_fit.extras["twfe"]["estimate"]
    lo, hi = store_fit.params["att"]["hdi95"]
    assert not lo <= twfe <= hi
    assert abs(twfe - truth(stores[0])["att"]) > 0.3  # TWFE: ~0.33 against a true 0.79


def test_posterior_predictive_checks_every_observation(store_fit, stores):
    from bayes_nqp.bayes.diagnostics import ppc_summary

    m = make_model("staggered", stores[1])
    pp = m.posterior_predictive(store_fit.idata, None, seed=1)["y"].to_numpy()
    assert pp.shape[-1] == len(m.observed_values()) == stores[1].n_obs
    ppc = ppc_summary(pp.reshape(-1, pp.shape[-1]), m.observed_values())
    assert not ppc["warning"], ppc


def test_pointwise_log_likelihood_is_per_city_for_leave_one_city_out(store_fit, stores):
    m = make_model("staggered", stores[1])
    ll = m.log_likelihood(store_fit.idata, None)["y"]
    assert ll.dims == ("chain", "draw", "unit") and ll.sizes["unit"] == stores[1].n_units


def test_fit_samples_without_divergences(store_fit):
    assert store_fit.diag["divergences"] == 0
    assert min(store_fit.diag["per_param"][k]["ess_bulk"] for k in store_fit.params) > 150


def test_predictive_imputation_belongs_to_the_imputation_method(stores):
    spec = load_spec("staggered")
    with pytest.raises(SpecError, match="method = 'imputation'"):
        make_model("staggered", stores[1], spec=replace(spec, options={"imputation": "predictive"}))


def test_unknown_method_is_a_spec_error(stores):
    with pytest.raises(SpecError, match="extended_twfe"):
        make_model("staggered", stores[1], spec=replace(load_spec("staggered"), options={"method": "bjs"}))


def test_every_treated_cell_has_its_own_cohort_by_period_effect(stores):
    m = make_model("staggered", stores[1])
    np.testing.assert_array_equal(m.Z.sum(1), m.D)       # one cell per treated row, none elsewhere
    df = stores[1].df
    for j, (g, s) in enumerate(m.cells):
        rows = m.Z[:, j] > 0
        assert (df["cohort"][rows] == g).all() and (df["time"][rows] == s).all()
    # Mundlak's cohort indicators in the intercepts' mean (never-treated stores are the base)
    assert m.coords()["unit_mean"][:3] == ["cohort=3", "cohort=5", "cohort=7"]


def test_unknown_imputation_option_is_a_spec_error(stores):
    spec = replace(load_spec("staggered"), options={"imputation": "draw"})
    with pytest.raises(SpecError, match="predictive"):
        make_model("staggered", stores[1], spec=spec)


# ---- what cannot be imputed ---------------------------------------------------------------------

def test_units_treated_from_the_first_period_are_dropped_with_a_warning(caplog):
    panel = bn.panel_from_frame(store_frame(first_week_launches=2), CMAP)
    with caplog.at_level(logging.WARNING, logger="bayes_nqp.bayes.staggered"):
        m = make_model("staggered", panel)
    assert len(m.dropped_units) == 2
    assert "no untreated period" in caplog.text
    assert "att[g=1]" not in m.groups
    assert m.n_cells["att"] == int(panel.df["D"].sum()) - 2 * 8


def test_periods_with_no_untreated_unit_are_dropped_with_a_warning(caplog):
    df = store_frame()
    # unbalanced: the never-treated stores are not observed in weeks 7-8, when all others have launched
    df = df[~((df["launch"] == 0) & (df["week"] >= 7))]
    panel = bn.panel_from_frame(df, CMAP)
    with caplog.at_level(logging.WARNING, logger="bayes_nqp.bayes.staggered"):
        m = make_model("staggered", panel)
    assert m.dropped_times == ["7", "8"]
    assert "not identified" in caplog.text
    assert "att[e=4]" not in m.groups  # only cohort 3 reaches e = 4, in week 7


def test_panel_without_a_treatment_skips_with_a_reason(stores):
    panel = bn.panel_from_frame(stores[0], {k: v for k, v in CMAP.items() if k != "cohort"})
    with pytest.raises(SectionSkipped, match="treatment"):
        bn.fit("staggered", panel, **SAMPLER)


def test_panel_whose_every_treated_cell_is_unimputable_is_a_model_error():
    df = store_frame()
    df["launch"] = np.where(df["launch"] > 0, 1, 0)  # everyone launches in week 1
    with pytest.raises(ModelError, match="no treated cell"):
        make_model("staggered", bn.panel_from_frame(df, CMAP))


# ---- comparison and figures ---------------------------------------------------------------------

REPLICATION = {
    "did_controls": {"estimate": 0.33, "se": 0.05, "ci95": [0.23, 0.43], "pvalue": 0.0},
    "event_study": {"0": {"estimate": 0.4, "se": 0.05, "ci95": [0.3, 0.5]},
                    "-1": {"estimate": 0.0, "se": 0.0, "ci95": [0.0, 0.0], "reference": True},
                    "pretrend_pvalue": 0.5},
    "callaway_santanna": {"overall": {"estimate": 0.8, "se": 0.04, "ci95": [0.72, 0.88]},
                          "event_time": {"-2": {"estimate": 0.01, "se": 0.05, "ci95": [-0.09, 0.11]},
                                         "0": {"estimate": 0.5, "se": 0.04, "ci95": [0.42, 0.58]}}},
}


def test_comparison_is_callaway_santanna_overall_and_by_event_time(store_fit):
    from bayes_nqp.compare import compare

    cmp = {k: c.to_json()["frequentist"]
           for k, c in compare(store_fit.to_summary(), REPLICATION, load_spec("staggered").compare).items()}
    assert cmp["att"]["estimate"] == 0.8 and "Callaway" in cmp["att"]["source"]
    assert cmp["att[e=0]"]["ci95"] == [0.42, 0.58]
    # CS pre-period placebo estimates have no imputation counterpart: no estimand, no pair
    assert "att[e=-2]" not in cmp


def test_twfe_reference_comes_from_the_replication_when_it_has_one(store_fit, stores):
    m = make_model("staggered", stores[1])
    assert m.extras(store_fit.idata, store_fit.draws, REPLICATION)["twfe"]["estimate"] == 0.33


def test_figure_shows_att_by_event_time_and_by_cohort(store_fit, stores):
    from bayes_nqp.report.figures import model_figures

    fig = model_figures(None, store_fit.summary_json(), REPLICATION, ["att"])["att"]
    assert [ax.get_title() for ax in fig.axes] == ["by event time", "by cohort"]


# ---- the demo panel -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_fit(demo):
    # the demo's truth is the effect in exactly its treated cells; the model's att is the mean over
    # units of the cohort × period effects (its interval also carries the units' disagreement)
    return bn.fit("staggered", demo, draws=300, tune=300, chains=2, seed=11, loo=False,
                  ppc=False, psense=False, replication=False)


def test_demo_att_covers_the_true_att(demo_fit, demo_truth, mc):
    mc.in_hdi(demo_fit.draws["att"], demo_truth["att"], "demo att")


def test_demo_att_by_event_time_covers_the_truth(demo_fit, demo_truth, mc):
    # eleven event times: a 99% interval each (Bonferroni-like). On this realisation the true
    # e = 0 effect sits at the lower edge of the 95% intervals of both this model and
    # Callaway–Sant'Anna, whose 95% CI excludes it
    for e, value in demo_truth["att_by_event_time"].items():
        mc.in_quantiles(demo_fit.draws[f"att[e={e}]"], value, 0.005, 0.995, f"att[e={e}]")


def test_demo_figure_says_simulated_data(demo_fit, demo):
    from bayes_nqp.report.figures import model_figures

    fig = model_figures(None, demo_fit.summary_json(), None, ["att"])["att"]
    assert fig._suptitle.get_text().startswith("SIMULATED DATA")


def test_likelihood_is_the_exact_marginal_of_intercept_effect_deviation_and_ar1_errors(stores):
    """The potential equals, unit by unit, the MVN density of the residuals y − Wθ with covariance
    σ²R(ρ) + σ_α²11' + σ_τ²dd' (d: the unit's treated rows), evaluated directly by SciPy."""
    from scipy.linalg import toeplitz
    from scipy.stats import multivariate_normal

    spec = load_spec("staggered")
    m = make_model("staggered", stores[1], spec=replace(spec, options={**spec.options, "errors": "ar1"}))
    assert {"rho", "sigma_effect"} <= set(m.build().named_vars)
    theta = np.random.default_rng(0).normal(size=m.W.shape[1]) * 0.3
    sigma, s_a, s_t, rho = 0.6, 0.9, 0.4, 0.5
    r = m.y_z - m.W @ theta
    ref = 0.0
    for i in range(stores[1].n_units):
        rows = m.unit_idx == i
        n, d = rows.sum(), m.D[rows]
        cov = sigma**2 * toeplitz(rho ** np.arange(n)) + s_a**2 + s_t**2 * np.outer(d, d)
        ref += multivariate_normal(np.zeros(n), cov).logpdf(r[rows])
    assert m.statistics.logp(theta, sigma, s_a, s_t, np.array(rho)) == pytest.approx(ref, rel=1e-9)


# ---- placebo refits: one model structure for every treatment timing of a panel -----------------

#: two placebo timings of the store panel (mode "all": every store, the real launch a control):
#: two cohorts against four, so the observed cohorts differ in number and in label
TIMINGS = ({"units": list(range(0, 40, 2)), "years": [3, 5] * 10},
           {"units": list(range(1, 40, 2)), "years": [2, 4, 6, 8] * 5})


def _placebo_models(stores, cohort_levels):
    from bayes_nqp.calibration import placebo_panel, placebo_spec

    spec = placebo_spec("staggered")
    spec = replace(spec, options={**spec.options, "cohort_levels": cohort_levels})
    return [make_model("staggered", placebo_panel(stores[1], t["units"], t["years"], mode="all"), "weak", spec)
            for t in TIMINGS]


def test_placebo_timings_share_one_model_structure_with_a_cell_for_every_pair_of_periods(stores):
    from bayes_nqp import engine
    from bayes_nqp.calibration import placebo_spec

    assert placebo_spec("staggered").option("cohort_levels") == "panel"
    a, b = _placebo_models(stores, "panel")
    (_, sig_a, val_a), (_, sig_b, val_b) = (engine.lift_constants(m.build()) for m in (a, b))
    assert sig_a == sig_b  # the engine refits b on a's compilation
    # weeks 1..8: a cohort for weeks 2..8, a cell (g, s) for every g <= s
    assert a.cell_labels == b.cell_labels and len(a.cell_labels) == sum(range(1, 8))
    assert a.coords()["unit_mean"] == b.coords()["unit_mean"]
    assert any(not np.array_equal(val_a[k], val_b[k]) for k in val_a)  # the data differ
    # the cohorts' own cells: one structure per timing (a compilation each)
    oa, ob = _placebo_models(stores, "observed")
    assert len(oa.cell_labels) < len(ob.cell_labels) < len(a.cell_labels)
    assert engine.lift_constants(oa.build())[1] != engine.lift_constants(ob.build())[1]
    # a cell no store is in is a zero column: its tau keeps its prior, the rest is unchanged
    keep = [a.cell_labels.index(c) for c in oa.cell_labels]
    empty = [j for j in range(len(a.cell_labels)) if j not in keep]
    assert not a.Z[:, empty].any()
    np.testing.assert_array_equal(a.Z[:, keep], oa.Z)


def test_two_placebo_timings_share_one_compilation(stores):
    from bayes_nqp import engine

    a, b = _placebo_models(stores, "panel")
    engine.clear_cache()
    try:
        c0 = engine.cache_stats()
        assert not engine.compiled_model(a.build(), cache_key="staggered")[1]
        assert engine.compiled_model(b.build(), cache_key="staggered")[1]
        c1 = engine.cache_stats()
        assert (c1["compilations"] - c0["compilations"], c1["reuses"] - c0["reuses"]) == (1, 1)
    finally:
        engine.clear_cache()


def test_year_effects_are_fixed_wide_by_default_and_pooled_on_request(stores):
    spec = load_spec("staggered")
    fixed = make_model("staggered", stores[1], "weak", spec)
    assert "sigma_time" not in fixed.build().named_vars and fixed.used_priors["gamma"] == "year"
    pooled = make_model("staggered", stores[1], "weak", replace(spec, options={**spec.options, "year_effects": "pooled"}))
    assert "sigma_time" in pooled.build().named_vars
    with pytest.raises(SpecError, match="pooled"):
        make_model("staggered", stores[1], spec=replace(spec, options={"year_effects": "shrunk"}))


def test_unknown_cohort_levels_option_is_a_spec_error(stores):
    spec = replace(load_spec("staggered"), options={"cohort_levels": "all"})
    with pytest.raises(SpecError, match="panel"):
        make_model("staggered", stores[1], spec=spec)


@pytest.mark.slow  # three compilations
def test_placebo_refits_reuse_one_compilation_and_match_fresh_compiles(stores):
    from bayes_nqp import engine
    from bayes_nqp.bayes.fit import sample

    def att(m):
        pm_model = m.build()
        compiled, reused = engine.compiled_model(pm_model, cache_key="staggered")
        settings = m.spec.sampler.override(draws=200, tune=200, chains=2, seed=5, cores=1)
        est = m.estimands(m.postprocess(sample(compiled, settings), pm_model))["att"]
        return reused, float(np.mean(est)), float(np.std(est))

    a, b = _placebo_models(stores, "panel")
    engine.clear_cache()
    c0 = engine.cache_stats()
    reused_a, reused_b = att(a), att(b)
    c1 = engine.cache_stats()
    assert (c1["compilations"] - c0["compilations"], c1["reuses"] - c0["reuses"]) == (1, 1)
    assert not reused_a[0] and reused_b[0]
    for m, reused in ((a, reused_a), (b, reused_b)):
        engine.clear_cache()
        fresh = att(m)
        assert not fresh[0]
        assert fresh[1:] == pytest.approx(reused[1:], rel=1e-6)
    engine.clear_cache()


def test_estimands_lie_along_cohort_and_event_time_and_keep_their_names(store_fit):
    ds = store_fit.estimand_draws
    assert ds["att_cohort"].dims == ("chain", "draw", "cohort")
    assert ds["att_event"].dims == ("chain", "draw", "event_time")
    assert list(store_fit.draws) == (["att"] + [f"att[g={g}]" for g in COHORTS]
                                     + [f"att[e={e}]" for e in ds["att_event"]["event_time"].values])
    assert ds["att_event"]["event_time"].values.tolist() == list(range(len(ds["att_event"]["event_time"])))


# ---- the estimand: the imputation estimator's point estimate -------------------------------------

def test_posterior_mean_of_att_is_the_imputation_estimate_on_a_balanced_panel(stores):
    """Wooldridge (2021): the saturated extended TWFE's cell effects are the imputation
    estimator's (BJS). Without controls (their within-cell variation would enter β), weak priors,
    balanced panel: the posterior mean of att sits on diff-diff's ImputationDiD estimate."""
    from bayes_nqp.frequentist.event_study import borusyak_jaravel_spiess

    cmap = {k: v for k, v in CMAP.items() if k != "controls"}
    panel = bn.panel_from_frame(stores[0], cmap)
    bjs = borusyak_jaravel_spiess(panel)[0]["overall"]
    fit = bn.fit("staggered", panel, priors="weak", **{**SAMPLER, "seed": 4})
    att = fit.params["att"]
    # the unit deviations make it a GLS fit (weights by the units' covariance): close, not equal
    assert abs(att["mean"] - bjs["estimate"]) < 0.25 * bjs["se"], (att["mean"], bjs)
    # and its posterior sd is of the size of BJS's unit-clustered SE
    assert 0.6 < att["sd"] / bjs["se"] < 1.6, (att["sd"], bjs["se"])


# ---- honest intervals: AR(1) errors and unit-varying effects ---------------------------------------

def ar1_staggered(seed: int, n_units: int = 60, n_periods: int = 10, rho: float = 0.7,
                  tau: float = 0.5, sigma_tau: float = 0.4, noise: float = 0.5) -> pd.DataFrame:
    """y = α_i + γ_t + τ_i D_it + ε_it, ε AR(1)(ρ) with marginal sd ``noise``, τ_i ~ N(τ, σ_τ²)
    constant over a unit's treated periods; two thirds of the units adopt in periods 4..8."""
    rng = np.random.default_rng(seed)
    first = np.where(rng.random(n_units) < 2 / 3, rng.integers(4, 9, n_units), 0)
    tau_i = tau + sigma_tau * rng.standard_normal(n_units)
    alpha = rng.normal(0, 1, n_units) + 0.5 * (first > 0)
    gamma = np.cumsum(rng.normal(0.1, 0.2, n_periods))
    e = np.empty((n_units, n_periods))
    e[:, 0] = rng.standard_normal(n_units)
    for t in range(1, n_periods):
        e[:, t] = rho * e[:, t - 1] + np.sqrt(1 - rho**2) * rng.standard_normal(n_units)
    unit = np.repeat(np.arange(n_units), n_periods)
    period = np.tile(np.arange(1, n_periods + 1), n_units)
    D = (first[unit] > 0) & (period >= first[unit])
    y = alpha[unit] + gamma[period - 1] + tau_i[unit] * D + noise * e.ravel()
    return pd.DataFrame({"u": unit, "t": period, "y": y, "g": first[unit]})


def _ar1_fit(**options):
    panel = bn.panel_from_frame(ar1_staggered(7), {"unit": "u", "time": "t", "outcome": "y", "cohort": "g"})
    spec = load_spec("staggered")
    return bn.fit("staggered", panel, priors="weak", spec=replace(spec, options={**spec.options, **options}),
                  **{**SAMPLER, "seed": 8})


@pytest.fixture(scope="module")
def ar1_fit():
    return _ar1_fit(errors="ar1")


def test_recovers_the_mean_effect_with_ar1_errors_and_unit_varying_effects(ar1_fit, mc):
    mc.in_hdi(ar1_fit.draws["att"], 0.5, "att (population mean effect)")
    mc.in_hdi(ar1_fit.idata["posterior"]["rho"].to_numpy(), 0.7, "rho")


@pytest.mark.slow  # a second compilation
def test_the_interval_carries_the_units_disagreement_that_the_common_iid_model_ignores(ar1_fit):
    common = _ar1_fit(effect="common", errors="iid")
    assert ar1_fit.params["att"]["sd"] > 1.5 * common.params["att"]["sd"]


# ---- the previous model, method = "imputation" -----------------------------------------------------

IMPUTATION = {"method": "imputation", "year_effects": "pooled"}


def imputation_spec(**options):
    s = load_spec("staggered")
    return replace(s, options={**s.options, **IMPUTATION, **options})


@pytest.fixture(scope="module")
def imputation_fit(stores):
    return bn.fit("staggered", stores[1], spec=imputation_spec(), **SAMPLER)


def test_method_imputation_builds_the_previous_model(stores):
    m = make_model("staggered", stores[1], spec=imputation_spec())
    assert isinstance(m, ImputationStaggeredModel) and m.name == "staggered"
    assert (stores[1].df["D"].to_numpy()[m.rows] == 0).all()  # fitted on untreated cells only


def test_its_assumptions_say_it_is_not_robust_to_within_unit_dependence(stores):
    words = make_model("staggered", stores[1], spec=imputation_spec()).assumptions()
    assert "NOT robust to within-unit dependence" in words[0]


def test_imputation_att_covers_the_truth(imputation_fit, stores, mc):
    mc.in_hdi(imputation_fit.draws["att"], truth(stores[0])["att"], "att")
    assert imputation_fit.extras["imputation"]["method"] == "imputation"


def test_predictive_imputation_adds_the_noise_of_y0_and_keeps_the_means(imputation_fit, stores):
    mean = E.flatten(make_model("staggered", stores[1], spec=imputation_spec()).estimands(imputation_fit.idata))
    pred = make_model("staggered", stores[1], spec=imputation_spec(imputation="predictive"))
    pred = E.flatten(pred.estimands(imputation_fit.idata))
    for name in mean:
        assert pred[name].std() > mean[name].std()
        assert abs(pred[name].mean() - mean[name].mean()) < 0.2 * mean[name].std()


def test_ar1_errors_reduce_to_the_iid_likelihood_at_rho_zero(synthetic):
    from bayes_nqp.bayes.did import unit_marginal_logp

    model = make_model("staggered", synthetic.panel, spec=imputation_spec(errors="ar1"))
    assert "rho" in model.build().named_vars
    theta = np.random.default_rng(0).normal(size=model.W_rows.shape[1]) * 0.3
    r = model.y_z[model.rows] - model.W_rows @ theta
    s1 = np.add.reduceat(r, model.unit_start)
    s2 = np.add.reduceat(r**2, model.unit_start)
    iid = unit_marginal_logp(s1, s2, model.n_per_unit, 0.6, 0.9).sum()
    # a 0-d array takes the AR(1) path (weights of the three moments), not the folded iid one
    assert model.statistics.logp(theta, 0.6, 0.9, 0.0, np.array(0.0)) == pytest.approx(iid, rel=1e-10)
