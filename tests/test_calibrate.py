"""Placebo-law calibration and simulation-based calibration on the engine (in-process)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bayes_nqp as bn
from bayes_nqp import engine
from bayes_nqp.calibration import (placebo_draws, placebo_panel, simulate_twoway, twfe_placebo,
                                   uniformity_pvalue, wilson)

SAMPLER = {"draws": 150, "tune": 200, "chains": 2}


@pytest.fixture(scope="module")
def demo():
    return bn.demo_panel()


@pytest.fixture(scope="module")
def small(demo):
    """The demo's 27 never-treated cities with one placebo adoption pattern (12 years)."""
    d = placebo_draws(demo, 1, seed=5)[0]
    return placebo_panel(demo, d["units"], d["years"])


def test_wilson_interval_matches_the_closed_form():
    lo, hi = wilson(5, 100)
    assert lo == pytest.approx(0.02154, abs=1e-4) and hi == pytest.approx(0.11175, abs=1e-4)
    assert wilson(0, 20)[0] == 0.0 and wilson(0, 0) == [None, None]


def test_placebo_panels_use_never_treated_units_and_absorbing_adoption(demo):
    draws = placebo_draws(demo, 3, seed=1)
    never = set(demo.df.groupby("unit")["D"].max().loc[lambda s: s == 0].index)
    for d in draws:
        pp = placebo_panel(demo, d["units"], d["years"])
        assert set(pp.units) == never and set(d["units"]) <= never
        assert len(d["units"]) == round(0.5 * len(never))
        g = pp.df.groupby("unit")["D"]
        assert (g.diff().dropna() >= 0).all()  # absorbing
        first = pp.df[pp.df["D"] == 1].groupby("unit")["time"].min()
        assert dict(first) == dict(zip(d["units"], d["years"]))
    assert placebo_draws(demo, 3, seed=1) == draws  # the seed fixes the placebo laws


def test_placebo_mode_all_keeps_the_real_treatment_as_a_control(demo):
    d = placebo_draws(demo, 1, seed=2, mode="all")[0]
    pp = placebo_panel(demo, d["units"], d["years"], mode="all")
    assert pp.n_units == demo.n_units and "D_real" in pp.controls
    assert np.array_equal(pp.df["D_real"].to_numpy(), demo.df["D"].to_numpy())


def test_placebo_calibration_writes_the_summary_with_twfe_on_the_same_panels(demo, tmp_path):
    res = bn.calibrate_placebo("did", demo, n=6, seed=7, workers=1, out=tmp_path, **SAMPLER)
    s = json.loads((tmp_path / "calibration/placebo/did/summary.json").read_text())
    for k in ("n", "false_positive_rate", "false_positive_ci95", "twfe_iid_rate", "twfe_cluster_rate",
              "replicates"):
        assert k in s
    assert s["n"] == 6 and len(s["replicates"]) == 6 and s["notice"]
    rows = s["replicates"]
    assert s["false_positive_rate"] == pytest.approx(np.mean([r["excludes_zero"] for r in rows]))
    lo, hi = s["false_positive_ci95"]
    assert lo <= s["false_positive_rate"] <= hi
    for r in rows:
        assert r["interval"][0] <= r["estimate"] <= r["interval"][1]
        assert r["excludes_zero"] == (r["interval"][0] > 0 or r["interval"][1] < 0)
    # the TWFE numbers are pyfixest's on the very same placebo panel
    import pyfixest as pf

    r = rows[0]
    pp = placebo_panel(demo, r["placebo_units"], r["placebo_years"])
    f = pf.feols("y ~ D + " + " + ".join(demo.controls) + " | unit + time", data=pp.df, vcov="iid")
    assert r["twfe_iid"]["estimate"] == pytest.approx(float(f.coef()["D"]), rel=1e-10)
    assert r["twfe_cluster"]["se"] == pytest.approx(twfe_placebo(pp)["cluster"]["se"], rel=1e-10)
    assert r["twfe_iid"]["se"] != pytest.approx(r["twfe_cluster"]["se"], rel=1e-3)
    assert res.summary["engine"]["compilations"] <= 1  # the refits reuse one compilation


# ---- SBC ---------------------------------------------------------------------------------------

def _spec(**options):
    from dataclasses import replace

    from bayes_nqp.bayes.spec import load_spec

    spec = load_spec("did")
    return replace(spec, options={**spec.options, **options})


def _potential_logp(small, truth, ys, spec):
    """The did model's own potential (its marginal likelihood) at ``truth`` for each outcome,
    by swapping the statistics of the simulated panels (its pm.Data, ``likelihood_data``) into
    one compiled logp."""
    from pymc.model.transform.conditioning import remove_value_transforms
    from pytensor.compile import SharedVariable
    from pytensor.graph.basic import ancestors

    from bayes_nqp.bayes.fit import make_model

    base = make_model("did", small, "default", spec)
    lifted, _, _ = engine.lift_constants(base.build())
    plain = remove_value_transforms(lifted)
    pot = plain.logp(vars=plain.potentials)  # in terms of the value variables
    fn = plain.compile_fn(pot, inputs=plain.value_vars, point_fn=True, on_unused_input="ignore")
    shared = {v.name: v for v in ancestors([pot]) if isinstance(v, SharedVariable)}
    point = {v.name: np.asarray(truth[v.name]) for v in plain.value_vars}
    out = []
    for y in ys:
        sim = small.subset(np.ones(small.n_obs, dtype=bool))
        sim.df["y"] = base.y_mean + base.y_sd * y
        m = make_model("did", sim, "default", spec)
        m.y_mean, m.y_sd, m.y_z = base.y_mean, base.y_sd, y
        for k, v in m.likelihood_data().items():  # the model's own data: its statistics
            shared[f"stat__{k}"].set_value(v)
        out.append(float(fn(point)))
    return np.array(out)


def _expected_logp(m, s2, su2, se2, rho):
    """E[log N(r_i; 0, Σ_i)] = −½ Σ_i [n_i log 2π + log|Σ_i| + n_i] with Σ_i = σ²R(ρ) + σ_α²11'
    + σ_τ²d_id_i' (the model's covariance of a unit's residuals; the panel is balanced)."""
    total = 0.0
    for i, start in enumerate(m.unit_start):
        n = int(m.n_per_unit[i])
        d = m.effect_rows[start:start + n]
        lag = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
        cov = s2 * rho ** lag + su2 + se2 * np.outer(d, d)
        total += n * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1] + n
    return -0.5 * total


@pytest.mark.parametrize("errors", ["iid", "ar1"])
def test_did_simulator_is_the_generative_process_of_its_likelihood(small, errors):
    from bayes_nqp.bayes.fit import make_model
    from bayes_nqp.calibration import prior_draw

    spec = _spec(errors=errors)
    m = make_model("did", small, "default", spec)
    assert m.effect == "unit"  # the default: unit-varying effects tau_i ~ N(tau, sigma_effect)
    truth = prior_draw(m.build(), seed=3)
    truth["sigma"], truth["sigma_unit"], truth["sigma_effect"] = (np.asarray(0.6), np.asarray(0.8),
                                                                 np.asarray(0.5))
    rho = 0.5 if errors == "ar1" else 0.0
    if errors == "ar1":
        truth["rho"] = np.asarray(rho)
    rng = np.random.default_rng(0)
    R = 40
    ys = [simulate_twoway(m, truth, rng) for _ in range(R)]
    # moments: a unit's residuals have variance σ² + σ_α² (+ σ_τ² where treated) and covariance
    # σ_α² + ρσ² between consecutive untreated periods
    theta = np.concatenate([np.atleast_1d(truth[b.name]).ravel() for b in m.design])
    r = np.array(ys) - m.W @ theta
    treated = m.effect_rows == 1
    assert treated.sum() > 30
    assert r[:, ~treated].var() == pytest.approx(0.6**2 + 0.8**2, rel=0.1)
    assert r[:, treated].var() == pytest.approx(0.6**2 + 0.8**2 + 0.5**2, rel=0.15)
    first, second = m.unit_start, m.unit_start + 1
    both = ~treated[first] & ~treated[second]
    assert np.mean(r[:, first[both]] * r[:, second[both]]) == pytest.approx(0.8**2 + rho * 0.36, abs=0.12)
    # the model's own marginal log density, averaged over simulations, is its expectation under
    # the simulator (and not under a wrong one)
    expected = _expected_logp(m, 0.36, 0.64, 0.25, rho)
    lp = _potential_logp(small, truth, ys, spec)
    se = lp.std(ddof=1) / np.sqrt(R)
    assert abs(lp.mean() - expected) < 5 * se
    wrong = _potential_logp(small, truth, [simulate_twoway(m, truth, rng, noise_scale=1.5)
                                           for _ in range(8)], spec)
    assert expected - wrong.mean() > 20 * se


def test_simulate_returns_the_unit_effects_it_drew(small):
    from bayes_nqp.bayes.fit import make_model
    from bayes_nqp.calibration import prior_draw

    m = make_model("did", small, "default")
    truth = prior_draw(m.build(), seed=4)
    y, lat = m.simulate(truth, np.random.default_rng(1), latents=True)
    y2 = m.simulate(truth, np.random.default_rng(1))
    assert np.array_equal(y, y2)
    theta = np.concatenate([np.atleast_1d(truth[b.name]).ravel() for b in m.design])
    dev = lat["alpha"] - m.W_unit @ theta
    t = lat["tau_unit_z"] - float(truth["tau_z"])
    eps = y - m.W @ theta - dev[m.unit_idx] - t[m.unit_idx] * m.effect_rows
    assert eps.std() == pytest.approx(float(truth["sigma"]), rel=0.1)


def test_sbc_passes_for_the_right_simulator_and_fails_for_a_wrong_noise_scale(small, tmp_path):
    right = bn.calibrate_sbc("did", small, n=16, seed=1, thin_to=50, workers=1, out=tmp_path / "r",
                             figures=False, **SAMPLER)
    wrong = bn.calibrate_sbc("did", small, n=10, seed=1, thin_to=50, workers=1, out=tmp_path / "w",
                             noise_scale=1.5, figures=False, **SAMPLER)
    s = json.loads((tmp_path / "r/calibration/sbc/did/summary.json").read_text())
    assert s["n"] == 16 and {"tau", "sigma", "sigma_unit"} <= set(s["estimands"])
    assert all(len(e["ranks"]) == 16 and 0 <= min(e["ranks"]) and max(e["ranks"]) <= 50
               for e in s["estimands"].values())
    assert right.summary["passed"], {k: v["pvalue_uniform"] for k, v in s["estimands"].items()}
    assert not wrong.summary["passed"]
    # the data are noisier than the model thinks: σ is above its posterior draws every time
    assert wrong.summary["estimands"]["sigma"]["pvalue_uniform"] < 1e-4
    assert min(wrong.summary["estimands"]["sigma"]["ranks"]) == 0 or \
        np.mean(wrong.summary["estimands"]["sigma"]["ranks"]) < 5


def test_uniformity_pvalue_separates_uniform_from_piled_up_ranks():
    rng = np.random.default_rng(0)
    assert uniformity_pvalue(rng.integers(0, 51, 200), 50) > 0.01
    assert uniformity_pvalue(np.r_[np.zeros(100), rng.integers(0, 51, 100)], 50) < 1e-4


@pytest.mark.slow
def test_sbc_of_did_with_100_replicates_passes(small, tmp_path):
    res = bn.calibrate_sbc("did", small, n=100, seed=2, thin_to=100, workers=1, out=tmp_path,
                           draws=400, tune=400, chains=2)
    assert res.summary["passed"]


# ---- the command line ----------------------------------------------------------------------------

def test_calibrate_subcommands_are_registered_and_bad_input_exits_two(tmp_path):
    from typer.testing import CliRunner

    from bayes_nqp.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["calibrate", "--help"])
    assert res.exit_code == 0 and "placebo" in res.output and "sbc" in res.output
    res = runner.invoke(app, ["calibrate", "placebo", "--data", str(tmp_path / "missing.csv"),
                              "--map", str(tmp_path / "missing.toml"), "--n", "2", "--workers", "1"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["calibrate", "placebo", "--model", "threshold", "--n", "2"])
    assert res.exit_code == 2  # not a model the placebo calibration supports


# ---- simulators of the other models ----------------------------------------------------------

@pytest.fixture(scope="module")
def staggered_small(demo):
    """60 cities of the demo (every cohort and never-treated units kept): a staggered design."""
    units = demo.units
    rng = np.random.default_rng(0)
    keep = set(rng.choice(units, 60, replace=False))
    return demo.subset(demo.df["unit"].isin(keep).to_numpy())


def test_event_study_simulator_moments_are_its_likelihoods(staggered_small):
    """The event study's y is a potential (unit intercepts and post-period deviations integrated
    out), so its simulator is TwoWayModel.simulate: around Wθ the residuals have variance
    σ² + σ_α² on pre-period rows and σ² + σ_α² + σ_τ² on post-period rows (iid errors)."""
    from bayes_nqp.bayes.fit import make_model
    from bayes_nqp.calibration import prior_draw

    m = make_model("event_study", staggered_small, "default")
    truth = prior_draw(m.build(), seed=5)
    truth["sigma"], truth["sigma_unit"], truth["sigma_effect"] = (np.asarray(0.5), np.asarray(0.7),
                                                                  np.asarray(0.6))
    theta = np.concatenate([np.atleast_1d(np.asarray(truth[b.name], dtype=float)).ravel() for b in m.design])
    rng = np.random.default_rng(1)
    R = 200
    r = np.array([m.simulate(truth, rng) for _ in range(R)]) - m.W @ theta
    post = m.effect_rows > 0
    # sample variances over R x rows values: a few percent of relative error
    assert r[:, ~post].var() == pytest.approx(0.25 + 0.49, rel=0.06)
    assert r[:, post].var() == pytest.approx(0.25 + 0.49 + 0.36, rel=0.06)


def test_staggered_simulator_moments_are_its_likelihoods(staggered_small):
    """The staggered model's y is a potential (intercepts and the treated units' effect deviations
    integrated out): its simulator is TwoWayModel.simulate on the saturated cell design, so
    around Wθ the residuals have variance σ² + σ_α² on untreated rows and σ² + σ_α² + σ_τ² on
    treated rows, covariance σ_α² between a unit's rows, and the latents are what they add."""
    from bayes_nqp.bayes.fit import make_model
    from bayes_nqp.calibration import prior_draw

    m = make_model("staggered", staggered_small, "default", None)
    truth = prior_draw(m.build(), seed=6)
    truth["sigma"], truth["sigma_unit"], truth["sigma_effect"] = (np.asarray(0.5), np.asarray(0.7),
                                                                  np.asarray(0.6))
    theta = np.concatenate([np.atleast_1d(np.asarray(truth[b.name], dtype=float)).ravel() for b in m.design])
    rng = np.random.default_rng(3)
    R = 200
    sims = [m.simulate(truth, rng, latents=True) for _ in range(R)]
    r = np.array([y for y, _ in sims]) - m.W @ theta
    treated = m.D > 0
    assert r[:, ~treated].var() == pytest.approx(0.25 + 0.49, rel=0.06)
    assert r[:, treated].var() == pytest.approx(0.25 + 0.49 + 0.36, rel=0.06)
    untreated_pair = np.flatnonzero(~treated[:-1] & ~treated[1:] & (m.unit_idx[:-1] == m.unit_idx[1:]))
    assert np.mean(r[:, untreated_pair] * r[:, untreated_pair + 1]) == pytest.approx(0.49, abs=0.06)
    # the latents: α_i around its cohort mean, τ_i = the unit's average cell effect + t_i
    alpha = np.array([lat["alpha"] for _, lat in sims])
    tau_i = np.array([lat["tau_unit_z"] for _, lat in sims])
    centre = m.effect_centre(theta[None, :])[0]
    t = tau_i - centre
    assert t[:, m.C_unit.sum(1) > 0].std() == pytest.approx(0.6, rel=0.05)
    eps = r - (alpha - m.W_unit @ theta)[:, m.unit_idx] - t[:, m.unit_idx] * m.D
    assert eps.std() == pytest.approx(0.5, rel=0.03)


@pytest.mark.slow  # a smoke test (4 replicates, no uniformity verdict); its simulators are tested above
@pytest.mark.parametrize("model", ["staggered", "event_study"])
def test_sbc_runs_for_the_staggered_designs(staggered_small, model, tmp_path):
    res = bn.calibrate_sbc(model, staggered_small, n=4, seed=1, thin_to=40, workers=1, out=tmp_path,
                           figures=False, **SAMPLER)
    s = res.summary
    assert s["n"] == 4 and s["failed"] == 0
    head = "att" if model == "staggered" else "att_post"
    assert head in s["estimands"] and "sigma" in s["estimands"]
    assert "breakdown_M" not in s["estimands"]  # a number of the whole posterior, not a draw
    assert all(0 <= r <= 40 for e in s["estimands"].values() for r in e["ranks"])


# ---- mediation and threshold: their simulators and SBC ----------------------------------------

def _refit(name, base, y_z, columns=None, spec=None):
    """The model on the simulated panel, on ``base``'s scales (as calibration.sbc_task makes it)."""
    from bayes_nqp.bayes.fit import make_model
    from bayes_nqp.calibration import _with_scale

    sim = base.panel.subset(np.ones(base.panel.n_obs, dtype=bool))
    y = base.y_mean + base.y_sd * y_z
    sim.df["y"] = y
    for col, v in (columns or {}).items():
        sim.df[col] = v
    return _with_scale(make_model(name, sim, "default", spec or base.spec), y, base.y_mean, base.y_sd, base)


def _mediation_truth(m, seed):
    from bayes_nqp.calibration import prior_draw

    truth = prior_draw(m.build(), seed=seed)
    truth["sigma"], truth["sigma_m"] = np.asarray(0.6), np.array([0.5, 0.8])
    return truth


def test_mediation_simulator_is_the_generative_process_of_its_within_likelihood(small):
    """The model's own potential (its code, ``_within_loglik``, with Z'Z of each simulated panel)
    at the true parameters averages to its expectation under the simulator:
    Σ_eq −n_eff/2·(log 2πσ_eq² + 1), since each SSR/σ_eq² is χ²(n_eff); and not under a wrong one."""
    import pytensor
    import pytensor.tensor as pt

    from bayes_nqp.bayes.fit import make_model

    base = make_model("mediation", small, "default")
    assert base.effects == "within"
    truth = _mediation_truth(base, seed=3)
    c = {k: pt.as_tensor(np.asarray(v, dtype=float)) for k, v in truth.items()}
    ZZ = pt.matrix("ZZ")
    base.ZZ = ZZ  # the model's own log-likelihood code, as a function of the data's cross products
    lp = pytensor.function([ZZ], base._within_loglik(c["a_z"], c["beta_m"], c["tau_z"], c["b_z"],
                                                     c["beta"], c["sigma"], c["sigma_m"]))
    n_eff = base.fe.n_eff
    sig = np.r_[0.6, 0.5, 0.8]
    expected = float(np.sum(-0.5 * n_eff * (np.log(2 * np.pi * sig ** 2) + 1)))
    rng = np.random.default_rng(0)
    R = 30
    values, chi2 = [], []
    for _ in range(R):
        y, lat = base.simulate(truth, rng, latents=True)
        m = _refit("mediation", base, y, lat["columns"])
        assert np.allclose(m.m_sd, base.m_sd) and m.y_sd == base.y_sd
        values.append(float(lp(m.ZZ)))
        # each equation on its own: SSR / σ² averages n_eff (no error hides behind another)
        e_y = m.yw - float(truth["tau_z"]) * m.Dw - m.Mw @ truth["b_z"] - m.Xw @ truth["beta"]
        e_m = m.Mw - m.Dw[:, None] * truth["a_z"][None, :] - m.Xw @ truth["beta_m"]
        chi2.append(np.r_[e_y @ e_y / 0.36, (e_m ** 2).sum(axis=0) / np.array([0.25, 0.64])])
    se = np.sqrt(3 * n_eff / 2 / R)  # var(log-lik) = Σ_eq n_eff/2
    assert abs(np.mean(values) - expected) < 5 * se
    assert np.allclose(np.mean(chi2, axis=0), n_eff, atol=5 * np.sqrt(2 * n_eff / R))
    wrong = [float(lp(_refit("mediation", base, *(lambda r: (r[0], r[1]["columns"]))(
        base.simulate(truth, rng, noise_scale=1.5, latents=True))).ZZ)) for _ in range(5)]
    assert expected - np.mean(wrong) > 50 * se


@pytest.mark.slow  # two compilations of the pooled model (about 40 s); the default is "within"
def test_mediation_simulator_with_pooled_effects_is_the_models_own_density(small):
    """With ``unit_effects = "pooled"`` M and y are observed Normal variables: their log density
    (PyMC's, of the model built on the simulated panel) at the truth is
    −n/2·Σ_eq (log 2πσ_eq² + 1) within a few of its sds, and far below with a wrong noise scale."""
    from dataclasses import replace

    from pymc.model.transform.conditioning import remove_value_transforms

    from bayes_nqp.bayes.fit import make_model

    spec = make_model("mediation", small, "default").spec
    spec = replace(spec, options={**spec.options, "unit_effects": "pooled"})
    base = make_model("mediation", small, "default", spec)
    truth = _mediation_truth(base, seed=4)
    rng = np.random.default_rng(1)
    n = small.n_obs
    expected = float(np.sum(-0.5 * n * (np.log(2 * np.pi * np.r_[0.36, 0.25, 0.64]) + 1)))
    vals = []
    for scale in (1.0, 1.5):
        y, lat = base.simulate(truth, rng, noise_scale=scale, latents=True)
        pm_m = remove_value_transforms(_refit("mediation", base, y, lat["columns"], spec).build())
        logp = pm_m.compile_logp(vars=pm_m.observed_RVs, jacobian=False)
        vals.append(float(logp({pm_m.rvs_to_values[rv].name: np.asarray(truth[rv.name])
                                for rv in pm_m.free_RVs})))
    sd = np.sqrt(3 * n / 2)  # sd of one simulation's log density (n/2 per equation)
    assert abs(vals[0] - expected) < 5 * sd
    assert expected - vals[1] > 20 * sd


def test_threshold_simulator_is_the_generative_process_of_its_marginal_likelihood(small):
    """γ and θ are integrated out of the sharp model; at the true β, σ its own exact conditionals
    (``log_marginal``: p(cell | β, σ, y) and θ | cell ~ N(mean, cov)) on simulated panels must
    (i) average, over simulations, to the prior of γ (data-averaged posterior = prior), and
    (ii) put the true θ at a Mahalanobis distance whose square averages k (χ²_k); with a wrong
    noise scale the conditionals are too sure of θ."""
    from bayes_nqp.bayes.fit import make_model
    from bayes_nqp.calibration import prior_draw, sbc_spec

    spec = sbc_spec("threshold")
    assert spec.option("compare") is False  # the SBC fits do not compare 0, 1, 2 thresholds
    base = make_model("threshold", small, "default", spec)
    truth = prior_draw(base.build(), seed=5)
    truth["sigma"] = np.asarray(0.7)
    prior = base.priors["slope"].params
    mu0, s0 = float(prior["mu"]), float(prior["sigma"])
    rng = np.random.default_rng(2)
    p_prior = np.exp(base.logw - np.logaddexp.reduce(base.logw))

    def run(R, scale):
        post_mean_gamma, true_gamma, d2 = [], [], []
        for _ in range(R):
            y, lat = base.simulate(truth, rng, noise_scale=scale, latents=True)
            m = _refit("threshold", base, y, spec=spec)
            lm, mean, cov = m.log_marginal(np.asarray(truth["beta"])[None], np.array([0.7]), mu0, s0)
            lp = lm[0] + m.logw
            p = np.exp(lp - np.logaddexp.reduce(lp))
            post_mean_gamma.append(p @ m.grid)
            g = int(np.flatnonzero(m.grid == lat["gamma"][0])[0])
            mu = np.array([mean[a][0, g] for a in range(2)])
            C = np.array([[cov[a][b][0, g] for b in range(2)] for a in range(2)])
            r = lat["slope_z"] - mu
            d2.append(r @ np.linalg.solve(C, r))
            true_gamma.append(lat["gamma"][0])
        return np.array(post_mean_gamma), np.array(true_gamma), np.array(d2)

    R = 150
    pm_gamma, tg, d2 = run(R, 1.0)
    prior_mean = p_prior @ base.grid
    sd = np.sqrt(p_prior @ (base.grid - prior_mean) ** 2)
    assert abs(tg.mean() - prior_mean) < 4 * sd / np.sqrt(R)  # γ drawn from the grid prior
    assert abs(pm_gamma.mean() - prior_mean) < 4 * sd / np.sqrt(R)
    assert abs(d2.mean() - 2) < 5 * np.sqrt(4 / R)
    _, _, d2_wrong = run(40, 1.5)
    assert d2_wrong.mean() - 2 > 5 * np.sqrt(4 / 40)


def test_threshold_simulator_residuals_given_its_latents(small):
    """Given the γ and θ it returns, W(y − Xβ − θ_regime·r) is the within-transformed N(0, σ²)
    noise: its sum of squares over σ² averages n_eff."""
    from bayes_nqp.bayes.fit import make_model
    from bayes_nqp.calibration import prior_draw, sbc_spec

    m = make_model("threshold", small, "default", sbc_spec("threshold"))
    truth = prior_draw(m.build(), seed=6)
    truth["sigma"] = np.asarray(0.5)
    rng = np.random.default_rng(3)
    chi2 = []
    for _ in range(40):
        y, lat = m.simulate(truth, rng, latents=True)
        regime = (m.q > lat["gamma"][0]).astype(int)
        e = m.fe(y - m.X_z @ truth["beta"] - lat["slope_z"][regime] * m.r_s)
        chi2.append(e @ e / 0.25)
    assert np.mean(chi2) == pytest.approx(m.fe.n_eff, abs=5 * np.sqrt(2 * m.fe.n_eff / 40))


@pytest.mark.parametrize("model", ["mediation", "threshold"])
def test_sbc_of_mediation_and_threshold_passes_and_fails_for_a_wrong_noise_scale(small, model, tmp_path):
    right = bn.calibrate_sbc(model, small, n=12, seed=1, thin_to=50, workers=1, out=tmp_path / "r",
                             figures=False, **SAMPLER)
    wrong = bn.calibrate_sbc(model, small, n=8, seed=1, thin_to=50, workers=1, out=tmp_path / "w",
                             noise_scale=1.5, figures=False, **SAMPLER)
    s = right.summary
    assert s["n"] == 12 and s["failed"] == 0
    head = {"mediation": {"total", "indirect[human_capital]", "direct"},
            "threshold": {"gamma[1]", "slope[1]", "slope_diff[2-1]"}}[model]
    assert head | {"sigma"} <= set(s["estimands"])
    assert not any(k.startswith(("rho_breakdown", "n_thresholds")) for k in s["estimands"])  # no draws
    assert s["passed"], {k: v["pvalue_uniform"] for k, v in s["estimands"].items()}
    assert right.summary["engine"]["compilations"] <= 1
    assert not wrong.summary["passed"]
    assert np.mean(wrong.summary["estimands"]["sigma"]["ranks"]) < 5  # σ above every draw


def test_sbc_rank_shares_ties_uniformly():
    from bayes_nqp.calibration import rank

    rng = np.random.default_rng(0)
    d = np.r_[np.zeros(10), np.ones(30), np.full(10, 2.0)]
    r = np.array([rank(d, 1.0, rng) for _ in range(4000)])
    assert r.min() == 10 and r.max() == 40  # 10 below, and 0..30 of the 30 ties
    assert r.mean() == pytest.approx(25, abs=0.5)
    assert rank(np.arange(5.0), 2.5, rng) == 3


def test_sbc_command_offers_every_registered_model():
    from bayes_nqp import registry
    from bayes_nqp.cli_calibrate import SbcModel

    assert [m.value for m in SbcModel] == list(registry.names())
    assert {"mediation", "threshold"} <= {m.value for m in SbcModel}


def test_sbc_leaves_out_only_estimands_that_are_no_draw_in_every_replicate():
    """rho_breakdown is one number of the whole posterior, NaN when no ρ breaks the effect: never
    ranked; γ pinned to one grid point in some replicates is still ranked in all of them."""
    from bayes_nqp.calibration import ranked_estimands

    res = [{"ranks": {"gamma[1]": 3, "rho_breakdown[m]": 0, "sigma": 7},
            "constant": ["gamma[1]", "rho_breakdown[m]"]},
           {"ranks": {"gamma[1]": 9, "rho_breakdown[m]": 0, "sigma": 2}, "constant": ["rho_breakdown[m]"]}]
    assert ranked_estimands(res) == (["gamma[1]", "sigma"], ["rho_breakdown[m]"])
