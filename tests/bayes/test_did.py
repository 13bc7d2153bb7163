"""The Bayesian two-way DID (bayes_nqp.bayes.did): the marginal likelihood, recovery of known
effects, the parameterisations against each other, and Bambi as an independent cross-check."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

import bayes_nqp as bn
from bayes_nqp.bayes.did import marginal_logp, unit_conditional, unit_marginal_logp
from bayes_nqp.bayes.fit import make_model
from bayes_nqp.bayes.spec import load_spec
from bayes_nqp.errors import SpecError


def did_spec(**options):
    spec = load_spec("did")
    return replace(spec, options={**spec.options, **options})


# ---- the marginal likelihood, against independent references ------------------------------------

def test_unit_marginal_logp_equals_the_multivariate_normal_density():
    rng = np.random.default_rng(0)
    sigma, sigma_unit = 0.7, 1.3
    for n in (1, 4, 9):
        r = rng.normal(size=n)
        cov = sigma**2 * np.eye(n) + sigma_unit**2 * np.ones((n, n))
        expected = stats.multivariate_normal(np.zeros(n), cov).logpdf(r)
        got = unit_marginal_logp(r.sum(), (r**2).sum(), n, sigma, sigma_unit)
        assert got == pytest.approx(expected, rel=1e-10)


def test_marginal_logp_is_the_sum_of_the_per_unit_densities_on_an_unbalanced_panel():
    rng = np.random.default_rng(1)
    n = np.array([3.0, 7.0, 1.0, 5.0])
    r = [rng.normal(size=int(k)) for k in n]
    s1, s2 = np.array([x.sum() for x in r]), np.array([(x**2).sum() for x in r])
    total = marginal_logp(s2.sum(), s1, n, 0.4, 0.9)
    assert total == pytest.approx(unit_marginal_logp(s1, s2, n, 0.4, 0.9).sum(), rel=1e-12)


def test_unit_conditional_is_the_conjugate_normal_posterior():
    # α − μ ~ N(0, σ_α²), residuals r_t ~ N(α − μ, σ²): posterior precision 1/σ_α² + n/σ²
    mean, sd = unit_conditional(s1=6.0, n=4.0, sigma=1.0, sigma_unit=2.0)
    assert sd == pytest.approx((1 / 4 + 4) ** -0.5)
    assert mean == pytest.approx(6.0 / (1 / 4 + 4))


# ---- the spec ---------------------------------------------------------------------------------

def test_marginal_unit_effects_with_student_t_is_a_spec_error(synthetic):
    with pytest.raises(SpecError, match="needs the normal likelihood"):
        make_model("did", synthetic.panel, spec=did_spec(likelihood="student_t"))


def test_unknown_likelihood_is_a_spec_error_naming_the_choices(synthetic):
    with pytest.raises(SpecError, match="normal, student_t"):
        make_model("did", synthetic.panel, spec=did_spec(likelihood="cauchy"))


def test_did_builds_without_controls_or_year_effects(synthetic):
    bare = bn.panel_from_frame(synthetic.raw, {"unit": "firm", "time": "period", "outcome": "output",
                                               "cohort": "first_treated", "time_effects": False})
    model = make_model("did", bare)
    pm_model = model.build()
    assert "gamma" not in pm_model.named_vars and "beta" not in pm_model.named_vars
    assert model.coords()["unit_mean"] == ["mean(D)"]
    assert model.W.shape == (bare.n_obs, 3)  # μ, D and the unit mean of D


# ---- the fit on the synthetic panel (other column names, integer periods, unbalanced) ------------

def test_did_recovers_the_known_effect_on_a_synthetic_unbalanced_panel(did_fit, synthetic, mc):
    e = did_fit.params["tau"]
    mc.in_hdi(did_fit.draws["tau"], synthetic.truth["tau"], "tau")
    assert e["sd"] < 0.1  # informative, not merely wide
    assert did_fit.passed, did_fit.diag["failures"]


def test_did_tau_sits_next_to_the_mean_of_the_unit_effects(did_fit):
    """The default (unit-varying effects) is compared with its own estimand's frequentist
    number, named, with the posterior sd beside the frequentist SE."""
    c = did_fit.comparison_["tau"]
    assert c["frequentist"]["source"].startswith("mean of unit-specific TWFE effects")
    assert "mean of the unit-specific effects" in c["estimand"]
    assert abs(c["bayesian"]["mean"] - c["frequentist"]["estimate"]) < did_fit.params["tau"]["sd"]
    assert 0.6 < c["sd_ratio"] < 1.6
    summary = did_fit.summary_json()
    assert any("varies by unit" in a for a in summary["assumptions"])
    assert "tau" in summary["estimands"]


def test_did_draws_alpha_per_city_after_sampling(did_fit, synthetic):
    alpha = did_fit.idata["posterior"]["alpha"]
    assert alpha.dims == ("chain", "draw", "unit")
    assert alpha.sizes["unit"] == synthetic.panel.n_units
    truth = np.array([synthetic.truth["alpha"][c] for c in alpha["unit"].to_numpy()])
    # α is identified up to the year effects' level; its shape across firms must match
    assert np.corrcoef(alpha.mean(("chain", "draw")).to_numpy(), truth)[0, 1] > 0.95


def test_did_loo_leaves_one_city_out(did_fit, synthetic):
    assert did_fit.idata["log_likelihood"]["y"].dims == ("chain", "draw", "unit")
    loo = did_fit.diag["loo"]
    assert loo["n_points"] == synthetic.panel.n_units
    assert not loo["warning"]


def test_did_posterior_predictive_reproduces_the_outcome_distribution(did_fit, synthetic):
    pp = did_fit.idata["posterior_predictive"]["y"]
    assert pp.sizes["obs"] == synthetic.panel.n_obs
    for stat in ("mean", "sd", "q05", "q95"):
        assert 0.01 < did_fit.diag["ppc"][stat]["p_value"] < 0.99, stat


# ---- the parameterisations against each other ---------------------------------------------------

@pytest.mark.slow  # a fit of its own (20-40 s): the default suite stays under 10 min
def test_marginal_and_noncentred_unit_effects_agree_on_tau(did_fit, synthetic, mc):
    nc = bn.fit("did", synthetic.panel, spec=did_spec(unit_effects="noncentered"),
                draws=500, tune=500, chains=2, seed=3, replication=False, loo=False, ppc=False)
    a, b = nc.params["tau"], did_fit.params["tau"]
    mc.close(nc.draws["tau"], did_fit.draws["tau"], 0.15 * b["sd"], "tau: marginal vs noncentred")
    # relative MC error of an sd is ≈ 1/sqrt(2 ESS): ≈ 3% here, so 15% is 5 MCSEs
    assert a["sd"] == pytest.approx(b["sd"], rel=0.15)


@pytest.mark.slow  # a fit of its own (20-40 s): the default suite stays under 10 min
def test_student_t_likelihood_runs_and_estimates_its_degrees_of_freedom(synthetic, mc):
    fit = bn.fit("did", synthetic.panel, spec=did_spec(likelihood="student_t", unit_effects="centered"),
                 draws=150, tune=150, chains=1, seed=5, replication=False, loo=False, ppc=False)
    assert "nu" in fit.idata["posterior"]
    mc.in_hdi(fit.draws["tau"], synthetic.truth["tau"], "tau (student t)")


# ---- the demo panel ------------------------------------------------------------------------------

def test_did_on_the_demo_passes_the_gates_and_covers_the_mean_unit_effect(demo, demo_truth, mc):
    """Full settings (4 chains × 1000): the marginal model samples in about a second.

    The default did (``effect = "unit"``) estimates the mean of the unit effects τ_i, so its
    truth is the demo's ``unit_effects.mean_treated`` (the mean over pilot cities of each city's
    effect; the demo's cities disagree: city factors with sd 0.4 around the region × size
    pattern). A unit's τ_i is constant while its true effect ramps from 0.6 to 1 of its full
    size, which moves τ by a fraction of its posterior sd. ``att`` (the mean over treated
    city-years) differs from the unit mean by less than 0.1 posterior sd on the demo.
    """
    fit = bn.fit("did", demo, replication=False, ppc=False)
    assert fit.passed, fit.diag["failures"]
    mc.in_hdi(fit.draws["tau"], demo_truth["unit_effects"]["mean_treated"], "demo tau vs mean unit effect")
    assert fit.diag["loo"]["n_points"] == demo.n_units


# ---- Bambi as an independent implementation -------------------------------------------------------

def test_did_matches_bambi_on_the_same_data_and_priors(did_fit, synthetic, mc):
    """The same model in Bambi on the same standardised data with the default prior set's
    priors: y ~ D + controls + unit means + C(period) + (1|firm) + (0 + D|firm) — the default
    did has unit-varying effects (random D slopes by firm, σ_τ ~ HalfNormal(0.5)) and year effects
    with a fixed wide prior (Bambi: period dummies against the first period, N(0, 2); our zero-sum
    N(0, 2) year effects with μ span the same space, and both priors are wide next to the data).
    Same τ within 0.15 posterior sd (Bambi samples the 2 × 72 unit deviations, we integrate them
    out)."""
    import bambi as bmb
    import pandas as pd

    model = make_model("did", synthetic.panel)
    frame = pd.DataFrame({"y": model.y_z, "D": model.D, "k1": model.X_z[:, 0], "k2": model.X_z[:, 1],
                          "firm": synthetic.panel.df["unit"].astype(str).to_numpy(),
                          "period": synthetic.panel.df["time"].astype(str).to_numpy()})
    lam = next(b for b in model.design if b.name == "lambda")
    means = [f"m{j}" for j in range(lam.cols.shape[1])]
    for j, name in enumerate(means):
        frame[name] = lam.cols[:, j]
    normal1 = bmb.Prior("Normal", mu=0, sigma=1)
    priors = {"Intercept": normal1, "D": normal1, "k1": normal1, "k2": normal1,
              **{m: normal1 for m in means}, "C(period)": bmb.Prior("Normal", mu=0, sigma=2),
              "sigma": bmb.Prior("HalfNormal", sigma=1),
              "1|firm": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=1)),
              "D|firm": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=0.5))}
    bm = bmb.Model(f"y ~ D + k1 + k2 + {' + '.join(means)} + C(period) + (1|firm) + (0 + D|firm)",
                   frame, priors=priors)
    idata = bm.fit(draws=1000, tune=1000, chains=4, inference_method="nutpie", random_seed=2,
                   progressbar=False)
    bambi_tau = idata["posterior"]["D"].to_numpy() * model.y_sd  # (chain, draw)
    ours = did_fit.params["tau"]
    mc.close(bambi_tau, did_fit.draws["tau"], 0.1 * ours["sd"], "tau vs Bambi")


def test_unit_effect_summaries_of_a_large_panel_match_the_stored_draws(did_fit, did_compiled, monkeypatch):
    """Above UNIT_DRAW_MAX_VALUES the per-unit mean and sd of α_i and τ_i come from the exact
    conditional moments on thinned draws (no random draws): they agree with the moments of the
    per-draw unit effects stored below the threshold, within Monte-Carlo error."""
    import xarray as xr

    from bayes_nqp.bayes import did as did_module

    model, pm_model, _ = did_compiled
    post = did_fit.idata["posterior"].to_dataset()
    plain = xr.DataTree.from_dict({"posterior": post.drop_vars(["alpha", "tau_unit_z"])})
    monkeypatch.setattr(did_module, "UNIT_DRAW_MAX_VALUES", 1000)
    ue = model.postprocess(plain, pm_model)["unit_effects"].to_dataset()
    for var in ("alpha", "tau_unit_z"):
        draws = post[var].to_numpy().reshape(-1, post.sizes["unit"])
        sd = draws.std(0)
        # MC error of the two means: about sd·√(1/4000 + 1/500) ≈ 0.05 sd; the bound is 5 of them
        assert np.all(np.abs(ue[f"{var}_mean"].to_numpy() - draws.mean(0)) < 0.25 * sd)
        assert np.all(np.abs(ue[f"{var}_sd"].to_numpy() / sd - 1) < 0.2)
