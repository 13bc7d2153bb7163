"""The staggered ATT by Bayesian imputation: recovery where TWFE is biased, what cannot be
imputed, the comparison with Callaway–Sant'Anna, and the demo panel's known truth."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import bayes_nqp as bn
from bayes_nqp import estimands as E
from bayes_nqp.bayes import load_spec, make_model
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


def test_posterior_predictive_checks_the_untreated_observations(store_fit, stores):
    from bayes_nqp.bayes.diagnostics import ppc_summary

    m = make_model("staggered", stores[1])
    pp = m.posterior_predictive(store_fit.idata, None, seed=1)["y"].to_numpy()
    assert pp.shape[-1] == len(m.observed_values()) == len(m.rows)
    ppc = ppc_summary(pp.reshape(-1, pp.shape[-1]), m.observed_values())
    assert not ppc["warning"], ppc


def test_pointwise_log_likelihood_is_per_city_for_leave_one_city_out(store_fit, stores):
    m = make_model("staggered", stores[1])
    ll = m.log_likelihood(store_fit.idata, None)["y"]
    assert ll.dims == ("chain", "draw", "unit") and ll.sizes["unit"] == stores[1].n_units


def test_imputation_fit_samples_without_divergences(store_fit):
    assert store_fit.diag["divergences"] == 0
    assert min(store_fit.diag["per_param"][k]["ess_bulk"] for k in store_fit.params) > 150


def test_predictive_imputation_adds_the_noise_of_y0_and_keeps_the_means(store_fit, stores):
    spec = load_spec("staggered")
    mean = E.flatten(make_model("staggered", stores[1]).estimands(store_fit.idata))
    pred = make_model("staggered", stores[1], spec=replace(spec, options={"imputation": "predictive"}))
    pred = E.flatten(pred.estimands(store_fit.idata))
    for name in mean:
        assert pred[name].std() > mean[name].std()
        assert abs(pred[name].mean() - mean[name].mean()) < 0.2 * mean[name].std()


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


def test_untreated_model_uses_only_untreated_observations(stores):
    m = make_model("staggered", stores[1])
    assert (stores[1].df["D"].to_numpy()[m.rows] == 0).all()
    assert len(m.rows) == int((stores[1].df["D"] == 0).sum())


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
    # the demo's truth is the effect in exactly its treated cells (the noise cancels in it), which
    # is what the predictive imputation targets: it adds the noise of the imputed y(0)
    spec = load_spec("staggered")
    spec = replace(spec, options={**spec.options, "imputation": "predictive"})
    return bn.fit("staggered", demo, spec=spec, draws=300, tune=300, chains=2, seed=11, loo=False,
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


def test_staggered_ar1_errors_build_and_reduce_to_the_iid_likelihood_at_rho_zero(synthetic):
    """errors = "ar1": ρ is a parameter, and at ρ = 0 the untreated-outcome likelihood is the
    iid one (the random-intercept marginal of every unit's untreated rows)."""
    from dataclasses import replace

    from bayes_nqp.bayes.did import unit_marginal_logp
    from bayes_nqp.bayes.spec import load_spec

    spec = load_spec("staggered")
    model = make_model("staggered", synthetic.panel, spec=replace(spec, options={**spec.options, "errors": "ar1"}))
    assert "rho" in model.build().named_vars
    theta = np.random.default_rng(0).normal(size=model.W_rows.shape[1]) * 0.3
    r = model.y_z[model.rows] - model.W_rows @ theta
    s1 = np.add.reduceat(r, model.unit_start)
    s2 = np.add.reduceat(r**2, model.unit_start)
    iid = unit_marginal_logp(s1, s2, model.n_per_unit, 0.6, 0.9).sum()
    # a 0-d array takes the AR(1) path (weights of the three moments), not the folded iid one
    assert model.statistics.logp(theta, 0.6, 0.9, 0.0, np.array(0.0)) == pytest.approx(iid, rel=1e-10)


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


def test_placebo_timings_share_one_model_structure_with_a_cohort_mean_for_every_period(stores):
    from bayes_nqp import engine
    from bayes_nqp.calibration import placebo_spec

    assert placebo_spec("staggered").option("cohort_levels") == "panel"
    a, b = _placebo_models(stores, "panel")
    (_, sig_a, val_a), (_, sig_b, val_b) = (engine.lift_constants(m.build()) for m in (a, b))
    assert sig_a == sig_b  # the engine refits b on a's compilation
    assert a.cohort_levels == b.cohort_levels == ["never"] + [str(w) for w in range(2, 9)]
    assert any(not np.array_equal(val_a[k], val_b[k]) for k in val_a)  # the data differ
    # the cohorts' own levels: one structure per timing (a compilation each)
    oa, ob = _placebo_models(stores, "observed")
    assert oa.cohort_levels == ["never", "3", "5"] and len(ob.cohort_levels) == 5
    assert engine.lift_constants(oa.build())[1] != engine.lift_constants(ob.build())[1]
    # a level no store adopts in has no untreated row: its mean has only its prior, and the rest
    # of the design is the observed levels' (the other parameters' posterior is unchanged)
    keep = [a.cohort_levels.index(c) for c in oa.cohort_levels]
    empty = [j for j in range(len(a.cohort_levels)) if j not in keep]
    n_mu = len(a.cohort_levels)
    assert not a.W_rows[:, empty].any()
    np.testing.assert_array_equal(a.W_rows[:, keep], oa.W_rows[:, :len(keep)])
    np.testing.assert_array_equal(a.W_rows[:, n_mu:], oa.W_rows[:, len(keep):])


def test_fixed_year_effects_have_the_wide_year_prior_and_no_learned_scale(stores):
    spec = load_spec("staggered")
    pooled = make_model("staggered", stores[1], "weak", spec).build()
    fixed = make_model("staggered", stores[1], "weak",
                       replace(spec, options={**spec.options, "year_effects": "fixed"}))
    assert "sigma_time" in pooled.named_vars and "sigma_time" not in fixed.build().named_vars
    assert fixed.used_priors["gamma"] == "year"
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
