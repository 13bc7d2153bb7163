r"""The exact per-unit marginal likelihood of a two-way panel model with a random intercept, a
random unit-specific treatment effect and AR(1) errors within a unit, from sufficient statistics.

Unit *i* has :math:`n_i` rows (sorted by time) with residuals
:math:`r_i = y_i - W_i\theta` (everything of the linear predictor except the unit's own
deviations) and treated-row indicator :math:`d_i`. Its deviations are an intercept
:math:`a_i \sim N(0, \sigma_\alpha^2)` and an effect :math:`t_i \sim N(0, \sigma_\tau^2)` on its
treated rows (:math:`\tau_i = \tau + t_i`), the errors are AR(1) with marginal variance
:math:`\sigma^2` and correlation :math:`\rho^{|s-t|}`:

.. math::

    r_i \sim MVN\big(0,\ \Sigma_i\big),\qquad
    \Sigma_i = \sigma^2 R_i(\rho) + U_i \Lambda U_i',\qquad U_i = [\mathbf 1,\ d_i],\quad
    \Lambda = \mathrm{diag}(\sigma_\alpha^2, \sigma_\tau^2).

**AR(1) precision.** For one run of consecutive periods, :math:`R^{-1}` is tridiagonal, so for
any two vectors :math:`x, z` of the unit

.. math::

    x'R^{-1}z = \frac{M_0(x,z) + \rho^2 M_1(x,z) - \rho M_2(x,z)}{1-\rho^2},

with :math:`M_0 = \sum_t x_t z_t` (all rows), :math:`M_1 = \sum_t (k_t - 1) x_t z_t` with
:math:`k_t \in \{0, 1, 2\}` the row's neighbours in its run (+1 for interior rows, 0 at the ends
of a run, −1 for a run of one row, whose precision is 1) and :math:`M_2 = \sum_t (x_t z_{t-1} +
x_{t-1} z_t)` over adjacent pairs; :math:`\log\det R = (n_i - \text{runs}_i)\log(1-\rho^2)`.

**Gaps and unbalanced panels.** A unit may have any subset of the panel's periods. Its rows are
split into *runs* of consecutive periods of the panel's time grid (``time_idx`` differing by
one); the AR(1) chain is applied within each run and runs are independent of each other given
the unit's deviations (a gap breaks the chain: the correlation across a gap of *k* missing
periods, :math:`\rho^{k+1}`, is set to zero; exact for a balanced panel, a documented
approximation with gaps). The unit's intercept and effect are shared by all its runs.

**Woodbury and the determinant lemma.** With :math:`b = \Lambda^{1/2}U'R^{-1}r` and the 2×2
:math:`G = I + \Lambda^{1/2}U'R^{-1}U\Lambda^{1/2}/\sigma^2`,

.. math::

    \log p(r_i) = -\tfrac12\Big[n_i\log 2\pi + n_i\log\sigma^2 + \log\det R_i + \log\det G_i
        + \frac{r'R^{-1}r}{\sigma^2} - \frac{b'G_i^{-1}b}{\sigma^4}\Big].

Written with :math:`\Lambda^{1/2}` (not :math:`\Lambda^{-1}`) it stays exact at
:math:`\sigma_\tau = 0` (the common-effect model) and for never-treated units (:math:`d_i = 0`);
:math:`\rho = 0` is the iid model.

**Sufficient statistics.** :math:`r = y - W\theta` is linear in θ, so each :math:`M_k(r, r)`
summed over units is a quadratic form in θ of three P×P matrices computed once, and the
per-unit :math:`M_k(\mathbf 1, r)`, :math:`M_k(d, r)` are linear in θ (units × P matrices). A
gradient costs :math:`O(P^2 + n_{units} P)` whatever the number of rows, and less with units
grouped by covariance pattern (next paragraph).

**Units that share a covariance pattern.** :math:`G_i` depends on the unit only through
:math:`(M_k(\mathbf 1,\mathbf 1), M_k(\mathbf 1,d), M_k(d,d))_{k=0,1,2}`, :math:`n_i` and
:math:`\text{runs}_i` (in a balanced panel: one value per treatment cohort). Within a group *g* of
units with equal values, the data term :math:`\sum_{i\in g} b_i'G_g^{-1}b_i` needs only
:math:`\sum_{i\in g} v_iv_i'` of the per-unit vectors :math:`v_i = (s_{1,i}, s_{d,i})` — with
:math:`v_i = A_i - B_i\theta = H_i\phi`, :math:`\phi = (1, \theta)`, that is
:math:`\phi'(\sum_i H_i'H_i)\phi`, one Gram matrix per group. Its square root
(:math:`\sum_i H_i'H_i = C_g'C_g`, :math:`C_g = E^{1/2}V'` from its eigendecomposition
:math:`VEV'`) has
:math:`c(P+1)` rows (c = 2 components, 6 with a learned ρ: one per AR(1) moment), which stand
in for the group's :math:`n_g` units whenever :math:`n_g > c(P+1)`: rows of the same form as a
unit's, with the group's :math:`G_g` and a weight :math:`n_g` on :math:`\log\det G_g` (and on
:math:`n`, runs) carried by its first row. Exact (up to rounding), and a gradient then costs
:math:`O(\text{groups}\cdot c^2P^2)` however many units share each pattern; groups smaller than
that keep their units' own rows, so the grouped form is never larger than the per-unit one
(:meth:`PanelStatistics.arrays`, ``grouped``).

**Conditional posterior of the deviations.** Given θ and the scales, with
:math:`(a_i, t_i) = \Lambda^{1/2} v`, :math:`v \mid \cdot \sim N(G^{-1}b/\sigma^2,\ G^{-1})`
(:func:`draw_deviations`), used to store :math:`\alpha_i` and :math:`\tau_i` after sampling.

Every function is written with operators and a ``log``/``sqrt`` argument, so the same code
serves NumPy and PyTensor (``log=pt.log``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

LOG_2PI = float(np.log(2 * np.pi))
#: elements of one working product array (rows × p × q) in :meth:`UnitLayout.moments`: the
#: statistics are accumulated over chunks of whole units, so memory stays bounded (64 MB a
#: product) however many rows the panel has
MOMENT_CHUNK_ELEMENTS = 2**23
#: elements (draws × rows) of one working array after sampling (residuals of a chunk of draws)
DRAW_ROW_ELEMENTS = 2**24


def draw_chunk(n_rows: int, cap: int = 250) -> int:
    """Posterior draws processed at once on ``n_rows`` rows: at most ``cap`` and at most
    :data:`DRAW_ROW_ELEMENTS` draws × rows (at least one)."""
    return int(max(1, min(cap, DRAW_ROW_ELEMENTS // max(1, n_rows))))


@dataclass(frozen=True)
class UnitLayout:
    """Where the units and their AR(1) runs lie in rows sorted by unit, then time.

    ``pair[j]``: row j follows row j−1 in the same unit at the next period (an AR(1) link);
    ``interior[j]``: the row's neighbours in its run minus one (1 interior, 0 end, −1 alone),
    the weight of M1.
    """

    unit_start: np.ndarray  # first row of each unit
    n: np.ndarray            # rows per unit (float)
    n_runs: np.ndarray       # runs of consecutive periods per unit (float)
    pair: np.ndarray         # bool, per row
    interior: np.ndarray     # float in {-1, 0, 1}, per row

    @classmethod
    def from_rows(cls, unit_idx, time_idx) -> "UnitLayout":
        unit_idx, time_idx = np.asarray(unit_idx), np.asarray(time_idx)
        if len(unit_idx) > 1 and (np.any(np.diff(unit_idx) < 0)
                                  or np.any((np.diff(unit_idx) == 0) & (np.diff(time_idx) <= 0))):
            raise ValueError("rows must be sorted by unit, then strictly by time")
        start = np.flatnonzero(np.r_[True, np.diff(unit_idx) != 0])
        n = np.diff(np.r_[start, len(unit_idx)]).astype(float)
        pair = np.r_[False, (np.diff(unit_idx) == 0) & (np.diff(time_idx) == 1)]
        interior = pair.astype(float) + np.r_[pair[1:], False] - 1.0
        n_pairs = np.add.reduceat(pair.astype(float), start) if len(start) else np.zeros(0)
        return cls(start, n, n - n_pairs, pair, interior)

    @property
    def n_units(self) -> int:
        return len(self.unit_start)

    def chunks(self, row_cost: int, max_elements: int | None = None):
        """Row slices of whole units with at most ``max_elements`` / ``row_cost`` rows each (a
        unit longer than that is a chunk of its own), with the slice of units they hold."""
        budget = MOMENT_CHUNK_ELEMENTS if max_elements is None else int(max_elements)
        rows = max(1, budget // max(1, int(row_cost)))
        N, starts = len(self.pair), self.unit_start
        u = 0
        while u < len(starts):
            r0 = int(starts[u])
            if r0 + rows >= N:
                u1 = len(starts)
            else:  # the units that start before r0 + rows … and end by then; at least one
                u1 = max(u + 1, int(np.searchsorted(starts, r0 + rows, side="right")) - 1)
            r1 = int(starts[u1]) if u1 < len(starts) else N
            yield slice(r0, r1), slice(u, u1)
            u = u1

    def moments(self, X: np.ndarray, Z: np.ndarray, per_unit: bool = True,
                max_elements: int | None = None):
        """(M0, M1, M2) of the columns of X (N, p) against those of Z (N, q): per unit
        (units, p, q) or, with ``per_unit=False``, summed over units (p, q).

        Per unit: one pass over the rows in chunks of whole units (:meth:`chunks`): no (N, p, q)
        array is ever formed, only one chunk's (``max_elements``, default
        :data:`MOMENT_CHUNK_ELEMENTS`). Summed: matrix products (copies of X's and Z's rows at
        most)."""
        X = np.asarray(X, float).reshape(len(self.pair), -1)
        Z = np.asarray(Z, float).reshape(len(self.pair), -1)
        p, q = X.shape[1], Z.shape[1]
        if not per_unit:  # sums over all rows: matrix products, no (rows, p, q) array at all
            j = np.flatnonzero(self.pair)
            cross = X[j].T @ Z[j - 1]
            return X.T @ Z, X.T @ (self.interior[:, None] * Z), cross + (Z[j].T @ X[j - 1]).T
        out = ([np.zeros((self.n_units, p, q)) for _ in range(3)] if per_unit
               else [np.zeros((p, q)) for _ in range(3)])
        for rows, units in self.chunks(p * q, max_elements):
            Xc, Zc = X[rows], Z[rows]
            prod0 = Xc[:, :, None] * Zc[:, None, :]
            prod1 = prod0 * self.interior[rows, None, None]
            prod2 = np.zeros_like(prod0)
            # a chunk starts at a unit's first row, so no AR(1) link crosses its start
            j = np.flatnonzero(self.pair[rows])
            prod2[j] = Xc[j, :, None] * Zc[j - 1, None, :] + Xc[j - 1, :, None] * Zc[j, None, :]
            if per_unit:
                idx = self.unit_start[units] - rows.start
                for k, prod in enumerate((prod0, prod1, prod2)):
                    out[k][units] = np.add.reduceat(prod, idx, axis=0)
            else:
                for k, prod in enumerate((prod0, prod1, prod2)):
                    out[k] += prod.sum(0)
        return tuple(out)


def ar1_weights(rho):
    """The coefficients (c0, c1, c2) with x'R⁻¹z = c0·M0 + c1·M1 + c2·M2."""
    c = 1.0 / (1.0 - rho**2)
    return c, rho**2 * c, -rho * c


def combine(moments, rho):
    """c0·M0 + c1·M1 + c2·M2 for ``moments`` = (M0, M1, M2) of any (matching) shape."""
    c0, c1, c2 = ar1_weights(rho)
    return c0 * moments[0] + c1 * moments[1] + c2 * moments[2]


def _g(a11, a1d, add, sigma, sigma_unit, sigma_eff):
    s2 = sigma**2
    g11 = 1.0 + sigma_unit**2 * a11 / s2
    g12 = sigma_unit * sigma_eff * a1d / s2
    g22 = 1.0 + sigma_eff**2 * add / s2
    return g11, g12, g22, g11 * g22 - g12**2


def unit_logp(q, s1, sd, a11, a1d, add, n, n_runs, sigma, sigma_unit, sigma_eff, rho, log=np.log):
    """Per-unit marginal log density.

    ``q`` = r'R⁻¹r, ``s1`` = 1'R⁻¹r, ``sd`` = d'R⁻¹r (per unit, for the residuals r),
    ``a11``/``a1d``/``add`` = 1'R⁻¹1, 1'R⁻¹d, d'R⁻¹d; ``n``/``n_runs`` rows and runs per unit.
    """
    s2 = sigma**2
    g11, g12, g22, det = _g(a11, a1d, add, sigma, sigma_unit, sigma_eff)
    b1, b2 = sigma_unit * s1, sigma_eff * sd
    quad = (g22 * b1**2 - 2.0 * g12 * b1 * b2 + g11 * b2**2) / det
    return -0.5 * (n * LOG_2PI + n * log(s2) + (n - n_runs) * log(1.0 - rho**2) + log(det)
                   + q / s2 - quad / s2**2)


def total_logp(q_total, s1, sd, a11, a1d, add, n, n_runs, sigma, sigma_unit, sigma_eff, rho,
               log=np.log, w=None):
    """The sum of :func:`unit_logp` over units, with the quadratic forms entering only through
    their total ``q_total`` = Σ_i r_i'R⁻¹r_i (which the model gets from P×P statistics).

    The entries may be a group's rows (:meth:`PanelStatistics.arrays` with ``grouped``): then
    ``w`` is the number of units whose log det G each row stands for, and ``n``/``n_runs`` sum
    to the panel's totals."""
    s2 = sigma**2
    g11, g12, g22, det = _g(a11, a1d, add, sigma, sigma_unit, sigma_eff)
    b1, b2 = sigma_unit * s1, sigma_eff * sd
    quad = (g22 * b1**2 - 2.0 * g12 * b1 * b2 + g11 * b2**2) / det
    N, runs = n.sum(), n_runs.sum()
    logdet = log(det).sum() if w is None else (w * log(det)).sum()
    return -0.5 * (N * LOG_2PI + N * log(s2) + (N - runs) * log(1.0 - rho**2) + logdet
                   + q_total / s2 - quad.sum() / s2**2)


def deviation_moments(s1, sd, a11, a1d, add, sigma, sigma_unit, sigma_eff):
    """Conditional posterior of (a_i, t_i): means (…, 2) and the 2×2 lower Cholesky factor
    entries (l11, l21, l22) of its covariance, per unit (NumPy)."""
    s2 = sigma**2
    g11, g12, g22, det = _g(a11, a1d, add, sigma, sigma_unit, sigma_eff)
    b1, b2 = sigma_unit * s1, sigma_eff * sd
    # v ~ N(G⁻¹b/σ², G⁻¹); G⁻¹ = [[g22, −g12], [−g12, g11]] / det
    v1 = (g22 * b1 - g12 * b2) / det / s2
    v2 = (g11 * b2 - g12 * b1) / det / s2
    c11, c12, c22 = g22 / det, -g12 / det, g11 / det
    l11 = np.sqrt(c11)
    l21 = c12 / l11
    l22 = np.sqrt(np.maximum(c22 - l21**2, 0.0))
    # back to (a, t) = Λ^{1/2} v
    mean = np.stack([sigma_unit * v1, sigma_eff * v2], axis=-1)
    return mean, (sigma_unit * l11, sigma_eff * l21, sigma_eff * l22)


def draw_deviations(s1, sd, a11, a1d, add, sigma, sigma_unit, sigma_eff, rng):
    """One draw of (a_i, t_i) per unit and posterior draw from the exact conditional: (…, 2)."""
    mean, (l11, l21, l22) = deviation_moments(s1, sd, a11, a1d, add, sigma, sigma_unit, sigma_eff)
    z1, z2 = rng.standard_normal(np.shape(l11 + 0 * s1)), rng.standard_normal(np.shape(l11 + 0 * s1))
    return np.stack([mean[..., 0] + l11 * z1, mean[..., 1] + l21 * z1 + l22 * z2], axis=-1)


def simulate_ar1(layout: UnitLayout, rho: np.ndarray, sigma: np.ndarray, rng) -> np.ndarray:
    """Stationary AR(1) errors with marginal sd ``sigma`` on the rows of ``layout``, one series
    per posterior draw: ``rho``/``sigma`` of shape (S, 1) → (S, N). Each run starts afresh."""
    rho, sigma = np.asarray(rho, float).reshape(-1, 1), np.asarray(sigma, float).reshape(-1, 1)
    z = rng.standard_normal((len(rho), len(layout.pair)))
    if not np.any(rho):
        return sigma * z
    # one step per position within a run (at most the number of periods), not per row
    pos = np.arange(len(layout.pair)) - np.maximum.accumulate(
        np.where(layout.pair, 0, np.arange(len(layout.pair))))
    e = np.ascontiguousarray(z.T)                  # (N, S): a row per panel row; a run's first
    innov = np.sqrt(1.0 - rho[:, 0] ** 2)          # row keeps its stationary draw
    for k in range(1, int(pos.max(initial=0)) + 1):
        j = np.flatnonzero(pos == k)
        e[j] = rho[:, 0] * e[j - 1] + innov * e[j]
    return sigma * e.T


class PanelStatistics:
    """The sufficient statistics of ``y`` (N,) and design ``W`` (N, P) for the panel likelihood,
    computed once, with the residual functions of θ the model needs (NumPy or PyTensor θ).

    ``d`` is the treated-row indicator (the rows where τ_i acts).
    """

    def __init__(self, layout: UnitLayout, y: np.ndarray, W: np.ndarray, d: np.ndarray):
        self.layout = layout
        self._arrays: dict = {}
        one = np.ones((len(y), 1))
        d = np.asarray(d, float).reshape(-1, 1)
        self.WW = layout.moments(W, W, per_unit=False)                         # 3 × (P, P)
        self.Wy = tuple(m[:, 0] for m in layout.moments(W, y, per_unit=False))  # 3 × (P,)
        self.yy = tuple(float(m[0, 0]) for m in layout.moments(y, y, per_unit=False))
        U = np.hstack([one, d])
        UU = layout.moments(U, U)                                               # 3 × (units, 2, 2)
        self.a11 = tuple(m[:, 0, 0] for m in UU)
        self.a1d = tuple(m[:, 0, 1] for m in UU)
        self.add = tuple(m[:, 1, 1] for m in UU)
        Uy = layout.moments(U, y)                                               # 3 × (units, 2, 1)
        UW = layout.moments(U, W)                                               # 3 × (units, 2, P)
        self.s1_y = tuple(m[:, 0, 0] for m in Uy)
        self.sd_y = tuple(m[:, 1, 0] for m in Uy)
        self.s1_W = tuple(m[:, 0, :] for m in UW)
        self.sd_W = tuple(m[:, 1, :] for m in UW)
        # stacked forms for the graph: k = 0, 1, 2 first; s1 (units) then sd (units) within k
        self.B = tuple(np.vstack([b1, bd]) for b1, bd in zip(self.s1_W, self.sd_W))   # 3 × (2·units, P)
        self.a = tuple(np.r_[a1, ad] for a1, ad in zip(self.s1_y, self.sd_y))         # 3 × (2·units,)
        self.WW_stack, self.Wy_stack = np.stack(self.WW), np.stack(self.Wy)
        self.yy_stack = np.array(self.yy)
        self.B_stack = np.vstack(self.B)                                               # (3·2·units, P)
        self.a_stack = np.concatenate(self.a)

    def unit_terms(self, theta: np.ndarray, rho: np.ndarray):
        """Per-unit (s1, sd, a11, a1d, add) for draws θ (S, P) and ρ (S, 1), from the per-unit
        statistics alone (no pass over the rows): O(S · units · P). What the deviations'
        conditional posterior needs (:func:`draw_deviations`); equals the same terms of
        :func:`residual_terms` on the rows."""
        theta = np.atleast_2d(np.asarray(theta, float))
        rho = np.asarray(rho, float).reshape(-1, 1)
        c = ar1_weights(rho)
        if not np.any(rho):  # iid errors: only the plain sums (c1 = c2 = 0)
            c = c[:1]
        s1 = sum(ck * (self.s1_y[k][None, :] - theta @ self.s1_W[k].T) for k, ck in enumerate(c))
        sd = sum(ck * (self.sd_y[k][None, :] - theta @ self.sd_W[k].T) for k, ck in enumerate(c))
        a11, a1d, add = (sum(ck * m[k][None, :] for k, ck in enumerate(c))
                         for m in (self.a11, self.a1d, self.add))
        return s1, sd, a11, a1d, add

    @cached_property
    def groups(self) -> tuple[np.ndarray, np.ndarray]:
        """``(group, first)``: each unit's covariance pattern (units with equal
        (M_k(1,1), M_k(1,d), M_k(d,d))_k, n and runs, compared exactly) and one unit of each
        pattern."""
        key = np.column_stack([*self.a11, *self.a1d, *self.add, self.layout.n, self.layout.n_runs])
        _, first, group = np.unique(key, axis=0, return_index=True, return_inverse=True)
        return group.ravel(), first

    def arrays(self, rho=None, grouped: bool = True) -> dict[str, np.ndarray]:
        """The statistics the likelihood reads, by name: with a constant ``rho`` (0 for iid
        errors) the three AR(1) moments are combined here, else stacked (k = 0, 1, 2 first).

        ``grouped``: units that share a covariance pattern (:attr:`groups`) are replaced by the
        square root of their Gram matrix where that has fewer rows than the group has units
        (module docstring); ``w`` is the number of units each row's log det G stands for. With
        ``grouped=False`` a row is a unit (``w`` = 1).

        A model may wrap them in ``pm.Data`` so that one compiled graph serves other data (placebo
        refits: the number of rows may differ, the packing of :mod:`.packing` carries shapes)."""
        key = (None if rho is None else float(rho), bool(grouped))
        if key not in self._arrays:
            self._arrays[key] = self._make_arrays(*key)
        return self._arrays[key]

    def _make_arrays(self, rho, grouped: bool) -> dict[str, np.ndarray]:
        units, P = self.layout.n_units, self.s1_W[0].shape[1]
        if rho is not None:
            out = {"WW": combine(self.WW, rho), "Wy": combine(self.Wy, rho), "yy": np.asarray(combine(self.yy, rho))}
            A = combine(self.a, rho).reshape(2, units).T                               # (units, 2)
            B = combine(self.B, rho).reshape(2, units, P).transpose(1, 0, 2)          # (units, 2, P)
            per_unit = {k: combine(getattr(self, k), rho) for k in ("a11", "a1d", "add")}  # (units,)
        else:
            out = {"WW": self.WW_stack, "Wy": self.Wy_stack, "yy": self.yy_stack}
            A = self.a_stack.reshape(3, 2, units).transpose(2, 0, 1)                  # (units, 3, 2)
            B = self.B_stack.reshape(3, 2, units, P).transpose(2, 0, 1, 3)            # (units, 3, 2, P)
            per_unit = {k: np.stack(getattr(self, k)) for k in ("a11", "a1d", "add")}  # (3, units)
        n, n_runs = self.layout.n, self.layout.n_runs
        if grouped:
            A, B, per_unit, n, n_runs, w = self._grouped(A, B, per_unit)
        else:
            w = np.ones(units)
        R = len(w)
        if rho is not None:
            out |= {"B": B.transpose(1, 0, 2).reshape(2 * R, P), "a": A.T.ravel()}
        else:
            out |= {"B": B.transpose(1, 2, 0, 3).reshape(6 * R, P), "a": A.transpose(1, 2, 0).ravel()}
        return out | per_unit | {"n": n, "n_runs": n_runs, "w": w}

    def _grouped(self, A, B, per_unit):
        """The rows of :meth:`arrays`' grouped form: for each covariance pattern, its units' own
        (A_i, B_i), or, when the group has more units than H_i = (A_i, B_i) has entries, the rows
        C with C'C = Σ_i H_i'H_i (eigendecomposition of the Gram matrix, accumulated over
        chunks of units)."""
        group, first = self.groups
        units = len(group)
        k = A[0].size + B[0].size                       # entries of H_i: c(P+1)
        H_shape = (A.shape[1:], B.shape[1:])
        order = np.argsort(group, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(group, minlength=len(first)))]
        rows_A, rows_B, rep, weight, nn, rr = [], [], [], [], [], []
        for g in range(len(first)):
            members = order[bounds[g]:bounds[g + 1]]
            m = len(members)
            if m <= k:
                rows_A.append(A[members])
                rows_B.append(B[members])
                rep.append(members)
                weight.append(np.ones(m))
                nn.append(self.layout.n[members])
                rr.append(self.layout.n_runs[members])
                continue
            gram = np.zeros((k, k))
            step = max(1, MOMENT_CHUNK_ELEMENTS // k)
            for j in range(0, m, step):
                sel = members[j:j + step]
                Hc = np.hstack([A[sel].reshape(len(sel), -1), B[sel].reshape(len(sel), -1)])
                gram += Hc.T @ Hc
            lam, V = np.linalg.eigh(gram)
            C = np.sqrt(np.maximum(lam, 0.0))[:, None] * V.T            # C'C = gram
            rows_A.append(C[:, :A[0].size].reshape(k, *H_shape[0]))
            rows_B.append(C[:, A[0].size:].reshape(k, *H_shape[1]))
            rep.append(np.full(k, first[g]))
            wg = np.zeros(k)
            wg[0] = m
            weight.append(wg)
            nn.append(wg * self.layout.n[first[g]])
            rr.append(wg * self.layout.n_runs[first[g]])
        rep = np.concatenate(rep) if rep else np.zeros(0, int)
        cols = {name: v[..., rep] for name, v in per_unit.items()}
        return (np.concatenate(rows_A) if rows_A else A[:0], np.concatenate(rows_B) if rows_B else B[:0],
                cols, np.concatenate(nn), np.concatenate(rr), np.concatenate(weight))

    def terms(self, theta, rho, dot=np.dot, stack=np.stack):
        """(q_total, s1, sd, a11, a1d, add) for one θ (P,) — PyTensor or NumPy."""
        const = rho if isinstance(rho, (int, float)) else None
        return terms_from(self.arrays(const, grouped=False), theta, rho, constant_rho=const is not None,
                          dot=dot, stack=stack)

    def logp(self, theta, sigma, sigma_unit, sigma_eff, rho, log=np.log, dot=np.dot, stack=np.stack,
             grouped: bool = True):
        """The total log-likelihood (a scalar) for one θ (PyTensor: ``log=pt.log, dot=pt.dot,
        stack=pt.stack``)."""
        const = rho if isinstance(rho, (int, float)) else None
        return logp_from(self.arrays(const, grouped), theta, sigma, sigma_unit, sigma_eff, rho,
                         constant_rho=const is not None, log=log, dot=dot, stack=stack)


def terms_from(arr, theta, rho, *, constant_rho: bool, dot=np.dot, stack=np.stack):
    """(q_total, s1, sd, a11, a1d, add) from :meth:`PanelStatistics.arrays` (NumPy arrays or
    their ``pm.Data``). A graph of few nodes (it compiles in proportion)."""
    if constant_rho:
        q = arr["yy"] - 2.0 * dot(theta, arr["Wy"]) + dot(theta, dot(arr["WW"], theta))
        v = arr["a"] - dot(arr["B"], theta)
        a11, a1d, add = arr["a11"], arr["a1d"], arr["add"]
    else:
        c = stack(ar1_weights(rho))
        quad = arr["yy"] - 2.0 * dot(arr["Wy"], theta) + dot(dot(arr["WW"], theta), theta)
        q = dot(c, quad)
        v = dot(c, (arr["a"] - dot(arr["B"], theta)).reshape((3, -1)))
        a11, a1d, add = dot(c, arr["a11"]), dot(c, arr["a1d"]), dot(c, arr["add"])
    v = v.reshape((2, -1))
    s1, sd = v[0], v[1]
    return q, s1, sd, a11, a1d, add


def logp_from(arr, theta, sigma, sigma_unit, sigma_eff, rho, *, constant_rho: bool, log=np.log,
              dot=np.dot, stack=np.stack):
    """The total log-likelihood from :meth:`PanelStatistics.arrays` (see :func:`terms_from`)."""
    q, s1, sd, a11, a1d, add = terms_from(arr, theta, rho, constant_rho=constant_rho, dot=dot, stack=stack)
    return total_logp(q, s1, sd, a11, a1d, add, arr["n"], arr["n_runs"], sigma, sigma_unit, sigma_eff,
                      rho, log=log, w=arr.get("w"))


def residual_terms(layout: UnitLayout, r: np.ndarray, d: np.ndarray, rho: np.ndarray):
    """Per-unit (q, s1, sd, a11, a1d, add) for residual draws ``r`` (S, N) and ``rho`` (S, 1)
    (NumPy; after sampling: per-unit log-likelihoods and the deviations' conditionals)."""
    rho = np.asarray(rho, float).reshape(-1, 1)
    d = np.asarray(d, float)
    c0, c1, c2 = ar1_weights(rho)
    start = layout.unit_start
    j = np.flatnonzero(layout.pair)

    def m(x, z):
        """M0, M1, M2 per unit of rows x (S, N) against z (S, N) or (N,)."""
        z = np.broadcast_to(z, x.shape)
        p0 = x * z
        p2 = np.zeros_like(p0)
        p2[:, j] = x[:, j] * z[:, j - 1] + x[:, j - 1] * z[:, j]
        red = lambda p: np.add.reduceat(p, start, axis=1)  # noqa: E731
        return red(p0), red(p0 * layout.interior), red(p2)

    def comb(ms):
        return c0 * ms[0] + c1 * ms[1] + c2 * ms[2]

    one = np.ones(r.shape[1])
    ones = np.ones((1, r.shape[1]))
    q, s1, sd = comb(m(r, r)), comb(m(r, one)), comb(m(r, d))
    a11, a1d, add = comb(m(ones, one)), comb(m(ones, d)), comb(m(d[None, :], d))
    return q, s1, sd, a11, a1d, add


def residual_q(layout: UnitLayout, r: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Per-unit q = r_i'R⁻¹r_i for residual draws ``r`` (S, N) and ``rho`` (S, 1): the one term of
    :func:`residual_terms` that needs the rows (the others come from
    :meth:`PanelStatistics.unit_terms`); with ρ = 0 in every draw only Σ r² is formed."""
    rho = np.asarray(rho, float).reshape(-1, 1)
    start = layout.unit_start
    red = lambda p: np.add.reduceat(p, start, axis=1)  # noqa: E731
    r2 = r * r
    if not np.any(rho):
        return red(r2)
    c0, c1, c2 = ar1_weights(rho)
    j = np.flatnonzero(layout.pair)
    p2 = np.zeros_like(r)
    p2[:, j] = 2.0 * r[:, j] * r[:, j - 1]
    return c0 * red(r2) + c1 * red(r2 * layout.interior) + c2 * red(p2)
