"""Shared two-way fixed-effects algebra of the Bayesian models: the within transformations.

What to know first: two forms of the same projection, for two uses. :class:`FixedEffects` fits
unit (+ time) effects by the sparse normal equations on some rows and applies them to any row
(the staggered model's imputation, the event study's design); :class:`WithinTransform` is the
residual maker W (unit demeaning, then the projection off the unit-demeaned period dummies) on
numpy arrays and pytensor vectors alike (the mediation and threshold likelihoods). Both equal
pyfixest's demeaner (``frequentist._fe.demean``) on balanced and unbalanced panels
(tests/bayes/test_algebra.py). The marginal likelihood of the unit effects (sufficient
statistics) is the DID model's (``did.unit_marginal_logp``).
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from ..errors import ModelError


class FixedEffects:
    """Least-squares unit (+ time) effects of columns, fitted on some rows, applied to any row.

    Solves the normal equations of the sparse dummy design exactly (one time dummy dropped), so
    fitted effects can be evaluated on rows outside the fitting sample (imputation) and
    unbalanced panels need no iteration.
    """

    def __init__(self, unit_idx, time_idx, *, time_effects: bool = True, rows=None):
        unit_idx, time_idx = np.asarray(unit_idx), np.asarray(time_idx)
        rows = np.arange(len(unit_idx)) if rows is None else np.asarray(rows)
        self.time_effects = time_effects
        self.units = np.unique(unit_idx[rows])
        self.times = np.unique(time_idx[rows]) if time_effects else np.zeros(0, int)
        self.F = self._design(unit_idx[rows], time_idx[rows])
        self.FtF = (self.F.T @ self.F).tocsc()

    @property
    def n_effects(self) -> int:
        return self.F.shape[1]

    def _design(self, u, t):
        n = len(u)
        iu = np.searchsorted(self.units, u)
        F = sp.csr_matrix((np.ones(n), (np.arange(n), iu)), shape=(n, len(self.units)))
        if self.time_effects and len(self.times) > 1:
            it = np.searchsorted(self.times, t)
            T = sp.csr_matrix((np.ones(n), (np.arange(n), it)), shape=(n, len(self.times)))
            F = sp.hstack([F, T[:, 1:]]).tocsr()
        return F

    def fit(self, Z: np.ndarray) -> np.ndarray:
        """Effects (n_effects × columns) of the columns of ``Z`` (rows = the fitting rows)."""
        Z = np.asarray(Z, dtype=float).reshape(self.F.shape[0], -1)
        coef = spsolve(self.FtF, self.F.T @ Z)
        return np.asarray(coef).reshape(self.n_effects, -1)

    def fitted(self, coef: np.ndarray, unit_idx, time_idx) -> np.ndarray:
        """The fitted effects at arbitrary rows (whose unit and time are in the fitting sample)."""
        return self._design(np.asarray(unit_idx), np.asarray(time_idx)) @ coef

    def residual(self, Z: np.ndarray) -> np.ndarray:
        """``Z`` minus its fitted effects, on the fitting rows (the within transformation)."""
        Z = np.asarray(Z, dtype=float).reshape(self.F.shape[0], -1)
        return Z - self.F @ self.fit(Z)


class WithinTransform:
    """The fixed-effects residual maker W of a panel: unit demeaning, then (with time effects) the
    projection off the unit-demeaned period dummies (Frisch–Waugh; equal to two-way demeaning on a
    balanced panel and exact on an unbalanced one). Works on numpy arrays and pytensor vectors."""

    def __init__(self, unit_idx, time_idx, time_effects: bool):
        self.unit_idx = np.asarray(unit_idx, dtype=np.int64)
        n = self.unit_idx.size
        self.n, self.n_units = n, int(self.unit_idx.max()) + 1
        counts = np.bincount(self.unit_idx, minlength=self.n_units).astype(float)
        self.inv_count = 1.0 / counts
        self._U = sp.csr_matrix((np.ones(n), (self.unit_idx, np.arange(n))), shape=(self.n_units, n))
        time_idx = np.asarray(time_idx, dtype=np.int64)
        n_periods = int(time_idx.max()) + 1
        self.time_effects = bool(time_effects) and n_periods > 1
        self.H = self.Hproj = None
        diag = 1.0 - self.inv_count[self.unit_idx]
        if self.time_effects:
            dummies = np.zeros((n, n_periods - 1))
            rows = time_idx > 0
            dummies[np.flatnonzero(rows), time_idx[rows] - 1] = 1.0
            self.H = self._demean_units(dummies)
            self.Hproj = np.linalg.solve(self.H.T @ self.H, self.H.T)
            diag = diag - np.einsum("ij,ji->i", self.H, self.Hproj)
        #: residual degrees of freedom (connected panel): n − N − (T − 1)
        self.n_eff = n - self.n_units - (n_periods - 1 if self.time_effects else 0)
        #: diag(W): the variance of a within-transformed iid error is σ²·diag(W)
        self.diag = diag

    def _demean_units(self, A: np.ndarray) -> np.ndarray:
        means = (self._U @ A) * (self.inv_count[:, None] if A.ndim == 2 else self.inv_count)
        return A - means[self.unit_idx]

    def __call__(self, A) -> np.ndarray:
        """W applied to the columns of an (n,) or (n, k) array."""
        A1 = self._demean_units(np.asarray(A, dtype=float))
        if self.time_effects:
            A1 = A1 - self.H @ (self.Hproj @ A1)
        return A1

    def replicate(self, y: np.ndarray, mu: np.ndarray, sigma: np.ndarray, rng) -> np.ndarray:
        """Posterior predictive draws of y (draws, n) given the within-scale means ``mu`` = W·Bθ
        (draws, n): y_rep = Bθ + φ + ε₂ with the fixed effects φ drawn from their flat-prior
        posterior, φ = (I − W)(y − Bθ) + (I − W)ε₁; that is y_rep = mu + (I − W)(y + ε₁) + ε₂.
        On y's own scale, so that the mean and quantile checks are not degenerate (every
        within-transformed series has mean zero)."""
        S = mu.shape[0]
        e1 = rng.standard_normal((self.n, S)) * sigma[None, :]
        e2 = rng.standard_normal((self.n, S)) * sigma[None, :]
        fe_part = (y - self(y))[:, None] + (e1 - self(e1))
        return mu + (fe_part + e2).T

    def tensor(self, v):
        """W applied to a symbolic (n,) vector inside a PyMC model."""
        sums = pt.inc_subtensor(pt.zeros(self.n_units)[self.unit_idx], v)
        v1 = v - (sums * self.inv_count)[self.unit_idx]
        if self.time_effects:
            v1 = v1 - pt.dot(self.H, pt.dot(self.Hproj, v1))
        return v1


def within_regressors(fe: WithinTransform, X: np.ndarray, names: list[str], what: str) -> np.ndarray:
    """W·X, refusing columns the unit/time effects absorb (they would be identified by the prior only)."""
    Xw = fe(X)
    if Xw.size:
        scale = np.maximum(np.abs(X).max(axis=0), 1e-300)
        dead = [nm for j, nm in enumerate(names) if np.abs(Xw[:, j]).max() <= 1e-10 * scale[j]]
        if dead:
            raise ModelError(f"{what}: {', '.join(map(repr, dead))} does not vary within units (and "
                             "periods): the fixed effects absorb it; drop it from the column map")
    return Xw
