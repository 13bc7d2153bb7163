"""The mean of the unit-specific treatment effects of the fully interacted two-way regression,
with its between-unit standard error: the frequentist counterpart of the Bayesian models' τ
under unit-varying effects (``effect = "unit"``).

.. math::

    y_{it} = \\alpha_i + \\lambda_t + \\tau_i D_{it} (+ X_{it}'\\beta) + \\varepsilon_{it},
    \\qquad \\bar\\tau = \\frac1{n_1}\\sum_{i\\ \\text{treated}} \\hat\\tau_i,
    \\qquad \\mathrm{se}(\\bar\\tau) = \\frac{\\mathrm{sd}(\\hat\\tau_i)}{\\sqrt{n_1}},

computed without a ``D × unit`` column per treated unit (a dense N × n₁ design: 84 GB for a
1M-row panel of 90,000 treated units). The interacted regression is the two-way model with one
effect per *cell* c = (unit, D) instead of per unit, :math:`\\tau_i = a_{i,1} - a_{i,0}`: β from
the regression two-way demeaned by cell and period (pyfixest's demeaner, tolerance 1e-12), then,
on :math:`r = y - X\\beta`, the period effects from their normal equations after profiling out
the cells, :math:`(T'M_cT)\\gamma = T'M_cr` (a periods × periods system built from counts), and
:math:`a_c` as the cell means of :math:`r - \\gamma_t`: O(N) time and memory, exact (tested against
dense least squares). A unit's effect is identified when it has treated and untreated periods.
The between-unit SE treats the :math:`\\hat\\tau_i`
as a sample of unit effects; it contains their estimation noise and their true dispersion, which
is what a unit-clustered SE of TWFE also measures, and it holds when the errors within a unit
are serially correlated. The CI uses t(n₁ − 1). This estimand (the unweighted mean effect of the
treated units) differs from TWFE's variance-weighted average where effects vary.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from .._logging import root_logger_kept
from ..results import estimate
from ._fe import complete_rows


def mean_unit_effect(panel, controls: bool = True) -> dict:
    """``{estimate, se, ci95, pvalue, n_units, n_treated_units, unit_effects: {unit: τ̂_i}}``."""
    ctrl = list(panel.controls) if controls else []
    df = complete_rows(panel, ["y", *ctrl])
    D = df["D"].to_numpy(float)
    uidx = df["unit_idx"].to_numpy()
    share = np.bincount(uidx, weights=D, minlength=panel.n_units) / np.maximum(
        np.bincount(uidx, minlength=panel.n_units), 1)
    units = np.flatnonzero((share > 0) & (share < 1))
    if len(units) < 2:
        raise ValueError("fewer than two treated units with untreated periods: no between-unit SE")
    cell = 2 * uidx + (D > 0)                      # the (unit, D) cell of each row
    tidx = df["time_idx"].to_numpy() if panel.time_effects else np.zeros(len(df), dtype=int)
    y = df["y"].to_numpy(float)
    if ctrl:  # β from the regression two-way demeaned by cell and period (Frisch–Waugh–Lovell)
        X = df[ctrl].to_numpy(float)
        Z = _demean_by(np.column_stack([y, X]), cell, tidx, panel.time_effects)
        beta = np.linalg.lstsq(Z[:, 1:], Z[:, 0], rcond=None)[0]
        y = y - X @ beta
    gamma = _period_effects(y, cell, tidx) if panel.time_effects else np.zeros(1)
    n_cells = 2 * panel.n_units
    cnt = np.bincount(cell, minlength=n_cells)
    a = np.bincount(cell, weights=y - gamma[tidx], minlength=n_cells) / np.maximum(cnt, 1)
    tau_i = a[2 * units + 1] - a[2 * units]
    labels = panel.units  # one pass: the property drops duplicates over every row
    n1 = len(tau_i)
    mean = float(tau_i.mean())
    se = float(tau_i.std(ddof=1) / np.sqrt(n1))
    q = stats.t.ppf(0.975, n1 - 1)
    p = float(2 * stats.t.sf(abs(mean / se), n1 - 1)) if se > 0 else None
    return estimate(mean, se, pvalue=p, ci95=[mean - q * se, mean + q * se],
                    n_obs=int(len(df)), n_units=int(panel.n_units), n_treated_units=n1,
                    estimator="mean of the unit-specific effects of the fully interacted TWFE "
                              "regression; between-unit SE sd(tau_i)/sqrt(n1), t(n1-1) CI",
                    unit_effects=dict(zip(map(str, labels[units]), map(float, tau_i))))


def _demean_by(Z: np.ndarray, cell: np.ndarray, tidx: np.ndarray, time_effects: bool) -> np.ndarray:
    """The columns of ``Z`` with cell (and period) effects projected out: pyfixest's demeaner."""
    with root_logger_kept():
        from pyfixest.estimation import demean

    flist = (np.column_stack([cell, tidx]) if time_effects else cell[:, None]).astype(np.uint64)
    out, ok = demean(np.ascontiguousarray(Z), flist, np.ones(len(Z)), tol=1e-12, maxiter=100_000)
    if not ok:
        warnings.warn("fixed-effects demeaning did not converge to 1e-12", RuntimeWarning, stacklevel=3)
    return out


def _period_effects(r: np.ndarray, cell: np.ndarray, tidx: np.ndarray) -> np.ndarray:
    """γ of ``r = a_cell + γ_t + e`` by least squares: the normal equations after profiling out
    the cells, (T'M_cT)γ = T'M_c r, from counts n_ct (cells × periods; O(N)); the system is
    singular by one (γ and a share a constant): its minimum-norm solution."""
    T = int(tidx.max()) + 1
    cells, c = np.unique(cell, return_inverse=True)
    n_ct = np.zeros((len(cells), T))
    np.add.at(n_ct, (c, tidx), 1.0)
    n_c = n_ct.sum(1)
    A = np.diag(n_ct.sum(0)) - (n_ct / n_c[:, None]).T @ n_ct
    mean_c = np.bincount(c, weights=r) / n_c
    b = np.bincount(tidx, weights=r, minlength=T) - n_ct.T @ mean_c
    return np.linalg.lstsq(A, b, rcond=None)[0]
