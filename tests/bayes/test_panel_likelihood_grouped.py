"""The grouped panel likelihood (issue 10): units that share a covariance pattern replaced by the
square root of their Gram matrix give the same log density and the same gradient as one row per
unit, on a gapped unbalanced panel, with AR(1) and with iid errors, and at σ_τ = 0."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from bayes_nqp.bayes import panel_likelihood as pl


def patterned_panel(seed=5, units=600, periods=8, p=4):
    """Three adoption cohorts and never-treated units (each pattern shared by many units), some
    units with a gap at period 4, a few short units of their own: groups large enough to be
    compressed and singletons kept as they are."""
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(units), periods)
    time = np.tile(np.arange(periods), units)
    cohort = rng.choice([2, 5, 6, 99], size=units)
    keep = ~((np.repeat(rng.random(units) < 0.3, periods)) & (time == 4))
    keep &= ~((unit < 6) & (time < unit))           # units 1..5 start late: patterns of their own
    unit, time = unit[keep], time[keep]
    d = (time >= cohort[unit]).astype(float)
    W = np.column_stack([np.ones(len(unit)), d, rng.normal(size=(len(unit), p - 2))])
    y = W @ rng.normal(size=p) + rng.normal(size=len(unit))
    return pl.UnitLayout.from_rows(unit, time), y, W, d


@pytest.fixture(scope="module")
def stats():
    layout, y, W, d = patterned_panel()
    return pl.PanelStatistics(layout, y, W, d)


def test_units_are_grouped_by_covariance_pattern_and_large_groups_shrink(stats):
    group, first = stats.groups
    units = stats.layout.n_units
    assert 8 <= len(first) < units // 10
    for rho in (0.0, None):
        grouped, plain = stats.arrays(rho, grouped=True), stats.arrays(rho, grouped=False)
        assert len(plain["w"]) == units and np.all(plain["w"] == 1)
        assert len(grouped["w"]) < units / 2           # the form the model samples is smaller
        assert grouped["w"].sum() == units             # every unit's log det G counted once
        assert grouped["n"].sum() == stats.layout.n.sum()
        assert grouped["n_runs"].sum() == stats.layout.n_runs.sum()


def _logp_and_grad(arr, constant_rho: bool, effect: bool):
    theta = pt.vector("theta")
    sigma, s_unit, s_eff, rho = pt.scalars("sigma", "s_unit", "s_eff", "rho")
    inputs = [theta, sigma, s_unit] + ([s_eff] if effect else []) + ([] if constant_rho else [rho])
    logp = pl.logp_from(arr, theta, sigma, s_unit, s_eff if effect else 0.0,
                        0.0 if constant_rho else rho, constant_rho=constant_rho, log=pt.log, dot=pt.dot,
                        stack=pt.stack)
    # the Python linker: no C compilation for a test of a few hundred rows
    mode = pytensor.compile.mode.Mode(linker="py", optimizer="fast_compile")
    return pytensor.function(inputs, [logp, *pt.grad(logp, inputs)], mode=mode)


@pytest.mark.parametrize("errors,effect", [("ar1", True), ("iid", True), ("ar1", False), ("iid", False)])
def test_grouped_and_per_unit_log_density_and_gradient_agree_to_1e_10(stats, errors, effect):
    constant = errors == "iid"
    rng = np.random.default_rng(9)
    P = stats.WW[0].shape[0]
    f_grouped = _logp_and_grad(stats.arrays(0.0 if constant else None, grouped=True), constant, effect)
    f_plain = _logp_and_grad(stats.arrays(0.0 if constant else None, grouped=False), constant, effect)
    for _ in range(3):
        point = [rng.normal(size=P), 0.9, 1.2] + ([0.7] if effect else []) + ([] if constant else [0.45])
        got, want = f_grouped(*point), f_plain(*point)
        assert np.isfinite(want[0]) and abs(want[0]) > 100
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_grouped_log_density_is_exact_at_sigma_tau_zero(stats):
    """σ_τ = 0 as a value of a learned scale (not the common-effect model's constant): the same
    density as the per-unit form and as the dense per-unit densities of the residuals."""
    rng = np.random.default_rng(2)
    theta = rng.normal(size=stats.WW[0].shape[0])
    for rho in (0.0, 0.6):
        got = pl.logp_from(stats.arrays(None), theta, 0.8, 1.1, 0.0, rho, constant_rho=False)
        want = pl.logp_from(stats.arrays(None, grouped=False), theta, 0.8, 1.1, 0.0, rho, constant_rho=False)
        assert got == pytest.approx(want, rel=1e-12)
