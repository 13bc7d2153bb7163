"""Hansen (1999) fixed-effect panel threshold regression, by a search that never refits.

    y_it = μ_i [+ λ_t] + X_it·β + θ_1·r_it·1(q_it ≤ γ_1) + θ_2·r_it·1(γ_1 < q_it ≤ γ_2) + … + e_it

The fact to know first: after one within transformation W, the SSR at every candidate γ is a
rank-one update of the SSR without that split,

    SSR(γ) = SSR_0 − (z'ê)² / (z'Wz − z'Pz),      z(γ) = r·1(q ≤ γ),

with ê the residuals of Wy on the base regressors B̃ = W[X, r, splits already fixed] and P the
projection on B̃. Walking along the sorted q adds one observation to z per step, so z'ê and B̃'z are
cumulative sums, and z'Wz = Σz² − Σ_i S_i²/T [− Σ_t S_t²/N + (Σz)²/(NT) with time effects]
(S_i, S_t: the unit and period sums of z) moves by O(1). A whole search is a few passes over the
data; the denominators do not depend on y, so the bootstrap shares them across replications.

Estimation is Hansen's sequential procedure: γ̂1 from the single-threshold search; γ̂2 given γ̂1;
γ̂1 re-estimated given γ̂2 (the refined estimate is the one reported, as Hansen does); γ̂3 given the
refined pair, not refined further. F_m = (SSR_{m-1} − SSR_m)/σ̂²_m with SSR_m the m-th stage's
minimum and σ̂²_m = SSR_m / (N(T−1)), or / ((N−1)(T−1)) with time effects. Its p-value is Hansen's
(1999, §3) bootstrap: residuals of the (m−1)-threshold model resampled by unit, the whole sequential
search rerun on each replication. Balanced panels only. numpy only; threshold.py is the section.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError

def lr_critical(alpha: float = 0.05) -> float:
    """Hansen's (1999) critical value of LR(γ) for a 1−α CI of γ: c(α) = −2 log(1 − √(1 − α)),
    7.35 at α = 0.05."""
    return -2.0 * math.log(1.0 - math.sqrt(1.0 - alpha))


LR_CRIT_95 = lr_critical(0.05)
MAX_THRESHOLDS = 3
#: cap on the cells of one candidates × replications block (memory, not speed)
_BLOCK_CELLS = 4_000_000


class NoSplitError(ModelError):
    """The trimming leaves no admissible split for one more threshold."""


@dataclass
class ThresholdFit:
    """A fitted m-threshold model. ``regime_se`` and ``coef_se`` are cluster-robust by unit (CRV1).

    ``thresholds`` ascend; ``threshold_ci95[k]`` = {γ on the grid: LR_k(γ) ≤ 7.35} spanned, with
    LR_k(γ) = (SSR(γ | the other thresholds) − its minimum)/σ̂² (in a triple model the first two
    keep their double-model curves); ``f_stats[m−1]``/``pvalues[m−1]`` test m−1 against m
    thresholds; ``lr_curves[k]`` = {"grid", "lr"} over the admissible grid.
    """

    thresholds: list[float]
    threshold_ci95: list[list[float]]
    f_stats: list[float]
    pvalues: list[float]
    regime_coefs: list[float]
    regime_se: list[float]
    coefs: dict[str, float]
    ssr: float
    sigma2: float
    n_obs: int
    n_units: int
    lr_curves: list[dict]
    n_boot: int
    trim: float
    coef_se: dict[str, float] = field(default_factory=dict)
    time_effects: bool = False
    n_candidates: int = 0
    #: per sequential stage m: {m, threshold (the γ added at that stage), ci95, f_stat, pvalue, ssr}
    stages: list[dict] = field(default_factory=list)


# ---- layout: units × periods and the within transformation ------------------------------------

class _Layout:
    """Row index of each (unit, period) of a balanced panel, and the within transformation."""

    def __init__(self, unit, time, time_effects: bool):
        unit = np.asarray(unit)
        n = len(unit)
        ucodes = _codes(unit)
        N = int(ucodes.max()) + 1 if n else 0
        if time is None:
            if time_effects:
                raise ModelError("time effects need the time of each observation (time=None given)")
            # period = order of appearance within the unit
            order = np.argsort(ucodes, kind="stable")
            counts = np.bincount(ucodes, minlength=N)
            starts = np.r_[0, np.cumsum(counts)[:-1]]
            tcodes = np.empty(n, dtype=np.int64)
            tcodes[order] = np.arange(n) - np.repeat(starts, counts)
            T = int(counts.max()) if n else 0
            if not (counts == T).all():
                raise ModelError(f"the threshold regression needs a balanced panel; units have between "
                                 f"{counts.min()} and {T} observations")
        else:
            tcodes = _codes(np.asarray(time))
            T = int(tcodes.max()) + 1 if n else 0
        if n == 0 or N < 2 or T < 2:
            raise ModelError(f"the threshold regression needs at least 2 units and 2 periods "
                             f"(got {N} units, {T} periods)")
        idx = np.full((N, T), -1, dtype=np.int64)
        idx[ucodes, tcodes] = np.arange(n)
        if n != N * T or (idx < 0).any():
            raise ModelError(f"the threshold regression needs a balanced panel; this one has {n} "
                             f"observations, not {N} units × {T} periods = {N * T} "
                             "(or repeats a unit-period)")
        self.n, self.N, self.T, self.idx = n, N, T, idx
        self.ucodes = ucodes
        self.time_effects = time_effects
        # residual degrees of freedom of σ̂² (Hansen: N(T−1); time effects take T−1 more)
        self.dof = N * (T - 1) - ((T - 1) if time_effects else 0)

    def W(self, A: np.ndarray) -> np.ndarray:
        """Within transformation of the columns of A: unit-demeaned, and period-demeaned too
        with time effects (two-way within, exact on a balanced panel)."""
        A = np.asarray(A, dtype=float)
        A2 = A.reshape(self.n, -1)
        G = A2[self.idx]  # (N, T, k)
        G = G - G.mean(axis=1, keepdims=True)
        if self.time_effects:
            G = G - G.mean(axis=0, keepdims=True)
        out = np.empty_like(A2)
        out[self.idx] = G
        return out.reshape(A.shape)

    def unit_sums(self, A: np.ndarray) -> np.ndarray:
        """Per-unit column sums of an (n, k) array → (N, k)."""
        return A[self.idx].sum(axis=1)


def _codes(a: np.ndarray) -> np.ndarray:
    return np.unique(a, return_inverse=True)[1].reshape(-1).astype(np.int64)


# ---- the search --------------------------------------------------------------------------------

class _Base:
    """Orthonormal basis [Q0, Q1] of the base regressors W[X, r] (Q0, shared by every base) and
    W[fixed splits] (Q1, their components orthogonal to Q0), and the search denominators
    z'Wz − z'Pz at every candidate (these do not depend on y)."""

    def __init__(self, Q0: np.ndarray, Q1: np.ndarray, den: np.ndarray, adm: np.ndarray):
        self.Q0, self.Q1, self.den, self.adm = Q0, Q1, den, adm

    def resid(self, Y: np.ndarray) -> np.ndarray:
        E = Y - self.Q0 @ (self.Q0.T @ Y)
        if self.Q1.shape[1]:
            E -= self.Q1 @ (self.Q1.T @ Y)
        return E


class _Design:
    """Everything of the search that does not depend on y: the sorted threshold variable, the
    candidate split points (ends of tie groups inside the trimmed grid) and z'Wz along them."""

    def __init__(self, lay: _Layout, Xw: np.ndarray, r: np.ndarray, q: np.ndarray,
                 trim: float, grid, names: list[str]):
        n = lay.n
        self.lay, self.r, self.q, self.names = lay, r, q, names
        self.Bw = Xw  # within-transformed [X, r]
        self.order = order = np.argsort(q, kind="stable")
        qs = q[order]
        self.rs = rs = r[order]
        # a split "q ≤ γ" can only fall at the last of tied values
        ends = np.flatnonzero(np.r_[qs[1:] != qs[:-1], True])
        lo, hi = np.quantile(q, [trim, 1.0 - trim])
        keep = (qs[ends] >= lo) & (qs[ends] <= hi)
        if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
            if grid < 2:
                raise ModelError(f"grid must be 'exhaustive' or an integer ≥ 2, got {grid}")
            pts = np.quantile(q, np.linspace(trim, 1.0 - trim, int(grid)), method="inverted_cdf")
            keep &= np.isin(qs[ends], pts)
        elif grid != "exhaustive":
            raise ModelError(f"grid must be 'exhaustive' or an integer, got {grid!r}")
        # Hansen's trimming: every regime keeps at least this many observations
        self.nmin = max(1, int(math.floor(trim * n)))
        cnt = ends + 1
        keep &= (cnt >= self.nmin) & (n - cnt >= self.nmin)
        self.cand = ends[keep]
        if self.cand.size == 0:
            raise ModelError(f"no candidate threshold: the threshold variable has too few distinct "
                             f"values inside the {trim:g}–{1 - trim:g} quantiles")
        self.cnt = self.cand + 1  # observations with q ≤ γ at each candidate
        self.gamma = qs[self.cand]
        self._starts = np.r_[0, self.cand[:-1] + 1]
        self._stop = int(self.cand[-1]) + 1
        # z'Wz by O(1) updates: adding observation j of unit i moves S_i² by (S_i + r_j)² − S_i²
        zz = np.cumsum(rs * rs)
        zwz = zz - np.cumsum(_group_sq_increment(lay.ucodes[order], rs)) / lay.T
        if lay.time_effects:
            tcodes = np.empty(n, dtype=np.int64)
            tcodes[lay.idx.ravel()] = np.tile(np.arange(lay.T), lay.N)
            zwz = (zwz - np.cumsum(_group_sq_increment(tcodes[order], rs)) / lay.N
                   + np.cumsum(rs) ** 2 / n)
        self.zz = zz[self.cand]
        self.zwz = zwz[self.cand]
        self._bases: dict[tuple, _Base] = {}
        self._base0 = None

    # cumulative sums of the rows of M (sorted order) read at the candidates
    def _cum(self, M: np.ndarray) -> np.ndarray:
        return np.add.reduceat(M[: self._stop], self._starts, axis=0).cumsum(axis=0)

    def split(self, count: int) -> np.ndarray:
        """z = r·1(q ≤ γ) for the γ leaving ``count`` observations at or below it."""
        ind = np.zeros(self.lay.n)
        ind[self.order[:count]] = 1.0
        return self.r * ind

    def _q0(self):
        """Q0 = orthonormal basis of W[X, r] (one QR per design) and Q0'z cumulated along q."""
        if self._base0 is None:
            M = self.Bw
            Q, R = np.linalg.qr(M)
            d = np.abs(np.diag(R))
            scale = np.maximum(np.linalg.norm(M, axis=0), 1e-300)
            bad = np.flatnonzero(d <= 1e-10 * scale)
            if bad.size:
                raise ModelError(f"regressor '{self.names[bad[0]]}' is collinear with the fixed "
                                 "effects or the other regressors; drop it")
            QZ = self._cum(Q[self.order] * self.rs[:, None])
            self._base0 = (Q, self.zwz - (QZ * QZ).sum(axis=1))
        return self._base0

    def base(self, fixed: tuple[int, ...]) -> _Base:
        """The base with the splits at these counts fixed. A fixed split's column is
        orthogonalised against Q0 and the splits before it (Gram–Schmidt, twice: Giraud et al.
        2005, "twice is enough"), so that a new base costs O(n·k) instead of a QR of the whole
        n × (k + m) design: the bootstrap visits one base per replication."""
        fixed = tuple(sorted(int(c) for c in fixed))
        hit = self._bases.get(fixed)
        if hit is not None:
            return hit
        Q0, den = self._q0()
        cols = []
        for c in fixed:
            s = self.lay.W(self.split(c))
            norm = float(np.linalg.norm(s))
            v = s
            for _ in range(2):
                v = v - Q0 @ (Q0.T @ v)
                for u in cols:
                    v = v - u * (u @ v)
            nv = float(np.linalg.norm(v))
            if nv <= 1e-10 * max(norm, 1e-300):
                raise ModelError(f"regressor 'split at q ≤ {self.q[self.order[c - 1]]:g}' is "
                                 "collinear with the fixed effects or the other regressors; drop it")
            u = v / nv
            cols.append(u)
            uz = self._cum(u[self.order] * self.rs)
            den = den - uz * uz
        Q1 = np.stack(cols, axis=1) if cols else np.zeros((self.lay.n, 0))
        adm = den > 1e-9 * np.maximum(self.zz, 1e-300)
        for c in fixed:
            adm &= np.abs(self.cnt - c) >= self.nmin
        out = _Base(Q0, Q1, den, adm)
        if len(self._bases) > 64:  # the bootstrap can visit many bases; keep the cache small
            self._bases.clear()
        self._bases[fixed] = out
        return out

    def stage(self, Y: np.ndarray, fixed: np.ndarray, curve: bool = False):
        """One search step for each column of Y (within-transformed outcomes) given the splits
        in the matching row of ``fixed`` (counts). Returns (best count, SSR at it, SSR of the
        base, curve) — curve = (γ grid, SSR(γ)) of the admissible candidates when asked (1 column)."""
        B = Y.shape[1]
        best = np.full(B, -1, dtype=np.int64)
        ssr_alt = np.empty(B)
        ssr_base = np.empty(B)
        out_curve = None
        if fixed.shape[1] == 0:
            keys, inv = np.zeros((1, 0), dtype=np.int64), np.zeros(B, dtype=np.int64)
        else:
            keys, inv = np.unique(np.sort(fixed, axis=1), axis=0, return_inverse=True)
            inv = inv.reshape(-1)
        block = max(1, _BLOCK_CELLS // max(1, self.cand.size))
        for g, key in enumerate(keys):
            members = np.flatnonzero(inv == g)
            base = self.base(tuple(key))
            for s in range(0, members.size, block):
                cols = members[s: s + block]
                E = base.resid(Y[:, cols])
                s0 = (E * E).sum(axis=0)
                ssr_base[cols] = s0
                if not base.adm.any():  # nothing left to split: no improvement possible
                    ssr_alt[cols] = s0
                    continue
                num = self._cum(E[self.order] * self.rs[:, None])
                red = num * num / np.where(base.adm, base.den, 1.0)[:, None]
                red[~base.adm] = -np.inf
                j = red.argmax(axis=0)
                best[cols] = self.cnt[j]
                ssr_alt[cols] = s0 - red[j, np.arange(cols.size)]
                if curve:
                    out_curve = (self.gamma[base.adm], s0[0] - red[base.adm, 0])
        return best, ssr_alt, ssr_base, out_curve

    def gamma_of(self, count: int) -> float:
        return float(self.q[self.order[count - 1]])


def _group_sq_increment(codes: np.ndarray, x: np.ndarray) -> np.ndarray:
    """For x in a fixed order, the change of S_g² (S_g the running sum of x over group g) as each
    element is added: (S + x_j)² − S² — the O(1) update of Σ_g S_g², vectorised."""
    o = np.argsort(codes, kind="stable")  # groups, keeping the given order inside each
    xo = x[o]
    c = np.cumsum(xo)
    co = codes[o]
    first = np.r_[True, co[1:] != co[:-1]]
    start_idx = np.maximum.accumulate(np.where(first, np.arange(len(xo)), 0))
    S = c - (c[start_idx] - xo[start_idx])
    inc = S * S - (S - xo) ** 2
    out = np.empty_like(inc)
    out[o] = inc
    return out


# ---- sequential procedure ----------------------------------------------------------------------

def _null_alt(des: _Design, Y: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """SSR of the (m−1)-threshold model and of the m-th stage for each column of Y, by the same
    sequential procedure as the estimate (the 2-threshold model refined when it is a null)."""
    B = Y.shape[1]
    fixed = np.zeros((B, 0), dtype=np.int64)
    dead = np.zeros(B, dtype=bool)  # replications whose trimming left no split at some stage
    prev = None
    for k in range(1, m + 1):
        c, s_alt, s_base, _ = des.stage(Y, fixed)
        if k == 1:
            prev = s_base
        if k == m:
            s_alt = np.where(dead, prev, s_alt)  # no split possible: no improvement, F* = 0
            return prev, s_alt
        if k == 1:
            fixed, prev = c[:, None], s_alt
        elif k == 2:
            c1r, s_ref, _, _ = des.stage(Y, c[:, None])
            c1r = np.where(c1r < 0, c, c1r)
            fixed, prev = np.sort(np.c_[c1r, c], axis=1), s_ref
        dead |= (fixed < 0).any(axis=1)
        if dead.all():
            return prev, prev
        fixed[dead] = fixed[np.flatnonzero(~dead)[0]]  # any live row: keeps the base full rank
    raise AssertionError("unreachable")


def _lr(curve, dof: int):
    grid, ssr = curve
    smin = ssr.min()
    lr = (ssr - smin) / (smin / dof)
    inside = grid[lr <= LR_CRIT_95]
    return {"grid": grid, "lr": lr}, [float(inside.min()), float(inside.max())]


def _coefs(lay: _Layout, Zw: np.ndarray, yw: np.ndarray):
    """OLS on within-transformed data with CRV1 standard errors clustered by unit:
    V = G/(G−1)·(n−1)/(n−K)·(Z'Z)⁻¹ Σ_g Z_g'e_g e_g'Z_g (Z'Z)⁻¹, K = slopes + 1 (+ T−1 period
    effects): unit effects are nested in the clusters and count as one constant, as in Stata's
    xtreg fe and pyfixest's CRV1 default."""
    beta, *_ = np.linalg.lstsq(Zw, yw, rcond=None)
    e = yw - Zw @ beta
    bread = np.linalg.inv(Zw.T @ Zw)
    S = lay.unit_sums(Zw * e[:, None])
    meat = S.T @ S
    G, n = lay.N, lay.n
    K = Zw.shape[1] + 1 + ((lay.T - 1) if lay.time_effects else 0)
    V = bread @ meat @ bread * (G / (G - 1)) * ((n - 1) / (n - K))
    return beta, np.sqrt(np.maximum(np.diag(V), 0.0)), float(e @ e)


def _prepare(y, X, regime, q, unit, time, time_effects, control_names):
    y = _vec(y, "y")
    r = _vec(regime, "regime")
    q = _vec(q, "q")
    if X is None:
        Xa = np.zeros((len(y), 0))
    else:
        if control_names is None and hasattr(X, "columns"):
            control_names = [str(c) for c in X.columns]
        Xa = np.asarray(X, dtype=float)
        if Xa.ndim == 1:
            Xa = Xa[:, None]
    if control_names is None:
        control_names = [f"x{j + 1}" for j in range(Xa.shape[1])]
    control_names = list(control_names)
    if len(control_names) != Xa.shape[1]:
        raise ModelError(f"{len(control_names)} control names for {Xa.shape[1]} control columns")
    n = len(y)
    for name, a in (("regime", r), ("q", q), ("X", Xa)):
        if len(a) != n:
            raise ModelError(f"{name} has {len(a)} rows, y has {n}")
    if not np.isfinite(Xa).all():
        raise ModelError("the controls X contain missing or infinite values")
    lay = _Layout(np.asarray(unit), None if time is None else np.asarray(time), bool(time_effects))
    return y, Xa, r, q, lay, control_names


def _vec(a, name) -> np.ndarray:
    v = np.asarray(a, dtype=float).reshape(-1)
    if not np.isfinite(v).all():
        raise ModelError(f"{name} contains missing or infinite values")
    return v


def _design(y, X, regime, q, unit, time, time_effects, trim, grid, control_names):
    if not 0.0 < trim < 0.5:
        raise ModelError(f"trim must lie in (0, 0.5), got {trim}")
    y, Xa, r, q, lay, names = _prepare(y, X, regime, q, unit, time, time_effects, control_names)
    Bw = lay.W(np.c_[Xa, r])
    des = _Design(lay, Bw, r, q, trim, grid, names + ["regime"])
    return des, lay.W(y), Xa, names


def ssr_path(y, X, regime, q, unit, time=None, *, time_effects=False, fixed=(), trim=0.01,
             grid="exhaustive"):
    """SSR(γ) over the admissible grid given already-fixed thresholds ``fixed`` (values of q):
    the curve the search minimises, as (γ grid, SSR). For checks and plots."""
    des, yw, _, _ = _design(y, X, regime, q, unit, time, time_effects, trim, grid, None)
    q_sorted = des.q[des.order]
    counts = np.array([np.searchsorted(q_sorted, v, side="right") for v in fixed], dtype=np.int64)
    _, _, _, curve = des.stage(yw[:, None], counts.reshape(1, -1), curve=True)
    if curve is None:
        return np.array([]), np.array([])
    return curve


def threshold_regression(y, X, regime, q, unit, time=None, *, n_thresholds=1, time_effects=False,
                         trim=0.01, n_boot=300, seed=0, grid="exhaustive",
                         control_names=None) -> ThresholdFit:
    """Fit Hansen's fixed-effect threshold model with ``n_thresholds`` (1–3) thresholds in ``q``
    on the slope of ``regime``; bootstrap the F tests of m−1 against m thresholds, m = 1..n.

    ``grid`` is "exhaustive" (every distinct q between the trim and 1−trim quantiles) or the
    number of quantile points. Every regime keeps at least ⌊trim·n⌋ observations.
    ``n_boot = 0`` skips the bootstrap (p-values NaN). Raises ModelError on unbalanced panels,
    missing values or collinear regressors.
    """
    if n_thresholds not in range(1, MAX_THRESHOLDS + 1):
        raise ModelError(f"n_thresholds must be 1, 2 or 3, got {n_thresholds}")
    if int(n_boot) < 0:
        raise ModelError(f"n_boot must be ≥ 0, got {n_boot}")
    from threadpoolctl import threadpool_limits

    # one BLAS thread: the search's products are thin (n × k, k ≤ ~10) and memory-bound, and a
    # threaded BLAS spinning for cores that other work holds made it 4× slower (measured at
    # 100,000 rows under a load average of 5: 322 s with 2 OpenBLAS threads, 83 s with one)
    with threadpool_limits(limits=1, user_api="blas"):
        return _threshold_regression(y, X, regime, q, unit, time, n_thresholds, time_effects,
                                     trim, n_boot, seed, grid, control_names)


def _threshold_regression(y, X, regime, q, unit, time, n_thresholds, time_effects, trim, n_boot,
                          seed, grid, control_names) -> ThresholdFit:
    des, yw, Xa, names = _design(y, X, regime, q, unit, time, time_effects, trim, grid,
                                 control_names)
    lay = des.lay
    dof = lay.dof
    Y = yw[:, None]
    empty = np.zeros((1, 0), dtype=np.int64)

    def stage(fixed):
        c, s, s0, cur = des.stage(Y, np.asarray(fixed, dtype=np.int64).reshape(1, -1), curve=True)
        if c[0] < 0:
            raise NoSplitError(f"no admissible split left for threshold {len(fixed) + 1}: the "
                               f"trimming (trim={trim:g}) leaves no regime large enough")
        return int(c[0]), float(s[0]), float(s0[0]), cur

    # models[m] = (counts of its thresholds, SSR, LR curves of its thresholds in the same order);
    # added[m-1] = (count, SSR, curve) of the threshold that stage m adds, for its F test
    c1, s1, s0, cur1 = stage(empty)
    models = {0: ((), s0, []), 1: ((c1,), s1, [cur1])}
    added = [(c1, s1, cur1)]
    if n_thresholds >= 2:
        c2, s2, _, cur2 = stage([c1])
        added.append((c2, s2, cur2))
        c1r, s2r, _, cur1r = stage([c2])
        models[2] = ((c1r, c2), s2r, [cur1r, cur2])
    if n_thresholds >= 3:
        c3, s3, _, cur3 = stage(list(models[2][0]))
        added.append((c3, s3, cur3))
        # γ3 is not refined, so the first two keep their double-model curves
        models[3] = ((c1r, c2, c3), s3, [cur1r, cur2, cur3])
    f_stats = [(models[m][1] - added[m][1]) / (added[m][1] / dof) for m in range(n_thresholds)]

    n_boot = int(n_boot)
    pvalues = []
    for m in range(1, n_thresholds + 1):
        if n_boot == 0:
            pvalues.append(float("nan"))
            continue
        fstar = _bootstrap(des, yw, models[m - 1][0], m, n_boot, seed)
        pvalues.append(float(np.mean(fstar >= f_stats[m - 1])))
    stages = [{"m": m, "threshold": des.gamma_of(c), "ci95": _lr(cur, dof)[1],
               "f_stat": float(f_stats[m - 1]), "pvalue": pvalues[m - 1], "ssr": s}
              for m, (c, s, cur) in enumerate(added, start=1)]

    counts, ssr_m, curves = models[n_thresholds]
    pairs = sorted(zip(counts, curves), key=lambda t: t[0])
    thresholds = [des.gamma_of(c) for c, _ in pairs]
    lr_curves, cis = [], []
    for _, cur in pairs:
        d, ci = _lr(cur, dof)
        lr_curves.append(d)
        cis.append(ci)

    # final regression at the estimates: controls and the regime regressor split by regime
    Zw = lay.W(np.c_[Xa, _regime_split(des, [c for c, _ in pairs])])
    beta, se, ssr = _coefs(lay, Zw, yw)
    k = Xa.shape[1]
    return ThresholdFit(
        thresholds=thresholds,
        threshold_ci95=cis,
        f_stats=[float(f) for f in f_stats],
        pvalues=pvalues,
        regime_coefs=[float(b) for b in beta[k:]],
        regime_se=[float(s) for s in se[k:]],
        coefs={nm: float(b) for nm, b in zip(names, beta[:k])},
        ssr=ssr,
        sigma2=ssr / dof,
        n_obs=lay.n,
        n_units=lay.N,
        lr_curves=lr_curves,
        n_boot=n_boot,
        trim=float(trim),
        coef_se={nm: float(s) for nm, s in zip(names, se[:k])},
        time_effects=lay.time_effects,
        n_candidates=int(des.cand.size),
        stages=stages,
    )


def _regime_split(des: _Design, counts: list[int]) -> np.ndarray:
    """Columns r·1(regime j), j = 0..m, the regimes cut at the sorted split counts."""
    pos = np.empty(des.lay.n, dtype=np.int64)
    pos[des.order] = np.arange(des.lay.n)
    reg = np.zeros(des.lay.n, dtype=np.int64)
    for c in counts:
        reg += pos >= c
    return np.stack([des.r * (reg == j) for j in range(len(counts) + 1)], axis=1)


def _bootstrap(des: _Design, yw: np.ndarray, null_counts: tuple, m: int, n_boot: int,
               seed: int) -> np.ndarray:
    """Bootstrap F*_m under the (m−1)-threshold null (Hansen 1999, §3): y* = fitted null + e*,
    e* the null's within residuals of units drawn with replacement (each unit's whole vector)."""
    lay = des.lay
    base = des.base(tuple(null_counts))
    e = base.resid(yw[:, None])[:, 0]
    fitted = yw - e
    # one stream per test, drawn at once, so that a p-value does not depend on n_thresholds
    draws = np.random.default_rng([int(seed), m]).integers(0, lay.N, size=(n_boot, lay.N))
    E_units = e[lay.idx]  # (N, T)
    block = max(1, _BLOCK_CELLS // max(lay.n, des.cand.size))
    out = np.empty(n_boot)
    for s in range(0, n_boot, block):
        d = draws[s: s + block]
        Est = np.empty((lay.n, d.shape[0]))
        Est[lay.idx] = E_units[d].transpose(1, 2, 0)  # (N, T, b)
        Ystar = fitted[:, None] + lay.W(Est)
        prev, alt = _null_alt(des, Ystar, m)
        out[s: s + block] = (prev - alt) / (alt / lay.dof)
    return out
