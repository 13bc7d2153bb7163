"""The panel likelihood (bayes_nqp.bayes.panel_likelihood) against dense references: the
multivariate normal density of each unit's residuals, and the conjugate posterior of its
deviations, on small unbalanced panels with gaps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bayes_nqp.bayes import panel_likelihood as pl
from bayes_nqp.bayes.panel_likelihood import (PanelStatistics, UnitLayout, deviation_moments,
                                              residual_terms, simulate_ar1, unit_logp)


def gapped_panel(seed=0):
    """Units with 1..7 rows, some with gaps and with treated rows at the end."""
    rng = np.random.default_rng(seed)
    units, times, d = [], [], []
    for u, (T, keep, first) in enumerate([(6, [0, 1, 2, 3, 4, 5], 3), (7, [0, 2, 3, 6], 2),
                                          (1, [0], 9), (5, [1, 2, 3, 4], 99), (7, [0, 1, 3, 4, 5, 6], 0),
                                          (3, [0, 2], 1)]):
        for t in keep:
            units.append(u)
            times.append(t)
            d.append(float(t >= first))
    return np.array(units), np.array(times), np.array(d), rng


def dense_cov(times, d, sigma, sigma_unit, sigma_eff, rho):
    """σ²R + σ_α²11' + σ_τ²dd' with R the AR(1) correlation within runs of consecutive periods."""
    n = len(times)
    run = np.cumsum(np.r_[True, np.diff(times) != 1])
    R = np.where(run[:, None] == run[None, :], rho ** np.abs(times[:, None] - times[None, :]), 0.0)
    return sigma**2 * R + sigma_unit**2 * np.ones((n, n)) + sigma_eff**2 * np.outer(d, d)


@pytest.mark.parametrize("rho,sigma_eff", [(0.0, 0.0), (0.7, 0.0), (0.0, 0.5), (0.6, 0.8), (-0.4, 1.3)])
def test_unit_logp_equals_the_dense_multivariate_normal(rho, sigma_eff):
    units, times, d, rng = gapped_panel()
    layout = UnitLayout.from_rows(units, times)
    sigma, sigma_unit = 0.7, 1.1
    r = rng.normal(size=(1, len(units)))
    q, s1, sd, a11, a1d, add = residual_terms(layout, r, d, np.array([[rho]]))
    got = unit_logp(q, s1, sd, a11, a1d, add, layout.n, layout.n_runs, sigma, sigma_unit, sigma_eff, rho)[0]
    for i, s in enumerate(layout.unit_start):
        rows = slice(s, s + int(layout.n[i]))
        cov = dense_cov(times[rows], d[rows], sigma, sigma_unit, sigma_eff, rho)
        expected = stats.multivariate_normal(np.zeros(len(cov)), cov).logpdf(r[0, rows])
        assert got[i] == pytest.approx(expected, abs=1e-8, rel=1e-10)


def test_the_sufficient_statistics_give_the_same_total_as_the_residuals():
    units, times, d, rng = gapped_panel(1)
    layout = UnitLayout.from_rows(units, times)
    W = np.column_stack([np.ones(len(units)), d, rng.normal(size=len(units))])
    y = rng.normal(size=len(units))
    theta = np.array([0.3, -0.2, 0.5])
    stats_ = PanelStatistics(layout, y, W, d)
    args = (0.8, 0.9, 0.4, 0.55)
    total = stats_.logp(theta, *args)
    q, s1, sd, a11, a1d, add = residual_terms(layout, (y - W @ theta)[None], d, np.array([[args[3]]]))
    per_unit = unit_logp(q, s1, sd, a11, a1d, add, layout.n, layout.n_runs, *args)
    assert total == pytest.approx(per_unit.sum(), rel=1e-10)


def test_deviation_draws_follow_the_dense_conjugate_posterior():
    units, times, d, rng = gapped_panel(2)
    layout = UnitLayout.from_rows(units, times)
    sigma, sigma_unit, sigma_eff, rho = 0.6, 1.2, 0.7, 0.5
    r = rng.normal(size=(1, len(units)))
    q, s1, sd, a11, a1d, add = residual_terms(layout, r, d, np.array([[rho]]))
    mean, (l11, l21, l22) = deviation_moments(s1, sd, a11, a1d, add, sigma, sigma_unit, sigma_eff)
    for i, s in enumerate(layout.unit_start):
        rows = slice(s, s + int(layout.n[i]))
        U = np.column_stack([np.ones(int(layout.n[i])), d[rows]])
        Rinv = np.linalg.inv(dense_cov(times[rows], d[rows], sigma, 0.0, 0.0, rho) / sigma**2)
        prec = np.diag([sigma_unit**-2, sigma_eff**-2]) + U.T @ Rinv @ U / sigma**2
        cov = np.linalg.inv(prec)
        m = cov @ U.T @ Rinv @ r[0, rows] / sigma**2
        np.testing.assert_allclose(mean[0, i], m, atol=1e-10)
        L = np.array([[l11[0, i], 0], [l21[0, i], l22[0, i]]])
        np.testing.assert_allclose(L @ L.T, cov, atol=1e-10)


def test_simulated_ar1_errors_have_the_stationary_variance_and_lag_one_correlation():
    layout = UnitLayout.from_rows(np.repeat(np.arange(400), 10), np.tile(np.arange(10), 400))
    e = simulate_ar1(layout, np.array([[0.7]]), np.array([[2.0]]), np.random.default_rng(0))[0]
    assert e.std() == pytest.approx(2.0, rel=0.03)
    lag = np.corrcoef(e[layout.pair], e[np.flatnonzero(layout.pair) - 1])[0, 1]
    assert lag == pytest.approx(0.7, abs=0.03)


def test_rows_out_of_order_are_refused():
    with pytest.raises(ValueError):
        UnitLayout.from_rows([0, 0, 1], [1, 0, 0])


# ---- scale (issue 10): one pass in chunks, per-unit terms without the rows -----------------------

def _ragged_panel(seed=3, units=40, periods=9, p=5):
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(units), periods)
    time = np.tile(np.arange(periods), units)
    keep = rng.random(len(unit)) > 0.25          # gaps and units of different lengths
    unit, time = unit[keep], time[keep]
    W = rng.normal(size=(len(unit), p))
    y = rng.normal(size=len(unit))
    d = (rng.random(len(unit)) > 0.5).astype(float)
    return pl.UnitLayout.from_rows(unit, time), W, y, d


def test_chunked_moments_equal_the_unchunked_pass_to_1e_10():
    layout, W, y, _ = _ragged_panel()
    for per_unit in (True, False):
        whole = layout.moments(W, W, per_unit=per_unit, max_elements=10**12)
        # a chunk of 2 rows' products: most chunks hold one unit, each split at a unit start
        small = layout.moments(W, W, per_unit=per_unit, max_elements=2 * 25)
        for a, b in zip(whole, small):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    # the summed moments (matrix products) are the per-unit ones (chunked) summed over units
    for a, b in zip(layout.moments(W, W, per_unit=False), layout.moments(W, W, max_elements=2 * 25)):
        np.testing.assert_allclose(a, b.sum(0), rtol=0, atol=1e-10)
    chunks = list(layout.chunks(25, 2 * 25))
    assert len(chunks) > 1
    assert chunks[0][0].start == 0 and chunks[-1][0].stop == len(y)
    assert all(layout.pair[r.start] == False for r, _ in chunks)  # noqa: E712  (unit starts)


def test_chunked_moments_never_form_the_rows_by_p_by_q_array(monkeypatch):
    layout, W, _, _ = _ragged_panel(units=200)
    biggest = []
    real_zeros_like = np.zeros_like

    def spy(a, *args, **kw):
        biggest.append(a.size)
        return real_zeros_like(a, *args, **kw)

    monkeypatch.setattr(pl.np, "zeros_like", spy)
    layout.moments(W, W, max_elements=500)
    assert biggest and max(biggest) <= 500 + 9 * 25  # one chunk (plus at most one whole unit)


def test_unit_terms_from_statistics_equal_the_terms_on_the_rows():
    layout, W, y, d = _ragged_panel()
    stats = pl.PanelStatistics(layout, y, W, d)
    rng = np.random.default_rng(4)
    theta, rho = rng.normal(size=(3, W.shape[1])), np.array([[0.0], [0.4], [-0.3]])
    rows = pl.residual_terms(layout, y - theta @ W.T, d, rho)
    for a, b in zip(stats.unit_terms(theta, rho), rows[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    iid = np.zeros((3, 1))  # every draw iid: the plain sums only
    for a, b in zip(stats.unit_terms(theta, iid), pl.residual_terms(layout, y - theta @ W.T, d, iid)[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_draw_chunk_bounds_draws_times_rows():
    assert pl.draw_chunk(1000) == 250
    assert pl.draw_chunk(1_000_000) * 1_000_000 <= pl.DRAW_ROW_ELEMENTS
    assert pl.draw_chunk(10**9) == 1


def test_residual_q_equals_the_q_of_the_full_residual_terms():
    layout, W, y, d = _ragged_panel()
    rng = np.random.default_rng(5)
    theta, rho = rng.normal(size=(3, W.shape[1])), np.array([[0.0], [0.4], [-0.3]])
    r = y - theta @ W.T
    np.testing.assert_allclose(pl.residual_q(layout, r, rho), pl.residual_terms(layout, r, d, rho)[0],
                               rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(pl.residual_q(layout, r, np.zeros((3, 1))),
                               pl.residual_terms(layout, r, d, np.zeros((3, 1)))[0], rtol=1e-12, atol=1e-10)


def test_simulated_ar1_errors_follow_the_row_by_row_recursion():
    layout, _, _, _ = _ragged_panel(units=30)
    rho, sigma = np.array([[0.5], [-0.7]]), np.array([[1.0], [2.0]])
    z = np.random.default_rng(1).standard_normal((2, len(layout.pair)))
    e = np.empty_like(z)
    for j in range(z.shape[1]):  # the definition: each run starts from its stationary draw
        e[:, j] = rho[:, 0] * e[:, j - 1] + np.sqrt(1 - rho[:, 0] ** 2) * z[:, j] if layout.pair[j] else z[:, j]
    got = pl.simulate_ar1(layout, rho, sigma, np.random.default_rng(1))
    np.testing.assert_allclose(got, sigma * e, rtol=1e-12, atol=1e-12)
