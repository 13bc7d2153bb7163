"""Shared fixtures: a small synthetic staggered panel with known effects, and the demo panel."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import bayes_nqp
from bayes_nqp.data.panel import DATA_DIR, DEMO_PANEL, panel_from_frame

REGIONS = ("east", "central", "west")


def build_panel(*, n_units: int = 120, start: int = 2011, n_periods: int = 12,
                cohorts: dict[int, int] | None = None, effect=0.5,
                group_effects: dict[str, float] | None = None, a: float = 0.0, b: float = 0.0,
                pretrend: float = 0.0, noise: float = 0.2, seed: int = 0,
                mediators: bool = True, groups: bool = True, controls: bool = True,
                time_effects: bool = True, simulated: bool = True, drop_frac: float = 0.0):
    """A panel y = α_i + λ_t + τ(e)·D + b·m + 0.3·x1 − 0.2·x2 + ε with known truths.

    ``effect`` is the direct effect τ: a number, or a function of event time e = t − cohort.
    The mediator is m = μ_i + ν_t + a·D + 0.5·x1 + η, so the total effect of D on y is τ + a·b.
    ``group_effects`` (region → τ) overrides ``effect`` per region; ``pretrend`` adds
    pretrend·e to treated units before treatment (a violation of parallel trends);
    ``drop_frac`` deletes that share of rows at random (an unbalanced panel).
    """
    rng = np.random.default_rng(seed)
    cohorts = {2013: 30, 2014: 30, 2015: 30} if cohorts is None else cohorts
    years = np.arange(start, start + n_periods)
    coh = np.zeros(n_units)
    pos = 0
    for g, n in cohorts.items():
        coh[pos:pos + n] = g
        pos += n
    coh = rng.permutation(coh)
    region = np.array(REGIONS)[np.arange(n_units) % 3]
    size = np.where(rng.random(n_units) < 0.5, "large", "small")
    unit = np.repeat(np.arange(n_units), n_periods)
    year = np.tile(years, n_units)
    g = coh[unit]
    treated = (g > 0) & (year >= g)
    e = np.where(g > 0, year - g, np.nan)
    alpha = rng.normal(0, 1, n_units)[unit] + 0.3 * (g > 0)  # treated units differ in level
    lam = (0.05 * (years - start) + rng.normal(0, 0.1, n_periods))[year - start]
    x1 = rng.normal(0, 1, len(unit)) + 0.5 * alpha
    x2 = rng.normal(0, 1, len(unit))
    if group_effects is not None:
        tau = np.array([group_effects[r] for r in region])[unit]
    elif callable(effect):
        tau = np.array([effect(v) if np.isfinite(v) else 0.0 for v in e])
    else:
        tau = np.full(len(unit), float(effect))
    m = (rng.normal(0, 1, n_units)[unit] + 0.02 * (year - start) + a * treated + 0.5 * x1
         + rng.normal(0, noise, len(unit)))
    y = (alpha + lam + tau * treated + b * m + 0.3 * x1 - 0.2 * x2
         + np.where(np.isfinite(e) & (e < 0), pretrend * np.nan_to_num(e), 0.0)
         + rng.normal(0, noise, len(unit)))
    raw = pd.DataFrame({"city": [f"c{u:03d}" for u in unit], "year": year, "nqp": y,
                        "pilot_year": g, "x1": x1, "x2": x2, "hc": m,
                        "region": region[unit], "size": size[unit]})
    if drop_frac:
        raw = raw.sample(frac=1 - drop_frac, random_state=seed).sort_index()
    cmap = {"unit": "city", "time": "year", "outcome": "nqp", "cohort": "pilot_year",
            "time_effects": time_effects, "simulated": simulated}
    if controls:
        cmap["controls"] = ["x1", "x2"]
    if mediators:
        cmap["mediators"] = ["hc"]
    if groups:
        cmap["groups"] = {"region": "region", "size": "size"}
    return panel_from_frame(raw, cmap)


@pytest.fixture(scope="session")
def make_panel():
    """The synthetic panel builder (call it with keyword arguments, see build_panel)."""
    return build_panel


@pytest.fixture(scope="session")
def panel():
    """A synthetic panel with a constant effect 0.5 and a mediator with a = 0.4, b = 0.5."""
    return build_panel(effect=0.5, a=0.4, b=0.5, seed=1)


@pytest.fixture(scope="session")
def demo():
    """The bundled demo panel (skips while data/demo_panel.csv is not generated yet)."""
    if not DEMO_PANEL.exists():
        pytest.skip("data/demo_panel.csv is not there yet")
    return bayes_nqp.demo_panel()


@pytest.fixture(scope="session")
def demo_truth():
    path = DATA_DIR / "demo_truth.json"
    if not path.exists():
        pytest.skip("data/demo_truth.json is not there yet")
    return json.loads(path.read_text(encoding="utf-8"))
