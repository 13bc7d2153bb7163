"""The Bayesian mediation model: recovery of a, b and the indirect effects on a panel with a known
truth (other column names, integer periods), the ρ-sensitivity, the comparison with the stepwise
replication, the gates, and the panels it skips."""

import numpy as np
import pandas as pd
import pytest

import bayes_nqp as bn
from bayes_nqp.bayes.fit import finish, make_model, sample
from bayes_nqp.bayes.mediation import indirect_under_rho, rho_grid
from bayes_nqp.errors import SectionSkipped, SpecError

# truth on the original scales: outcome in "output" units, mediators in their own units
A = {"skill": 0.5, "rd": -0.4}
B = {"skill": 6.0, "rd": -5.0}       # output per mediator unit
DIRECT = 3.0
INDIRECT = {m: A[m] * B[m] for m in A}  # skill 3.0, rd 2.0: both positive, rd through a < 0


def mediation_frame(seed=11, n_units=60, n_periods=8):
    """Unit effects correlated with the treatment (pilot units differ), mediators of sd ≠ 1."""
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(n_units), n_periods)
    period = np.tile(np.arange(1, n_periods + 1), n_units)
    start = rng.choice([3, 4, 5, 99], size=n_units)[unit]
    treated = (period >= start).astype(int)
    fe = rng.normal(0, 1, n_units)[unit] + 0.8 * (start < 99)
    lam = rng.normal(0, 0.5, n_periods)[period - 1]
    capital = rng.normal(0, 1, unit.size) + 0.5 * fe
    skill = 2.0 * fe + lam + A["skill"] * treated + 0.3 * capital + rng.normal(0, 0.4, unit.size)
    rd = -fe + 0.5 * lam + A["rd"] * treated - 0.2 * capital + rng.normal(0, 0.4, unit.size)
    output = (10 * fe + 3 * lam + DIRECT * treated + B["skill"] * skill + B["rd"] * rd
              + 2.0 * capital + rng.normal(0, 2.0, unit.size))
    return pd.DataFrame({"region_id": [f"r{u}" for u in unit], "period": period, "output": output,
                         "treated": treated, "skill": skill, "rd": rd, "capital": capital})


MAP = {"unit": "region_id", "time": "period", "outcome": "output", "treated": "treated",
       "controls": ["capital"], "mediators": ["skill", "rd"], "time_effects": True, "simulated": True}


@pytest.fixture(scope="module")
def med_panel():
    return bn.panel_from_frame(mediation_frame(), MAP)


@pytest.fixture(scope="module")
def replication(med_panel):
    return bn.replicate("mediation", med_panel, mediation={"reps": 49})


@pytest.fixture(scope="module")
def med_fit(med_panel, replication):
    return bn.fit("mediation", med_panel, draws=1000, tune=500, chains=4, replication=replication,
                  keep_compiled=True)


def test_recovers_a_b_and_indirect_effects_on_original_scales(med_fit, mc):
    for m in A:
        mc.in_hdi(med_fit.draws[f"a[{m}]"], A[m], f"a[{m}]")
        assert med_fit.params[f"a[{m}]"]["mean"] == pytest.approx(A[m], abs=0.1)
        mc.in_hdi(med_fit.draws[f"b[{m}]"], B[m], f"b[{m}]")
        assert med_fit.params[f"b[{m}]"]["mean"] == pytest.approx(B[m], rel=0.1)
        mc.in_hdi(med_fit.draws[f"indirect[{m}]"], INDIRECT[m], f"indirect[{m}]")
        assert med_fit.params[f"indirect[{m}]"]["p_positive"] > 0.99


def test_recovers_direct_and_total_effects(med_fit, mc):
    mc.in_hdi(med_fit.draws["direct"], DIRECT, "direct")
    mc.in_hdi(med_fit.draws["total"], DIRECT + sum(INDIRECT.values()), "total")


def test_total_is_direct_plus_indirect_and_proportions_use_it(med_fit):
    d = med_fit.draws
    np.testing.assert_allclose(d["total"], d["direct"] + d["indirect[skill]"] + d["indirect[rd]"])
    np.testing.assert_allclose(d["prop_mediated[rd]"], d["indirect[rd]"] / d["total"])


def test_indirect_interval_moves_towards_zero_as_rho_offsets_it(med_fit):
    sens = med_fit.extras["rho_sensitivity"]
    # skill: a > 0 and ab > 0, offset by ρ > 0; rd: a < 0 and ab > 0, offset by ρ < 0
    for m, sign in (("skill", 1.0), ("rd", -1.0)):
        s = sens[m]
        rho = np.asarray(s["rho"])
        order = np.argsort(sign * rho)
        keep = order[sign * rho[order] >= 0]
        mean, lo = np.asarray(s["mean"])[keep], np.asarray(s["ci95_lo"])[keep]
        assert np.all(np.diff(mean) < 0) and np.all(np.diff(lo) < 0)
        # the other direction strengthens it
        other = order[sign * rho[order] <= 0]
        assert np.all(np.diff(np.asarray(s["mean"])[other]) < 0)
        assert np.sign(med_fit.extras["rho_breakdown"][m]) == sign


def test_rho_breakdown_is_where_the_interval_first_includes_zero(med_fit):
    post = med_fit.idata["posterior"]
    flat = lambda v: post[v].to_numpy().reshape(-1, *post[v].shape[2:])  # noqa: E731
    a, b, sigma, sigma_m = flat("a_z"), flat("b_z"), flat("sigma"), flat("sigma_m")
    for k, m in enumerate(("skill", "rd")):
        bd = med_fit.extras["rho_breakdown"][m]
        assert 0 < abs(bd) < 0.999
        assert med_fit.params[f"rho_breakdown[{m}]"]["mean"] == pytest.approx(bd)
        cur = indirect_under_rho(a[:, k], b[:, k], sigma, sigma_m[:, k], [bd - np.sign(bd) * 0.002, bd])
        lo, hi = np.quantile(cur, [0.025, 0.975], axis=1)
        assert lo[0] > 0 or hi[0] < 0          # just before: still excludes zero
        assert lo[1] <= 0 <= hi[1]              # at the breakdown: includes it


def test_comparison_sets_the_stepwise_estimates_beside_the_posterior(med_fit, replication):
    cmp = med_fit.comparison_
    assert {"a[skill]", "b[skill]", "indirect[skill]", "a[rd]", "b[rd]", "indirect[rd]", "total"} <= set(cmp)
    step = replication["mediation"]["skill"]
    assert cmp["indirect[skill]"]["frequentist"]["ci95"] == step["indirect_ci95"]
    assert cmp["a[skill]"]["frequentist"]["estimate"] == step["a"]["estimate"]
    # one model with both mediators vs one regression per mediator: a is the same regression
    a_rd = cmp["a[rd]"]
    assert a_rd["bayesian"]["mean"] == pytest.approx(a_rd["frequentist"]["estimate"], abs=0.05)


def test_comparison_table_has_sobel_p_next_to_the_posterior(med_fit, replication):
    rows = med_fit.extras["comparison_table"]
    ind = [r for r in rows if r["quantity"] == "indirect"]
    assert {r["mediator"] for r in ind} == {"skill", "rd"}
    assert all(r["sobel_p"] == replication["mediation"][r["mediator"]]["sobel_p"] for r in ind)
    assert all(len(r["hdi95"]) == 2 and r["stepwise_ci95"] is not None for r in rows)


def test_figures_decomposition_and_sensitivity_say_simulated(med_fit):
    from bayes_nqp.report.figures import model_figures

    figs = model_figures(None, med_fit.summary_json(), None, ["decomposition", "rho_sensitivity"])
    assert all(fig is not None for fig in figs.values())
    for fig in figs.values():
        assert fig._suptitle.get_text().startswith("SIMULATED DATA")


def test_diagnostics_pass_on_a_well_sampled_fit(med_fit):
    diag = med_fit.diagnostics()
    assert diag["passed"] is True and diag["divergences"] == 0
    assert diag["loo"]["n_points"] == 60  # leave one unit out


def test_starved_fit_fails_the_gates(med_fit):
    m, pm_model, compiled = med_fit.compiled_
    settings = m.spec.quick.override(draws=25, tune=10, chains=1)
    starved = finish(m, pm_model, sample(compiled, settings), settings, seconds0=0.0,
                     loo=False, ppc=False, psense=False)
    assert starved.diagnostics()["passed"] is False
    assert starved.diagnostics()["failures"]


def test_panel_without_mediators_skips_with_a_reason(make_panel):
    p = make_panel(n_units=20, n_periods=4, cohorts={2013: 10}, mediators=False, seed=2)
    with pytest.raises(SectionSkipped, match="mediators"):
        make_model("mediation", p)


def test_rho_grid_rejects_values_outside_minus_one_one():
    assert rho_grid({"start": -0.5, "stop": 0.5, "step": 0.25}).tolist() == [-0.5, -0.25, 0.0, 0.25, 0.5]
    with pytest.raises(SpecError, match="between −1 and 1"):
        rho_grid([0.2, 1.0])


@pytest.mark.slow
def test_demo_panel_recovers_the_simulated_mediation(demo, demo_truth, mc):
    f = bn.fit("mediation", demo, replication=False)
    truth = demo_truth["mediation"]
    assert f.passed
    for m in ("human_capital", "sci_tech"):
        for q in ("a", "b", "indirect"):
            mc.in_hdi(f.draws[f"{q}[{m}]"], truth[m][q], f"{q}[{m}]")
    mc.in_hdi(f.draws["direct"], truth["direct"], "direct")
    mc.in_hdi(f.draws["total"], truth["total"], "total")


@pytest.mark.slow
def test_pooled_unit_effects_recover_a_and_b(med_panel, mc):
    from dataclasses import replace

    from bayes_nqp.bayes.spec import load_spec

    spec = load_spec("mediation")
    spec = replace(spec, options={**spec.options, "unit_effects": "pooled"})
    f = bn.fit("mediation", med_panel, spec=spec, quick=True, replication=False, psense=False)
    for m in A:
        mc.in_hdi(f.draws[f"a[{m}]"], A[m], f"a[{m}]")


def test_estimands_lie_along_mediator_and_keep_their_names(med_fit):
    ds = med_fit.estimand_draws
    assert ds["indirect"].dims == ("chain", "draw", "mediator")
    assert list(ds["indirect"]["mediator"].values) == list(A)
    assert list(med_fit.draws) == ([f"{q}[{m}]" for q in ("a", "b", "indirect") for m in A] + ["direct", "total"]
                                   + [f"{q}[{m}]" for q in ("prop_mediated", "rho_breakdown") for m in A])


def test_long_panel_log_likelihood_and_ppc_use_thinned_draws(med_fit, thinned_post_processing):
    """Above base.LOO_MAX_VALUES draws × rows the per-unit log-likelihoods are computed on
    LOO_THIN_DRAWS evenly thinned draws (the same values as the full computation at those draws),
    and the PPC keeps at least 2 draws per chain under PPC_MAX_VALUES (issue 10: 1M rows)."""
    model = med_fit.compiled_[0]
    _, thin, pp = thinned_post_processing(model, med_fit.idata, 40)
    assert thin.sizes["chain"] == 4 and thin.sizes["draw"] == 10
    assert pp.sizes["draw"] == 2 and pp.sizes["obs"] == len(model.y_z)
