"""Shared fixtures of the Bayesian tests: a small synthetic staggered panel with known effects.

Its columns are deliberately not the demo's (``firm``, integer ``period`` 1..T, ``output``,
``first_treated`` with 0 for never treated, controls ``k1``/``k2``, groups ``zone``/``tier``), so a
model that hard-codes a name or assumes calendar years fails here.

Fits are expensive (compiling a model costs seconds), so the fits several tests read are
session-scoped and sampled once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from bayes_nqp.data.panel import panel_from_frame

ZONES = ("inland", "north", "south")
TIERS = ("big", "small")


@dataclass
class Synthetic:
    """A simulated panel and the truth it was drawn from (outcome scale)."""

    panel: object
    truth: dict
    raw: pd.DataFrame


def simulate_panel(*, n_units: int = 72, n_periods: int = 8, cohorts: dict[int, int] | None = None,
                   tau: float = 0.5, zone_effects: dict[str, float] | None = None,
                   tier_effects: dict[str, float] | None = None, noise: float = 0.3,
                   sd_unit: float = 1.0, drop_frac: float = 0.0, seed: int = 0,
                   simulated: bool = True) -> Synthetic:
    """y = α_i + γ_t + τ_i·D_it + 0.4·k1 − 0.3·k2 + ε, ε ~ N(0, noise²), periods 1..n_periods.

    τ_i = ``tau`` + ``zone_effects[zone_i]`` + ``tier_effects[tier_i]`` (missing dicts add 0),
    constant over time, so every two-way estimator targets the same numbers. Treated firms have
    higher levels (α_i + 0.5): a naive comparison is biased, the two-way model is not.
    ``truth``: ``tau`` (mean effect over treated cells), ``tau_by`` {zone|tier: {level: mean
    effect over that level's treated cells}}, ``alpha`` (α_i by firm), ``beta`` (k1, k2).
    """
    rng = np.random.default_rng(seed)
    cohorts = {3: n_units // 6, 5: n_units // 6, 6: n_units // 6} if cohorts is None else cohorts
    first = np.zeros(n_units, dtype=int)
    first[: sum(cohorts.values())] = np.repeat(list(cohorts), list(cohorts.values()))
    first = rng.permutation(first)
    zone = np.array(ZONES)[np.arange(n_units) % len(ZONES)]
    tier = np.array(TIERS)[rng.permutation(np.arange(n_units) % len(TIERS))]
    firm_tau = (tau + np.array([(zone_effects or {}).get(z, 0.0) for z in zone])
                + np.array([(tier_effects or {}).get(t, 0.0) for t in tier]))
    alpha = rng.normal(0.0, sd_unit, n_units) + 0.5 * (first > 0)
    gamma = np.cumsum(rng.normal(0.1, 0.15, n_periods))
    unit = np.repeat(np.arange(n_units), n_periods)
    period = np.tile(np.arange(1, n_periods + 1), n_units)
    D = (first[unit] > 0) & (period >= first[unit])
    k1, k2 = rng.normal(0, 1, len(unit)), rng.normal(0, 1, len(unit))
    y = (alpha[unit] + gamma[period - 1] + firm_tau[unit] * D + 0.4 * k1 - 0.3 * k2
         + rng.normal(0, noise, len(unit)))
    raw = pd.DataFrame({"firm": [f"f{u:03d}" for u in unit], "period": period, "output": y,
                        "first_treated": first[unit], "k1": k1, "k2": k2,
                        "zone": zone[unit], "tier": tier[unit]})
    if drop_frac:
        raw = raw.drop(index=rng.choice(len(raw), int(drop_frac * len(raw)), replace=False))
    cmap = {"unit": "firm", "time": "period", "outcome": "output", "cohort": "first_treated",
            "controls": ["k1", "k2"], "groups": {"zone": "zone", "tier": "tier"},
            "time_effects": True, "simulated": simulated}
    panel = panel_from_frame(raw, cmap)
    kept = raw.assign(D=D[raw.index], tau_i=firm_tau[unit[raw.index]])
    treated = kept[kept["D"]]
    truth = {"tau": float(treated["tau_i"].mean()),
             "tau_by": {g: treated.groupby(g)["tau_i"].mean().to_dict() for g in ("zone", "tier")},
             "alpha": dict(zip([f"f{u:03d}" for u in range(n_units)], alpha)),
             "beta": {"k1": 0.4, "k2": -0.3}}
    return Synthetic(panel, truth, raw)


@pytest.fixture(scope="session")
def synthetic_factory():
    """The simulator itself (see :func:`simulate_panel` for its keywords)."""
    return simulate_panel


@pytest.fixture(scope="session")
def synthetic():
    """The default synthetic panel: constant effect 0.5, 72 firms × 8 periods, 5% rows dropped."""
    return simulate_panel(drop_frac=0.05, seed=11)


@pytest.fixture(scope="session")
def did_compiled(synthetic):
    """The did model on ``synthetic``, built and compiled once: (model, pm_model, compiled)."""
    from bayes_nqp.bayes.fit import compile_model, make_model

    model = make_model("did", synthetic.panel)
    pm_model, compiled = compile_model(model)
    return model, pm_model, compiled


def run_compiled(did_compiled, replication=None, **settings):
    """Sample a compiled model and run everything after sampling: a Fit."""
    import time

    from bayes_nqp.bayes.fit import finish, sample

    model, pm_model, compiled = did_compiled
    s = model.spec.sampler.override(**settings)
    return finish(model, pm_model, sample(compiled, s), s, replication=replication,
                  seconds0=time.perf_counter())


@pytest.fixture(scope="session")
def run_did(did_compiled):
    """Sample the compiled did model with sampler settings (keywords): a Fit, no recompiling."""
    return lambda replication=None, **settings: run_compiled(did_compiled, replication, **settings)


@pytest.fixture(scope="session")
def did_fit(did_compiled, synthetic):
    """The did model fitted to ``synthetic`` with the spec's full settings (4 chains × 1000 draws,
    about a second of sampling), compared with the TWFE."""
    import bayes_nqp as bn

    return run_compiled(did_compiled, replication=bn.replicate("did", synthetic.panel),
                        seed=7)


@pytest.fixture
def thinned_post_processing(monkeypatch):
    """``run(model, idata, thin) -> (full, thinned, ppc)``: the model's per-unit log-likelihoods
    on every draw, then with base's size limits set so low that they thin (LOO_THIN_DRAWS =
    ``thin``) — checked equal to the full ones at the kept draws — and the PPC under that limit
    (issue 10: the post-processing of mediation and threshold at 1M rows)."""
    from bayes_nqp.bayes import base

    def run(model, idata, thin: int):
        full = model.log_likelihood(idata, None)
        monkeypatch.setattr(base, "LOO_MAX_VALUES", 1)
        monkeypatch.setattr(base, "LOO_THIN_DRAWS", thin)
        monkeypatch.setattr(base, "PPC_MAX_VALUES", 1)
        thinned = model.log_likelihood(idata, None)
        name = next(iter(thinned.data_vars))
        np.testing.assert_allclose(thinned[name].to_numpy(),
                                   full[name].sel(draw=thinned["draw"]).to_numpy(), rtol=1e-10)
        return full, thinned, model.posterior_predictive(idata, None, seed=1)

    return run
