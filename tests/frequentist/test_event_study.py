"""Event-study section: TWFE leads/lags and pretrend test, Sun–Abraham, Callaway–Sant'Anna."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_nqp.frequentist.event_study import (
    borusyak_jaravel_spiess, callaway_santanna, event_study, sun_abraham, twfe_event_study,
)


def dynamic(e):
    return 0.2 + 0.1 * e


@pytest.fixture(scope="module")
def dyn_panel(make_panel):
    return make_panel(effect=dynamic, seed=2, n_units=150, cohorts={2013: 30, 2014: 30, 2015: 40})


def _leads(es):
    return {int(k): v for k, v in es.items() if k != "pretrend_pvalue" and int(k) <= -2}


def test_leads_near_zero_and_pretrend_not_rejected_under_parallel_trends(make_panel):
    es, _, _ = twfe_event_study(make_panel(effect=0.5, seed=11))
    assert es["pretrend_pvalue"] > 0.05
    for v in _leads(es).values():
        assert abs(v["estimate"]) < 3 * v["se"]


def test_pretrend_rejected_with_injected_pretrend(make_panel):
    es, _, _ = twfe_event_study(make_panel(effect=0.5, pretrend=0.1, seed=11))
    assert es["pretrend_pvalue"] < 0.05


def test_reference_period_is_zero_and_end_points_are_binned(panel):
    es, _, _ = twfe_event_study(panel, leads=2, lags=3)
    assert es["-1"]["estimate"] == 0 and es["-1"]["se"] == 0 and es["-1"]["reference"]
    assert es["-2"]["bin"] == "le" and es["3"]["bin"] == "ge"
    assert sorted(int(k) for k in es if k != "pretrend_pvalue") == [-2, -1, 0, 1, 2, 3]


def test_sun_abraham_covers_true_dynamic_effects(dyn_panel):
    sa, _ = sun_abraham(dyn_panel)
    post = {int(e): v for e, v in sa["event_time"].items() if int(e) >= 0}
    covered = [v["ci95"][0] < dynamic(e) < v["ci95"][1] for e, v in post.items()]
    assert len(post) == 10 and np.mean(covered) >= 0.8


def test_callaway_santanna_covers_true_dynamic_effects(dyn_panel):
    cs, _ = callaway_santanna(dyn_panel)
    post = {int(e): v for e, v in cs["event_time"].items() if int(e) >= 0}
    covered = [v["ci95"][0] < dynamic(e) < v["ci95"][1] for e, v in post.items()]
    assert len(post) == 10 and np.mean(covered) >= 0.8


def test_robust_overall_att_covers_truth_under_dynamic_effects(dyn_panel):
    df = dyn_panel.df
    truth = dynamic(df.loc[df["D"] == 1, "rel_time"]).mean()
    for est in (sun_abraham(dyn_panel)[0], callaway_santanna(dyn_panel)[0],
                borusyak_jaravel_spiess(dyn_panel)[0]):
        lo, hi = est["overall"]["ci95"]
        assert lo < truth < hi


def test_sun_abraham_overall_equals_callaway_santanna_without_covariates(dyn_panel):
    # both average the same never-treated 2×2 comparisons with treated-cell weights
    sa, cs = sun_abraham(dyn_panel)[0], callaway_santanna(dyn_panel)[0]
    assert sa["overall"]["estimate"] == pytest.approx(cs["overall"]["estimate"], abs=1e-8)


def test_sun_abraham_event_times_equal_pyfixest_saturated_event_study(dyn_panel):
    import warnings

    import pyfixest as pf

    df = dyn_panel.df.assign(g=dyn_panel.df["cohort"].fillna(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agg = pf.event_study(df, yname="y", idname="unit", tname="time", gname="g",
                             estimator="saturated").aggregate()
    sa = sun_abraham(dyn_panel)[0]["event_time"]
    assert sorted(int(e) for e in sa) == sorted(int(e) for e in agg.index)
    for e, row in agg.iterrows():
        assert sa[str(int(e))]["estimate"] == pytest.approx(float(row["Estimate"]), abs=1e-8)
        assert sa[str(int(e))]["se"] == pytest.approx(float(row["Std. Error"]), rel=1e-6)


def test_robust_estimators_run_on_unbalanced_panel(make_panel):
    p = make_panel(effect=0.5, seed=4, drop_frac=0.1)
    for fn in (sun_abraham, callaway_santanna):
        lo, hi = fn(p)[0]["overall"]["ci95"]
        assert lo < 0.5 < hi


def test_section_figure_says_simulated_and_tables_cover_four_estimators(panel):
    res = event_study(panel)
    assert set(res.tables) == {"event_study", "sun_abraham", "callaway_santanna", "imputation"}
    assert "SIMULATED DATA" in res.figures["event_study"]._suptitle.get_text()
    assert {"event_study", "sun_abraham", "callaway_santanna", "imputation"} <= set(res.summary)


def test_imputation_estimator_event_times_exclude_the_reference_and_are_labelled(dyn_panel):
    bjs, tbl = borusyak_jaravel_spiess(dyn_panel)
    assert "-1" not in bjs["event_time"] and "0" in bjs["event_time"]
    assert set(tbl["estimator"]) == {"Borusyak-Jaravel-Spiess"}


def test_event_study_skipped_without_treatment(make_panel):
    from bayes_nqp.data.panel import panel_from_frame
    from bayes_nqp.frequentist import replicate

    p = make_panel(seed=5)
    raw = p.df[["unit", "time", "y"]]
    bare = panel_from_frame(raw, {"unit": "unit", "time": "time", "outcome": "y"})
    summary = replicate("event_study", bare)
    assert "treatment" in summary["skipped"]["event_study"]


def test_demo_callaway_santanna_overall_covers_true_att(demo, demo_truth):
    cs, _ = callaway_santanna(demo)
    lo, hi = cs["overall"]["ci95"]
    assert lo < demo_truth["att"] < hi
