"""Shared fixtures: a small synthetic staggered panel with known effects, and the demo panel."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

import bayes_nqp
from bayes_nqp.data.panel import DATA_DIR, DEMO_PANEL, panel_from_frame

REGIONS = ("east", "central", "west")

# runs fit their models in this process unless a test asks for workers (tests stand in for
# pipeline.fit_model, which a worker process would not see); test_pipeline's run uses 2 workers
os.environ.setdefault("BAYES_NQP_WORKERS", "1")


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


def write_panel_files(folder, *, n_units: int = 24, treated_per_cohort: int = 8, seed: int = 4,
                      effect: float = 0.4):
    """A small panel (cohorts 2013 and 2014) as a user's CSV and column map in ``folder``:
    (panel.csv, map.toml)."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p = build_panel(n_units=n_units, n_periods=6, cohorts={2013: treated_per_cohort, 2014: treated_per_cohort},
                    effect=effect, seed=seed)
    raw = p.df[["unit", "time", "y", "cohort", "x1", "x2"]].rename(
        columns={"unit": "city", "time": "year", "y": "nqp", "cohort": "pilot_year"})
    raw["pilot_year"] = raw["pilot_year"].fillna(0)
    data = folder / "panel.csv"
    raw.to_csv(data, index=False)
    cmap = folder / "map.toml"
    cmap.write_text('unit = "city"\ntime = "year"\noutcome = "nqp"\ncohort = "pilot_year"\n'
                    'controls = ["x1", "x2"]\nsimulated = true\n', encoding="utf-8")
    return data, cmap


@pytest.fixture(scope="session")
def panel_files():
    """:func:`write_panel_files`: ``panel_files(folder, n_units=..., ...)`` -> (csv, map)."""
    return write_panel_files


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


# ---- Monte-Carlo-aware assertions ------------------------------------------------------------------

class MonteCarlo:
    """Assertions on posterior draws whose margins include the draws' own Monte-Carlo error.

    A posterior summary from a finite chain carries Monte-Carlo noise; an assertion that a true
    value lies inside a 95% HDI, or that two posterior means agree, can flip with the seed when
    the value sits within a few MCSEs of the edge. These helpers widen each bound by ``K``
    Monte-Carlo standard errors (ArviZ's ``mcse``: of the mean, or of the 2.5%/97.5% quantiles
    for an interval's end points), so a test fails only when the posterior itself is off, never
    from sampling noise alone (at K = 4 a normal MC error crosses the bound with p < 1e-4).

    Set BAYES_NQP_MARGINS=<file> to append each assertion's margin, in MCSEs, to that file.
    """

    K = 4

    @staticmethod
    def _ds(draws):
        import xarray as xr

        x = np.asarray(draws, dtype=float)
        x = x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], -1)
        return xr.Dataset({"x": (("chain", "draw"), x)})

    def mcse(self, draws, method="mean", **kw) -> float:
        import arviz_stats as azs

        return float(azs.mcse(self._ds(draws), method=method, **kw)["x"])

    @staticmethod
    def _record(label, margin):
        import os

        path = os.environ.get("BAYES_NQP_MARGINS")
        if path:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?').split(' ')[0]}\t{label}\t{margin:.1f}\n")

    def in_hdi(self, draws, value, label="", prob=0.95):
        """``value`` inside the ``prob`` HDI of ``draws``, each end widened by K MCSEs."""
        from arviz_stats.base import array_stats

        x = np.asarray(draws, dtype=float).ravel()
        lo, hi = array_stats.hdi(x, prob=prob)
        m_lo = self.mcse(draws, "quantile", prob=(1 - prob) / 2)
        m_hi = self.mcse(draws, "quantile", prob=(1 + prob) / 2)
        margin = min((value - lo) / m_lo, (hi - value) / m_hi)
        self._record(label or "in_hdi", margin)
        assert lo - self.K * m_lo <= value <= hi + self.K * m_hi, (label, lo, value, hi, m_lo, m_hi)

    def in_quantiles(self, draws, value, q_lo, q_hi, label=""):
        """``value`` between the ``q_lo`` and ``q_hi`` quantiles of ``draws``, widened by K MCSEs."""
        x = np.asarray(draws, dtype=float).ravel()
        lo, hi = np.quantile(x, [q_lo, q_hi])
        m_lo, m_hi = self.mcse(draws, "quantile", prob=q_lo), self.mcse(draws, "quantile", prob=q_hi)
        self._record(label or "in_quantiles", min((value - lo) / m_lo, (hi - value) / m_hi))
        assert lo - self.K * m_lo <= value <= hi + self.K * m_hi, (label, lo, value, hi, m_lo, m_hi)

    def close(self, draws, value, tol, label=""):
        """|mean(draws) − value| < tol + K MCSEs (``value`` a number or other draws)."""
        se = self.mcse(draws)
        if np.ndim(value) > 0 and np.size(value) > 1:
            se = (se ** 2 + self.mcse(value) ** 2) ** 0.5
            value = float(np.mean(value))
        diff = abs(float(np.mean(draws)) - float(value))
        self._record(label or "close", (tol - diff) / se)
        assert diff < tol + self.K * se, (label, diff, tol, se)


@pytest.fixture(scope="session")
def mc():
    """Monte-Carlo-aware assertions (see :class:`MonteCarlo`)."""
    return MonteCarlo()
