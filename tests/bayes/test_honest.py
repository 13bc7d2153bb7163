"""Honest uncertainty of the two-way models (issue 13): recovery and coverage on panels with AR(1)
errors and unit-varying effects, the failure of the iid/common-effect model on the same panels,
and the estimands against their frequentist counterparts (pyfixest)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from bayes_nqp.bayes.fit import compile_model, make_model, sample
from bayes_nqp.bayes.refit import with_data
from bayes_nqp.bayes.spec import load_spec
from bayes_nqp.data.panel import panel_from_frame

TAU, SIGMA_TAU, RHO = 0.5, 0.3, 0.7


def spec(**options):
    s = load_spec("did")
    return replace(s, options={**s.options, **options})


def ar1_panel(seed: int, n_units: int = 40, n_periods: int = 10, rho: float = RHO,
              sigma_tau: float = SIGMA_TAU, noise: float = 0.5):
    """y = α_i + γ_t + τ_i D_it + ε_it, ε AR(1) (ρ, marginal sd ``noise``), τ_i ~ N(TAU, σ_τ²),
    half the units adopting at staggered periods 4..7; balanced."""
    rng = np.random.default_rng(seed)
    first = np.where(np.arange(n_units) < n_units // 2, rng.integers(4, 8, n_units), 0)
    tau_i = TAU + sigma_tau * rng.standard_normal(n_units)
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
    raw = pd.DataFrame({"u": unit, "t": period, "y": y, "g": first[unit]})
    return panel_from_frame(raw, {"unit": "u", "time": "t", "outcome": "y", "cohort": "g"})


class Refitter:
    """One compilation per spec, refitted on other panels of the same shapes (with_data)."""

    def __init__(self, panel, spec_, priors="weak"):
        self.spec, self.priors = spec_, priors
        m = make_model("did", panel, priors, spec_)
        self.pm_model, self.compiled = compile_model(m)

    def tau(self, panel, draws=400, chains=2, seed=1):
        m = make_model("did", panel, self.priors, self.spec)
        c = with_data(self.compiled, {f"stat__{k}": v for k, v in m.likelihood_data().items()})
        idata = sample(c, m.spec.sampler.override(draws=draws, tune=draws, chains=chains, seed=seed))
        post = idata["posterior"]
        out = {"tau": post["tau_z"].to_numpy().ravel() * m.y_sd}
        if "rho" in post:
            out["rho"] = post["rho"].to_numpy().ravel()
        return out


def covers(x, truth, prob=0.95):
    lo, hi = np.quantile(x, [(1 - prob) / 2, (1 + prob) / 2])
    return lo < truth < hi


@pytest.fixture(scope="module")
def refit_honest():
    return Refitter(ar1_panel(0), spec(effect="unit", errors="ar1"))


@pytest.fixture(scope="module")
def refit_iid_common():
    return Refitter(ar1_panel(0), spec(effect="common", errors="iid"))


def test_recovers_the_mean_effect_and_rho_with_ar1_errors_and_unit_effects(refit_honest):
    d = refit_honest.tau(ar1_panel(101), draws=500)
    assert covers(d["tau"], TAU)
    assert covers(d["rho"], RHO)
    assert abs(d["rho"].mean() - RHO) < 0.15


SEEDS_FAST = range(200, 206)


def _z2(draws, truth):
    return ((draws.mean() - truth) / draws.std()) ** 2


def test_unit_ar1_intervals_are_calibrated_and_iid_common_ones_too_narrow(refit_honest, refit_iid_common):
    """A few replicates (fast): the honest model's standardised errors have mean square near 1
    (χ²₆/6 lies below 2.1 with probability 0.95); the iid/common model's are several times too
    large on the same panels (its sd is the iid SE; the dispersion of τ_i and the serial
    correlation are ignored)."""
    z_honest, z_naive = [], []
    for s in SEEDS_FAST:
        panel = ar1_panel(s)
        z_honest.append(_z2(refit_honest.tau(panel)["tau"], TAU))
        z_naive.append(_z2(refit_iid_common.tau(panel)["tau"], TAU))
    assert np.mean(z_honest) < 2.1
    assert np.mean(z_naive) > 2.0 * np.mean(z_honest)


@pytest.mark.slow
def test_coverage_over_50_replicates_is_nominal_for_unit_ar1_and_low_for_iid_common(refit_honest,
                                                                                     refit_iid_common):
    hits_honest, hits_naive = [], []
    for s in range(1000, 1050):
        panel = ar1_panel(s)
        hits_honest.append(covers(refit_honest.tau(panel)["tau"], TAU))
        hits_naive.append(covers(refit_iid_common.tau(panel)["tau"], TAU))
    assert 0.88 <= np.mean(hits_honest) <= 0.99
    assert np.mean(hits_naive) < 0.85


# ---- the estimands against pyfixest ------------------------------------------------------------

@pytest.fixture(scope="module")
def balanced():
    return ar1_panel(7, rho=0.3)


@pytest.fixture(scope="module")
def refit_default():
    """The default spec (unit-varying effects, iid errors, fixed year effects)."""
    return Refitter(ar1_panel(0), load_spec("did"))


def test_common_effect_posterior_mean_is_the_twfe_estimate(balanced, refit_iid_common):
    """Common effect, fixed wide year effects, weak priors, balanced panel, Gaussian: the
    posterior mean of τ is TWFE's within estimate (within 0.1 of its clustered SE)."""
    from bayes_nqp.frequentist.did import twfe

    f = twfe(balanced, controls=False)
    d = refit_iid_common.tau(balanced, draws=1000)
    assert abs(d["tau"].mean() - f.coef()["D"]) < 0.1 * f.se()["D"]


def test_unit_effects_posterior_mean_is_the_mean_of_the_interacted_unit_effects(balanced, refit_default):
    from bayes_nqp.frequentist.unit_effects import mean_unit_effect

    f = mean_unit_effect(balanced, controls=False)
    d = refit_default.tau(balanced, draws=1000)
    assert abs(d["tau"].mean() - f["estimate"]) < 0.25 * f["se"]
    assert 0.75 < d["tau"].std() / f["se"] < 1.4


def test_pooled_year_effects_are_a_labelled_option(balanced):
    model = make_model("did", balanced, "weak", spec(year_effects="pooled"))
    assert "sigma_time" in model.build().named_vars
    assert any("changes" in a or "moves tau" in a for a in model.assumptions())
