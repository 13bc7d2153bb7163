r"""Bayesian panel threshold regression: the slope of a regime variable switches at unknown
thresholds :math:`\gamma` of a threshold variable :math:`q` (the Bayesian side of Hansen 1999).

.. math::

    y_{it} = \alpha_i\ [+\ \lambda_t] + X_{it}\beta
        + \theta_1 r_{it}\,1(q_{it} \le \gamma_1)
        + \theta_2 r_{it}\,1(\gamma_1 < q_{it} \le \gamma_2)
        + \theta_3 r_{it}\,1(q_{it} > \gamma_2) + e_{it},
    \qquad e_{it} \sim N(0, \sigma^2)

with one threshold (:math:`\theta_1, \theta_2`), two (as written), or none (a common slope). The
regime variable :math:`r` is ``panel.regime`` (the treatment D unless the column map names
``regime``; a panel with a regime needs no treatment), :math:`q` is ``panel.threshold``; time
effects as the map says.

**What to know first: γ is marginalised exactly, never sampled — and so are the slopes.** The
likelihood is a step function of γ, so NUTS cannot move γ; and given γ the slopes θ sit at
different places for different γ, so a posterior that samples θ is a mixture with separated modes
(on Hansen's data a minor one at γ ≈ 0.54) between which NUTS does not travel. So for each cell
of a grid of γ the model is linear; the unit (and time) effects are flat fixed effects integrated
out (the within transformation :math:`W`, see :class:`~.mediation.WithinTransform`;
:math:`n_\text{eff} = n - N [- (T-1)]` degrees of freedom), and with the Normal ``slope`` prior the
slopes are integrated out in closed form too. With :math:`B_g = W[r\,1(\text{regime } 1), \dots]`,
:math:`e = W(y - X\beta)`, :math:`\Lambda_g = B_g'B_g/\sigma^2 + I/s_0^2`,
:math:`\eta_g = B_g'e/\sigma^2 + \mu_0/s_0^2`:

.. math::

    \log p(y \mid \beta, \sigma, \gamma_g) = -\tfrac{n_\text{eff}}{2}\log(2\pi\sigma^2)
      - \frac{e'e}{2\sigma^2} - \tfrac{k}{2}\log s_0^2 - \frac{k\mu_0^2}{2 s_0^2}
      - \tfrac12\log|\Lambda_g| + \tfrac12\,\eta_g'\Lambda_g^{-1}\eta_g

(:math:`k` = number of regimes ≤ 3, so :math:`|\Lambda_g|` and :math:`\Lambda_g^{-1}` are written
out), computed from cross products precomputed once, so the model's cost does not grow with
:math:`n`. The potential is :math:`\log\sum_g \exp(\cdot + \log p_g)`; NUTS samples only β (in
whitened coordinates) and σ. After sampling, per posterior draw, γ is drawn from its exact
conditional and then θ from its Gaussian conditional (``postprocess``); the Rao–Blackwellised
posterior mass of γ over the grid (the mean of those conditionals) is kept for the figure and the
posterior mode.

* **Grid** (spec ``grid_size``, ``trim``): the distinct values of :math:`q` between its ``trim`` and
  ``1 − trim`` quantiles that leave at least :math:`\lfloor \text{trim}\cdot n \rfloor`
  observations in every regime (Hansen's trimming, as in the replication); all of them when there
  are no more than ``grid_size`` (or ``grid_size = "all"``), else those at ``grid_size`` quantile
  points.
* **Prior on γ**: uniform over the trimmed range, discretised by the midpoint rule
  (:math:`p_g \propto` the half-distance to the grid neighbours). The posterior *mode* reported is
  that of the density (mass / :math:`p_g`), i.e. the value of highest marginal likelihood.
* **Two thresholds**: marginalised over the ordered pairs :math:`\gamma_{g_1} < \gamma_{g_2}` of a
  coarser grid (spec ``grid_size_pair``; each middle regime keeps the trimming share too), prior
  uniform over ordered pairs, with the cross products :math:`z_{g_1}'Wz_{g_2}` precomputed.
* **Smooth transition** (``transition = "logistic"``): the slope is
  :math:`\theta_1 + \sum_k (\theta_{k+1} - \theta_k)\,\operatorname{logistic}((q - \gamma_k)/s_k)`;
  now the likelihood is smooth in γ, so γ (uniform over the trimmed range, ordered when two),
  :math:`s_k = s^\text{rel}_k \cdot (\text{trimmed range of } q)` and the slopes are sampled by
  NUTS, started at the sharp model's profile-likelihood estimate (the modes caveat above applies),
  and the within transformation of the regressors is done inside the model. The prior of
  :math:`s^\text{rel}` is the prior set's ``transition_scale`` if it has one, else the spec's
  ``transition_scale``.

**Scale.** The outcome and the controls are standardised; a continuous regime variable is divided
by its sd (not centred: centring would change the model), a 0/1 one is kept. Priors (prior set
names): ``slope`` (every :math:`\theta`; Normal for the sharp model), ``beta``, ``sigma``, on that
scale.

**Estimands** (original scales): ``gamma[1]``, ``gamma[2]`` (in units of :math:`q`), ``slope[1]``,
``slope[2]``, ``slope[3]`` (outcome units per unit of the regime variable; regime 1 is the lowest
:math:`q`), ``slope_diff[2-1]``, ``slope_diff[3-2]``; with ``transition = "logistic"`` also
``transition_scale[k]`` (:math:`s_k`, units of :math:`q`). LOO leaves one unit out: the log-likelihood of a unit's
within-transformed block given the draw (γ included) has :math:`\sum_t W_{tt}` degrees of freedom.

**How many thresholds** is not an estimand of one fit but a comparison of three: the number PSIS-LOO
prefers among 0, 1, 2 (:func:`compare_thresholds`, a pure function of the panel, spec, priors and
sampler settings; the fewest thresholds whose elpd lies within two standard errors of the
difference from the best). It is its own stage of ``bayes-nqp run`` (``[model] stages`` of
``models/threshold.toml``: :func:`comparison_stage`, spec ``compare = true``), saved to
``DIR/threshold/compare_thresholds.json``; ``bn.fit`` runs it after the fit and adds it to the
Fit's ``extras`` (``loo_compare``, ``n_thresholds.preferred``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pymc.logprob.transforms import Transform
from pytensor.tensor.special import logsumexp
from scipy.special import expit

from .. import estimands as E
from ..errors import ModelError, SectionSkipped, SpecError
from ..results import jsonable
from . import panel_likelihood as pl
from .base import BayesModel, draws_rng, loo_draws, ppc_draws, register
from .algebra import WithinTransform, within_regressors
from .mediation import complete_panel
from .priors import hyper_name, prior_rv
from .spec import ModelSpec, PriorSet, PriorSpec, SamplerSettings, _prior, load_prior_set, load_spec

log = logging.getLogger(__name__)

#: grid columns built at once when precomputing (memory: n × this)
_CHUNK = 256
#: posterior draws processed at once in postprocess / log-likelihood (memory: draws × grid or × n)
_DRAW_CHUNK = 256
#: LOO preference: the fewest thresholds within this many dse of the best elpd
LOO_SE_RULE = 2.0


_NP, _PT = "numpy", "pytensor"  # the two array backends of ThresholdModel.log_marginal


def _det_adj(L):
    """Determinant and adjugate of a symmetric k×k matrix (k ≤ 3) given as nested lists of arrays
    (or tensors): elementwise, so one call handles every cell at once."""
    k = len(L)
    if k == 1:
        return L[0][0], [[1.0]]
    if k == 2:
        a, b, c = L[0][0], L[0][1], L[1][1]
        return a * c - b * b, [[c, -b], [-b, a]]
    a, b, c, e, f, i = L[0][0], L[0][1], L[0][2], L[1][1], L[1][2], L[2][2]
    A00, A01, A02 = e * i - f * f, c * f - b * i, b * f - c * e
    A11, A12, A22 = a * i - c * c, b * c - a * f, a * e - b * b
    return a * A00 + b * A01 + c * A02, [[A00, A01, A02], [A01, A11, A12], [A02, A12, A22]]


# ---- the grid ---------------------------------------------------------------------------------

def threshold_grid(q: np.ndarray, trim: float, size) -> np.ndarray:
    """Candidate γ values: distinct q within the trim quantiles leaving ⌊trim·n⌋ obs per regime;
    all of them, or those at ``size`` quantile points when there are more."""
    if not 0.0 < trim < 0.5:
        raise SpecError(f"threshold: trim must lie in (0, 0.5), got {trim}")
    n = q.size
    qs = np.sort(q)
    lo, hi = np.quantile(q, [trim, 1.0 - trim])
    vals = np.unique(q)
    vals = vals[(vals >= lo) & (vals <= hi)]
    cnt = np.searchsorted(qs, vals, side="right")
    nmin = max(1, int(math.floor(trim * n)))
    vals = vals[(cnt >= nmin) & (n - cnt >= nmin)]
    if vals.size == 0:
        raise ModelError(f"no candidate threshold: the threshold variable has too few distinct values "
                         f"inside its {trim:g}–{1 - trim:g} quantiles")
    if size == "all" or vals.size <= int(size):
        return vals
    if not isinstance(size, (int, np.integer)) or size < 2:
        raise SpecError(f"threshold: grid_size must be 'all' or an integer ≥ 2, got {size!r}")
    pts = np.quantile(q, np.linspace(trim, 1.0 - trim, int(size)), method="inverted_cdf")
    return np.intersect1d(vals, pts)


def uniform_weights(grid: np.ndarray) -> np.ndarray:
    """Prior mass of each grid point under a uniform prior on [grid[0], grid[-1]] (midpoint rule)."""
    if grid.size == 1:
        return np.ones(1)
    edges = np.r_[grid[0], (grid[1:] + grid[:-1]) / 2, grid[-1]]
    w = np.diff(edges)
    return w / w.sum()


class Affine(Transform):
    """x = loc + L·u for a vector x: the sampler moves u (see ThresholdModel._whitened_prior)."""

    name = "affine"
    ndim_supp = 1

    def __init__(self, loc: np.ndarray, chol: np.ndarray):
        self.loc, self.chol = np.asarray(loc, dtype=float), np.asarray(chol, dtype=float)
        self.chol_inv = np.linalg.inv(self.chol)
        self.log_det = float(np.log(np.diag(self.chol)).sum())

    def backward(self, value, *inputs):
        return self.loc + pt.dot(value, self.chol.T)

    def forward(self, value, *inputs):
        return pt.dot(value - self.loc, self.chol_inv.T)

    def log_jac_det(self, value, *inputs):
        return pt.zeros(value.shape[:-1]) + self.log_det


@register("threshold")
class ThresholdModel(BayesModel):
    """Panel threshold model with γ marginalised over a grid; see the module docstring."""

    needs = ("outcome", "threshold", "regime")
    replication_section = "threshold"
    key_estimands = ("slope[1]", "slope[2]", "slope_diff[2-1]", "gamma[1]")

    def __init__(self, panel, spec, priors):
        panel.require(*self.needs, what="the Bayesian threshold model")
        cols = list(dict.fromkeys(["y", panel.regime, panel.threshold, *panel.controls]))
        panel = complete_panel(panel, cols, "the Bayesian threshold model")
        super().__init__(panel, spec, priors)
        self.n_thr = int(spec.option("n_thresholds", 1))
        self.transition = spec.option("transition", "sharp")
        self.trim = float(spec.option("trim", 0.01))
        if self.n_thr not in (0, 1, 2):
            raise SpecError(f"threshold: n_thresholds must be 0, 1 or 2, got {self.n_thr}")
        if self.transition not in ("sharp", "logistic"):
            raise SpecError(f"threshold: transition must be 'sharp' or 'logistic', got {self.transition!r}")
        self.replication_options = {"n_thresholds": max(1, self.n_thr), "trim": self.trim}
        if self.n_thr == 0:
            self.replication_section = None
        df = self.df
        r = df[panel.regime].to_numpy(float)
        binary = np.isin(np.unique(r), (0.0, 1.0)).all()
        self.r_sd = 1.0 if binary else float(r.std())
        if self.r_sd == 0:
            raise ModelError(f"the regime variable '{panel.regime}' is constant")
        self.r_s = r / self.r_sd
        self.q = df[panel.threshold].to_numpy(float)
        self.fe = WithinTransform(self.unit_idx, self.time_idx, panel.time_effects)
        self.yw = self.fe(self.y_z)
        self.Xw = within_regressors(self.fe, self.X_z, self.panel.controls, "threshold")
        self.rw = within_regressors(self.fe, self.r_s[:, None], [panel.regime], "threshold")[:, 0]
        self.A = np.column_stack([self.yw, self.Xw, self.rw])
        self.C = self.A.T @ self.A
        self.q_lo, self.q_hi = (float(v) for v in np.quantile(self.q, [self.trim, 1.0 - self.trim]))
        self._U = self.fe._U  # unit membership (N × n), for per-unit sums
        self.unit_dof = np.asarray(self._U @ self.fe.diag).ravel()
        self._gamma_post: dict = {}
        # the cells of γ (the logistic model uses them for its starting point only)
        self._prepare_cells()

    # ---- grid precomputation --------------------------------------------------------------
    def _split_columns(self, gammas: np.ndarray) -> np.ndarray:
        """W·z_g, z_g = r·1(q ≤ γ_g), for the given γ values: (n, len(gammas))."""
        return self.fe(self.r_s[:, None] * (self.q[:, None] <= gammas[None, :]))

    def _grid_stats(self, grid: np.ndarray, cross: bool = False):
        """F_g = z_g'W[y, X, r], d_g = z_g'Wz_g (and all z_g'Wz_h when ``cross``)."""
        F = np.empty((grid.size, self.A.shape[1]))
        d = np.empty(grid.size)
        Zs = []
        # columns at once: at most _CHUNK and rows × columns bounded (256 columns of 1M rows held
        # 8.8 GB with their temporaries)
        step = pl.draw_chunk(self.q.size, _CHUNK)
        for s in range(0, grid.size, step):
            Zw = self._split_columns(grid[s: s + step])
            F[s: s + Zw.shape[1]] = Zw.T @ self.A
            d[s: s + Zw.shape[1]] = (Zw * Zw).sum(axis=0)
            if cross:
                Zs.append(Zw)
        Q = None
        if cross:
            Z = np.hstack(Zs)
            Q = Z.T @ Z
        return F, d, Q

    def _prepare_cells(self) -> None:
        """The grid and, per cell (one γ, one ordered pair, or the single cell of no threshold),
        the cross products of the regime-split regressors B = W[r·1(regime 1) .. r·1(regime m+1)]:
        M = B'B (cells, k, k), Py = B'Wy (cells, k), Rx = B'WX (cells, k, K), and log p(cell)."""
        opt = self.spec.option
        n, K, m = self.q.size, self.Xw.shape[1], self.n_thr
        zz = np.maximum((self.r_s ** 2).sum(), 1e-300)
        self.grid = np.zeros(0)
        if m == 0:
            E = self.C[None, 1:, 1:]          # Gram of the basis [X, r], and its products with y
            Ey = self.C[None, 1:, 0]
            self.logw = np.zeros(1)
            self.cell_gamma = np.zeros((1, 0))
        elif m == 1:
            grid = threshold_grid(self.q, self.trim, opt("grid_size", 400))
            F, d, _ = self._grid_stats(grid)
            ok = d > 1e-9 * zz  # a split the fixed effects absorb identifies nothing
            if not ok.any():
                raise ModelError("every candidate split of the regime variable is absorbed by the fixed "
                                 "effects; the threshold variable must vary within units")
            grid, F, d = grid[ok], F[ok], d[ok]
            E, Ey = self._basis_gram([F], [d], None)
            self.grid, self.grid_weights = grid, uniform_weights(grid)
            self.logw = np.log(self.grid_weights)
            self.cell_gamma = grid[:, None]
        else:
            grid = threshold_grid(self.q, self.trim, opt("grid_size_pair", 60))
            F, d, Q = self._grid_stats(grid, cross=True)
            nmin = max(1, int(math.floor(self.trim * n)))
            cnt = np.searchsorted(np.sort(self.q), grid, side="right")
            i, j = np.triu_indices(grid.size, k=1)
            det = d[i] * d[j] - Q[i, j] ** 2
            ok = (cnt[j] - cnt[i] >= nmin) & (det > 1e-9 * zz ** 2)
            if not ok.any():
                raise ModelError(f"no admissible pair of thresholds: the trimming (trim={self.trim:g}) "
                                 "leaves no middle regime large enough")
            i, j = i[ok], j[ok]
            E, Ey = self._basis_gram([F[i], F[j]], [d[i], d[j]], Q[i, j])
            w = uniform_weights(grid)
            lw = np.log(w[i]) + np.log(w[j])
            self.grid, self.grid_weights, self.pair_i, self.pair_j = grid, w, i, j
            self.logw = lw - np.logaddexp.reduce(lw)
            self.cell_gamma = np.column_stack([grid[i], grid[j]])
        # regime-split regressors as columns of T over the basis [X, r, z_1 .. z_m]:
        # regime 1 = z_1, regime j = z_j − z_{j−1}, regime m+1 = r − z_m (no threshold: r)
        T = np.zeros((K + 1 + m, m + 1))
        for j in range(m):
            T[K + 1 + j, j] = 1.0
            if j:
                T[K + j, j] = -1.0
        T[K, m] = 1.0
        if m:
            T[K + m, m] = -1.0
        self.M = np.einsum("ai,gab,bj->gij", T, E, T)
        self.Py = np.einsum("ai,ga->gi", T, Ey)
        self.Rx = np.einsum("ai,gab->gib", T, E[:, :, :K])

    def _basis_gram(self, Fs, ds, Q):
        """Gram of [X, r, z_1 .. z_m] per cell (and its products with y) from C, F_g, d_g, z_i'Wz_j."""
        K, m, G = self.Xw.shape[1], len(Fs), Fs[0].shape[0]
        E = np.zeros((G, K + 1 + m, K + 1 + m))
        Ey = np.zeros((G, K + 1 + m))
        E[:, : K + 1, : K + 1] = self.C[1:, 1:]
        Ey[:, : K + 1] = self.C[1:, 0]
        for t, (F, d) in enumerate(zip(Fs, ds)):
            col = K + 1 + t
            E[:, : K + 1, col] = E[:, col, : K + 1] = F[:, 1:]
            E[:, col, col] = d
            Ey[:, col] = F[:, 0]
        if m == 2:
            E[:, K + 1, K + 2] = E[:, K + 2, K + 1] = Q
        return E, Ey

    # ---- model ----------------------------------------------------------------------------
    def coords(self) -> dict:
        c = super().coords()
        c["regime"] = [str(j) for j in range(1, self.n_thr + 2)]
        if self.n_thr:
            c["threshold"] = [str(k) for k in range(1, self.n_thr + 1)]
        return c

    def build(self) -> pm.Model:
        init = self.profile()
        K = self.Xw.shape[1]
        with pm.Model(coords=self.coords()) as m:
            beta = self._whitened_prior("beta", "beta", init, slice(0, K), dims="control") if K else None
            sigma = self.prior("sigma", "sigma", initval=init["sigma"])
            if self.n_thr and self.transition == "logistic":
                slope = self._whitened_prior("slope_z", "slope", init, slice(K, None), dims="regime")
                self._logistic_likelihood(slope, beta, sigma, init["gamma"])
            else:
                mu0, s0 = self._slope_prior_data()
                lm = self.log_marginal(beta, sigma, mu0, s0, xp=_PT)
                pm.Potential("loglik", logsumexp(lm + self.logw) if self.n_thr else lm)
        return m

    def _slope_prior_data(self):
        """The ``slope`` prior's μ0, s0 as pm.Data (registered as the prior of ``slope_z``, so
        prior-set refits swap them); it must be Normal: the slopes are integrated out exactly."""
        spec = self.priors["slope"]
        if spec.dist != "Normal":
            raise SpecError(f"the sharp threshold model integrates the slopes out analytically and needs "
                            f"a Normal 'slope' prior; prior set '{self.priors.name}' has {spec.describe()}")
        self.used_priors["slope_z"] = "slope"
        return (pm.Data(hyper_name("slope_z", "mu"), np.asarray(spec.params["mu"])),
                pm.Data(hyper_name("slope_z", "sigma"), np.asarray(spec.params["sigma"])))

    def _whitened_prior(self, rv, prior_name, init, block: slice, dims: str):
        """The coefficients ``block`` of (β, θ), with their prior, sampled in whitened coordinates
        u (x = x̂ + L·u, x̂ and LL' the estimate and covariance at the profile-likelihood γ̂), and
        started at x̂. The γ-marginal posterior is a mixture over the grid and can have minor modes
        at other γ (Hansen's data: γ ≈ 0.54); started inside the dominant one, with the ±1 jitter
        in u one posterior sd, every chain samples the same mode. Whitening also undoes
        near-collinear controls (Hansen's q, q², q³), along which a diagonal mass matrix mixes
        badly."""
        loc = init["coef"][block]
        cov = init["cov"][block, block]
        chol = np.linalg.cholesky(cov + 1e-12 * np.trace(cov) * np.eye(len(loc)))
        return self.prior(rv, prior_name, dims=dims, transform=Affine(loc, chol), initval=loc)

    def profile(self) -> dict:
        """The profile-likelihood fit over the cells: γ̂ = the cell of least SSR, the OLS
        coefficients (β, θ_1..θ_m+1) there, their covariance and σ̂."""
        K, k = self.Xw.shape[1], self.n_thr + 1
        Gc = self.M.shape[0]
        BB = np.zeros((Gc, K + k, K + k))
        BB[:, :K, :K] = self.C[1:K + 1, 1:K + 1]
        BB[:, K:, :K] = self.Rx
        BB[:, :K, K:] = self.Rx.transpose(0, 2, 1)
        BB[:, K:, K:] = self.M
        By = np.concatenate([np.broadcast_to(self.C[1:K + 1, 0], (Gc, K)), self.Py], axis=1)
        coef = np.linalg.solve(BB, By[..., None])[..., 0]
        ssr = self.C[0, 0] - np.einsum("gi,gi->g", coef, By)
        best = int(np.argmin(ssr))
        sigma2 = max(float(ssr[best]) / self.fe.n_eff, 1e-12)
        return {"coef": coef[best], "cov": sigma2 * np.linalg.inv(BB[best]), "sigma": math.sqrt(sigma2),
                "gamma": self.cell_gamma[best]}

    def log_marginal(self, beta, sigma, mu0, s0, xp=None):
        """log p(y | β, σ, cell) with the slopes θ ~ N(μ0, s0²) integrated out, per cell: symbolic
        (``xp=_PT``, β (K,), σ scalar) or numpy (β (S, K), σ (S,): result (S, cells)). Also returns,
        for numpy, the conditional N(mean, cov) of θ per draw and cell (for postprocess).

        With e = W(y − Xβ), h = B'e = Py − Rx·β, Λ = M/σ² + I/s0², η = h/σ² + μ0/s0²:
        log p = −n_eff/2·log(2πσ²) − e'e/(2σ²) − k/2·log s0² − k μ0²/(2s0²) − ½ log|Λ| + ½ η'Λ⁻¹η.
        k ≤ 3, so |Λ| and Λ⁻¹ are written out (adjugate): elementwise over the cells.
        """
        xp = xp or _NP
        k = self.n_thr + 1
        K = self.Xw.shape[1]
        symbolic = xp is _PT
        C = self.C
        if symbolic:
            XX, Xy = C[1:K + 1, 1:K + 1], C[1:K + 1, 0]
            ee = C[0, 0] - (2 * pt.dot(Xy, beta) - pt.dot(beta, pt.dot(XX, beta)) if K else 0.0)
            # a single cell (no threshold) as scalars: pytensor's numba backend fails to compile
            # some fused length-1 graphs
            cells = 0 if self.M.shape[0] == 1 else slice(None)
            h = [self.Py[cells, a] - (pt.dot(self.Rx[cells, a, :], beta) if K else 0.0) for a in range(k)]
            s2 = sigma ** 2
            M = [[self.M[cells, a, b] for b in range(k)] for a in range(k)]
        else:
            XX, Xy = C[1:K + 1, 1:K + 1], C[1:K + 1, 0]
            ee = (C[0, 0] - 2 * beta @ Xy + np.einsum("si,ij,sj->s", beta, XX, beta))[:, None]
            h = [self.Py[None, :, a] - beta @ self.Rx[:, a, :].T for a in range(k)]
            s2 = (sigma ** 2)[:, None]
            M = [[self.M[None, :, a, b] for b in range(k)] for a in range(k)]
        p0 = 1.0 / s0 ** 2
        Lam = [[M[a][b] / s2 + (p0 if a == b else 0.0) for b in range(k)] for a in range(k)]
        eta = [h[a] / s2 + mu0 * p0 for a in range(k)]
        det, adj = _det_adj(Lam)
        quad = sum(eta[a] * adj[a][b] * eta[b] for a in range(k) for b in range(k)) / det
        log = pt.log if symbolic else np.log
        lm = (-0.5 * self.fe.n_eff * log(2 * np.pi * s2) - ee / (2 * s2) - 0.5 * k * log(s0 ** 2)
              - 0.5 * k * mu0 ** 2 * p0 - 0.5 * log(det) + 0.5 * quad)
        if symbolic:
            return lm
        mean = [sum(adj[a][b] * eta[b] for b in range(k)) / det for a in range(k)]
        cov = [[adj[a][b] / det for b in range(k)] for a in range(k)]
        return lm, mean, cov

    def _transition_scale_prior(self) -> PriorSpec:
        if "transition_scale" in self.priors.priors:
            return self.priors["transition_scale"]
        raw = self.spec.option("transition_scale", {"dist": "Gamma", "alpha": 2.0, "beta": 20.0})
        return _prior("transition_scale", raw, self.spec.source or "models/threshold.toml")

    def _logistic_likelihood(self, slope, beta, sigma, gamma0) -> None:
        k = self.n_thr
        width = self.q_hi - self.q_lo
        # start at the sharp model's γ̂ (kept inside the open prior support)
        init = np.clip(gamma0, self.q_lo + 1e-6 * width, self.q_hi - 1e-6 * width)
        kw = {"transform": pm.distributions.transforms.ordered} if k > 1 else {}
        gamma = pm.Uniform("gamma", lower=self.q_lo, upper=self.q_hi, dims="threshold", initval=init, **kw)
        spec = self._transition_scale_prior()
        if "transition_scale" in self.priors.priors:
            s_rel = self.prior("s_rel", "transition_scale", dims="threshold")
        else:
            s_rel = prior_rv("transition_scale", spec, rv_name="s_rel", dims="threshold")
        s = s_rel * width
        mu = slope[0] * self.rw
        if beta is not None:
            mu = mu + pt.dot(self.Xw, beta)
        for j in range(k):
            share = pm.math.sigmoid((self.q - gamma[j]) / s[j])
            mu = mu + (slope[j + 1] - slope[j]) * self.fe.tensor(self.r_s * share)
        pm.Potential("fixed_effects_dof", (self.fe.n - self.fe.n_eff) * pt.log(sigma))
        pm.Normal("y", mu=mu, sigma=sigma, observed=self.yw, dims="obs")

    # ---- simulation (SBC) ------------------------------------------------------------------
    #: spec options of the SBC fits (calibration.sbc_spec): the LOO comparison of 0, 1 and 2
    #: thresholds would refit two more models per replicate, and its n_thresholds is no draw
    sbc_options = {"compare": False}

    def simulate(self, params: dict, rng, noise_scale: float = 1.0, *, latents: bool = False):
        r"""An outcome (standardised) drawn from the model's likelihood at ``params`` (one draw of
        the free parameters, e.g. from the prior), on this panel's design (q, the regime variable
        and X as observed):

        .. math::

            y = F + X\beta + \textstyle\sum_j \theta_j\, r\, 1(\text{regime } j) + \sigma\varepsilon,
            \qquad \varepsilon \sim N(0, I)

        The sharp model integrates γ and θ out, so they are drawn here from the priors it
        integrates them against: the cell (γ, or the ordered pair) from its grid prior
        (``exp(logw)``: uniform over the trimmed range by the midpoint rule), each θ_j from the
        Normal ``slope`` prior; regime j holds the rows with γ_{j−1} < q ≤ γ_j. With ``transition =
        "logistic"`` γ, s and θ are the parameters' own (γ sorted: the ordered prior), and the
        regime indicators are the logistic shares. The flat fixed effects are not in the
        likelihood (W annihilates them; it reads W·y ~ N(W·mean, σ²W), n_eff degrees of freedom),
        so F = (I − W) of the observed standardised outcome: the simulated panel keeps its unit
        and period levels. ``noise_scale`` multiplies σ (≠ 1: a deliberately wrong simulator).
        ``latents=True`` also returns the γ and θ drawn, as the posterior names them
        (``gamma``, ``slope_z``)."""
        K, k = self.Xw.shape[1], self.n_thr + 1
        beta = np.asarray(params["beta"], dtype=float) if K else np.zeros(0)
        sigma = float(params["sigma"]) * noise_scale
        if self.n_thr and self.transition == "logistic":
            slope = np.asarray(params["slope_z"], dtype=float)
            gamma = np.sort(np.atleast_1d(np.asarray(params["gamma"], dtype=float)))
            s = np.atleast_1d(np.asarray(params["s_rel"], dtype=float)) * (self.q_hi - self.q_lo)
            part = slope[0] * self.r_s
            for j in range(self.n_thr):
                part = part + (slope[j + 1] - slope[j]) * self.r_s * expit((self.q - gamma[j]) / s[j])
        else:
            prior = self.priors["slope"].params
            slope = float(prior["mu"]) + float(prior["sigma"]) * rng.standard_normal(k)
            p = np.exp(self.logw - np.logaddexp.reduce(self.logw))
            gamma = self.cell_gamma[rng.choice(p.size, p=p / p.sum())]
            part = slope[np.searchsorted(gamma, self.q, side="left")] * self.r_s
        y = (self.y_z - self.fe(self.y_z)) + self.X_z @ beta + part + sigma * rng.standard_normal(self.q.size)
        if not latents:
            return y
        return y, ({"slope_z": slope, "gamma": gamma} if self.n_thr else {"slope_z": slope})

    def use_scales_of(self, base: "ThresholdModel") -> None:
        """Recompute the within statistics and the cells' cross products from the outcome the
        caller put on ``base``'s scale (SBC: the simulated outcome standardised as the observed
        one, the scale of the priors that simulated it; q and the regime variable are observed)."""
        self.yw = self.fe(self.y_z)
        self.A = np.column_stack([self.yw, self.Xw, self.rw])
        self.C = self.A.T @ self.A
        self._prepare_cells()

    # ---- after sampling -------------------------------------------------------------------
    def _flat(self, post, var):
        a = post[var].to_numpy()
        return a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])

    def _params(self, post):
        sigma = self._flat(post, "sigma")
        beta = self._flat(post, "beta") if self.Xw.shape[1] else np.zeros((len(sigma), 0))
        return self._flat(post, "slope_z"), beta, sigma

    def postprocess(self, idata, pm_model):
        """Draw the cell (γ) from its exact conditional p(cell | β, σ, y) and then the slopes from
        their Gaussian conditional, per posterior draw; keep the Rao–Blackwellised posterior mass
        of γ over the grid."""
        if self.n_thr and self.transition != "sharp":
            return idata
        post = idata["posterior"].to_dataset()
        ch, dr = post.sizes["chain"], post.sizes["draw"]
        sigma = self._flat(post, "sigma")
        S = sigma.size
        beta = self._flat(post, "beta") if self.Xw.shape[1] else np.zeros((S, 0))
        prior = self.priors["slope"].params
        mu0, s0 = float(prior["mu"]), float(prior["sigma"])
        rng = draws_rng(idata, sigma)
        k = self.n_thr + 1
        idx = np.empty(S, dtype=np.int64)
        slope = np.empty((S, k))
        mass = np.zeros(self.logw.size)
        for s in range(0, S, _DRAW_CHUNK):
            sl = slice(s, min(S, s + _DRAW_CHUNK))
            lm, mean, cov = self.log_marginal(beta[sl], sigma[sl], mu0, s0)
            lp = lm + self.logw[None, :]
            p = np.exp(lp - lp.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            mass += p.sum(axis=0)
            u = rng.random((p.shape[0], 1))
            j = np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), p.shape[1] - 1)
            rows = np.arange(j.size)
            m_j = np.stack([mean[a][rows, j] for a in range(k)], axis=1)
            c_j = np.stack([np.stack([cov[a][b][rows, j] for b in range(k)], axis=1)
                            for a in range(k)], axis=1)
            L = np.linalg.cholesky(c_j)
            slope[sl] = m_j + np.einsum("sab,sb->sa", L, rng.standard_normal((j.size, k)))
            idx[sl] = j
        mass /= S
        cd = {"chain": post["chain"], "draw": post["draw"]}
        idata["posterior"]["slope_z"] = xr.DataArray(
            slope.reshape(ch, dr, k), dims=("chain", "draw", "regime"),
            coords={**cd, "regime": self.coords()["regime"]})
        if self.n_thr == 0:
            return idata
        if self.n_thr == 1:
            self._gamma_post = {"grid": self.grid, "mass": [mass], "weight": self.grid_weights}
        else:
            m1 = np.bincount(self.pair_i, weights=mass, minlength=self.grid.size)
            m2 = np.bincount(self.pair_j, weights=mass, minlength=self.grid.size)
            self._gamma_post = {"grid": self.grid, "mass": [m1, m2], "weight": self.grid_weights}
        idata["posterior"]["gamma"] = xr.DataArray(
            self.cell_gamma[idx].reshape(ch, dr, -1), dims=("chain", "draw", "threshold"),
            coords={**cd, "threshold": self.coords()["threshold"]})
        return idata

    def gamma_mode(self) -> list[float]:
        """Posterior mode of each γ: the grid point of highest density (mass / prior weight)."""
        gp = self._gamma_post
        if not gp:
            return []
        return [float(gp["grid"][np.argmax(m / gp["weight"])]) for m in gp["mass"]]

    def _fitted(self, post, sl: slice) -> tuple[np.ndarray, np.ndarray]:
        """Within-scale means (draws, n) and σ of the draws ``sl`` (γ included)."""
        slope, beta, sigma = (x[sl] for x in self._params(post))
        mu = beta @ self.Xw.T
        if self.n_thr == 0:
            return mu + slope[:, :1] * self.rw[None, :], sigma
        gamma = self._flat(post, "gamma")[sl]
        if self.transition == "logistic":
            s = self._flat(post, "s_rel")[sl] * (self.q_hi - self.q_lo)
            mu = mu + slope[:, :1] * self.rw[None, :]
            for j in range(self.n_thr):
                share = expit((self.q[:, None] - gamma[None, :, j]) / s[None, :, j])
                mu = mu + (slope[:, j + 1] - slope[:, j])[:, None] * self.fe(self.r_s[:, None] * share).T
            return mu, sigma
        mu = mu + slope[:, -1:] * self.rw[None, :]
        for j in range(self.n_thr):
            dl = slope[:, j] - slope[:, j + 1]
            uniq, inv = np.unique(gamma[:, j], return_inverse=True)
            Zw = self._split_columns(uniq)
            mu = mu + dl[:, None] * Zw.T[inv.ravel()]
        return mu, sigma

    def log_likelihood(self, idata, pm_model):
        """Per-unit log-likelihood (dims ``unit``) of the within-transformed data given each draw:
        PSIS-LOO then leaves one unit out."""
        # a long panel: evenly thinned draws (base.loo_draws), chunks of draws × rows bounded
        post = loo_draws(idata["posterior"].to_dataset(), len(self.yw))
        ch, dr = post.sizes["chain"], post.sizes["draw"]
        S = ch * dr
        out = np.empty((S, self.fe.n_units))
        step = pl.draw_chunk(len(self.yw), _DRAW_CHUNK)
        for s in range(0, S, step):
            sl = slice(s, min(S, s + step))
            mu, sigma = self._fitted(post, sl)
            ssr = np.asarray(self._U @ ((self.yw[None, :] - mu) ** 2).T).T
            s2 = (sigma ** 2)[:, None]
            out[sl] = -0.5 * self.unit_dof[None, :] * np.log(2 * np.pi * s2) - ssr / (2 * s2)
        return self.unit_log_likelihood(post, out)

    def observed_values(self) -> np.ndarray:
        return self.y_z

    def posterior_predictive(self, idata, pm_model, seed: int):
        """Replicated outcomes (standardised scale) with the fixed effects drawn from their
        posterior (:meth:`WithinTransform.replicate`), thinned to base.PPC_DRAWS_PER_CHAIN per chain."""
        post = ppc_draws(idata["posterior"].to_dataset(), len(self.y_z))
        S = post.sizes["chain"] * post.sizes["draw"]
        mu, sigma = self._fitted(post, slice(0, S))
        rep = self.fe.replicate(self.y_z, mu, sigma, np.random.default_rng(seed))
        return xr.Dataset({self.observed: (("chain", "draw", "obs"),
                                           rep.reshape(post.sizes["chain"], post.sizes["draw"], -1))})

    # ---- estimands ------------------------------------------------------------------------
    def estimands(self, idata):
        post = idata["posterior"]
        slope = post["slope_z"].to_numpy() * self.y_sd / self.r_sd
        thr = list(range(1, self.n_thr + 1))
        out = {}
        if self.n_thr:
            out["gamma"] = E.indexed(post["gamma"].to_numpy()[..., :self.n_thr], "threshold", thr, "gamma[{}]")
        out["slope"] = E.indexed(slope[..., :self.n_thr + 1], "regime", list(range(1, self.n_thr + 2)), "slope[{}]")
        if self.n_thr:
            out["slope_diff"] = E.indexed(np.diff(slope[..., :self.n_thr + 1], axis=-1), "regime_step",
                                          [f"{j + 1}-{j}" for j in thr], "slope_diff[{}]")
        if self.transition == "logistic" and self.n_thr:
            s = post["s_rel"].to_numpy() * (self.q_hi - self.q_lo)
            out["transition_scale"] = E.indexed(s[..., :self.n_thr], "threshold", thr, "transition_scale[{}]")
        return E.dataset(out)

    # ---- extras ---------------------------------------------------------------------------
    def extras(self, idata, draws, replication=None) -> dict:
        out = {"transition": self.transition, "n_thresholds_fitted": self.n_thr,
               "regime_variable": self.panel.regime, "threshold_variable": self.panel.threshold,
               "regime_scale": self.r_sd, "trim": self.trim, "trimmed_range": [self.q_lo, self.q_hi]}
        if self._gamma_post:
            gp = self._gamma_post
            out["gamma_mode"] = self.gamma_mode()
            out["gamma_posterior"] = {"grid": gp["grid"], "mass": gp["mass"], "prior_weight": gp["weight"]}
            out["grid_size"] = int(gp["grid"].size)
        return jsonable(out)


# ---- LOO comparison of 0, 1 and 2 thresholds (a pipeline stage of its own) ---------------------

@dataclass(frozen=True)
class ThresholdComparison:
    """The LOO comparison of 0, 1 and 2 thresholds: ``preferred`` (the fewest thresholds whose
    elpd lies within LOO_SE_RULE dse of the best), the ``rule`` in words, and ``rows``: one record
    per number of thresholds (``arviz_stats.compare``'s columns, ``passed``: the fit's gates)."""

    preferred: int
    rule: str
    rows: tuple[dict, ...]
    fitted: int | None = None            # the number of thresholds of the main fit, where known
    priors: str | None = None            # the prior set's name
    sampler: dict = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """compare's table, indexed by the number of thresholds (as a string)."""
        return pd.DataFrame(list(self.rows)).set_index("model")

    def extras(self) -> dict:
        """What a Fit's ``extras`` carry of it (``bn.fit``; the report reads the stage's file so)."""
        return jsonable({"loo_compare": list(self.rows),
                         "n_thresholds": {"preferred": self.preferred, "rule": self.rule}})

    def to_json(self) -> dict:
        return jsonable({"preferred": self.preferred, "rule": self.rule, "fitted": self.fitted,
                         "priors": self.priors, "sampler": self.sampler, "table": list(self.rows),
                         "extras": self.extras()})

    @classmethod
    def from_json(cls, s: dict) -> "ThresholdComparison":
        return cls(preferred=int(s["preferred"]), rule=str(s.get("rule", "")),
                   rows=tuple(s.get("table") or ()), fitted=s.get("fitted"), priors=s.get("priors"),
                   sampler=dict(s.get("sampler") or {}))


def compare_thresholds(panel, *, priors="default", spec: ModelSpec | str | None = None,
                       n_thresholds=(0, 1, 2), quick: bool = False, draws=None, tune=None, chains=None,
                       seed=None, sampler: SamplerSettings | None = None, fitted: dict | None = None,
                       cache: dict | None = None) -> ThresholdComparison:
    """Fit the threshold model with 0, 1 and 2 thresholds and compare them by PSIS-LOO (leave one
    unit out) with ``arviz_stats.compare``; returns a :class:`ThresholdComparison`.

    A pure function of the panel, the spec, the prior set and the sampler settings (``sampler``,
    else the spec's ``[sampler]`` or ``[quick]`` with ``draws``/``tune``/``chains``/``seed`` on
    top): each number of thresholds is sampled with the same settings. Two arguments only spare
    work and do not change the result: ``fitted`` ({n: (ThresholdModel, postprocessed idata)}
    already sampled with these inputs, reused instead of refitted) and ``cache`` (a dict this
    function fills with the compiled models and reuses on a later call with prior families alike:
    only the hyperparameters are swapped, :func:`.refit.with_priors`).
    """
    from .diagnostics import diagnose, loo_compare
    from .fit import compile_model, sample
    from .refit import with_priors

    spec = spec if isinstance(spec, ModelSpec) else load_spec("threshold", spec)
    prior_set = load_prior_set(priors)
    settings = sampler if sampler is not None else (spec.quick if quick else spec.sampler).override(
        draws=draws, tune=tune, chains=chains, seed=seed)
    trees, passed = {}, {}
    for n in n_thresholds:
        if fitted and n in fitted:
            model, idata = fitted[n]
        else:
            model = None
            if (cache or {}).get(n) is not None:  # the one refit path: hyperparameters swapped
                model, pm_model, compiled = cache[n]
                try:
                    compiled = with_priors(model, pm_model, compiled, prior_set)
                except SpecError:  # a prior family differs: compile anew
                    model = None
            if model is None:
                sub = replace(spec, options={**spec.options, "n_thresholds": n})
                model = ThresholdModel(panel, sub, prior_set)
                pm_model, compiled = compile_model(model)
                if cache is not None:
                    cache[n] = (model, pm_model, compiled)
            idata = model.postprocess(sample(compiled, settings), pm_model)
        ll = model.log_likelihood(idata, None)
        post = idata["posterior"].to_dataset()
        trees[str(n)] = xr.DataTree.from_dict({"posterior": post, "log_likelihood": ll})
        passed[str(n)] = bool(diagnose(idata)["passed"])  # every posterior variable, γ included
    table = loo_compare(trees)  # sub-sampled above 10,000 units (diagnostics.loo_compare)
    table["passed"] = [passed[k] for k in table.index]
    table["n_thresholds"] = [int(k) for k in table.index]
    ok = table[(-table["elpd_diff"]) <= LOO_SE_RULE * table["dse"].fillna(0.0)]
    rule = (f"the fewest thresholds whose elpd is within {LOO_SE_RULE:g} dse of the best (PSIS-LOO, "
            "one unit left out)")
    return ThresholdComparison(preferred=int(ok["n_thresholds"].min()), rule=rule,
                               rows=tuple(jsonable(table.reset_index(names="model").to_dict(orient="records"))),
                               fitted=int(spec.option("n_thresholds", 1)), priors=prior_set.name,
                               sampler=dict(settings.__dict__))


def comparison_for(fit, panel) -> ThresholdComparison:
    """The comparison for a threshold ``fit`` (a :class:`~.fit.Fit`): its spec, prior set and
    sampler settings; its own posterior is reused, so two more models are fitted."""
    spec, priors = fit.spec, fit.priors
    if not isinstance(spec, ModelSpec):  # a fit read back (load_fit): its summary's spec options
        base = load_spec("threshold")
        spec = replace(base, options=dict(spec.get("options") or base.options))
    if not isinstance(priors, PriorSet):
        priors = load_prior_set(priors.get("name", "default"))
    model = fit.compiled_[0] if fit.compiled_ is not None else ThresholdModel(panel, spec, priors)
    settings = fit.sampler if isinstance(fit.sampler, SamplerSettings) else SamplerSettings(**fit.sampler)
    return compare_thresholds(panel, priors=priors, spec=spec, sampler=settings,
                              fitted={model.n_thr: (model, fit.idata)})


def comparison_stage(fit, panel) -> ThresholdComparison:
    """The stage ``compare_thresholds:threshold`` of ``bayes-nqp run`` (``[model] stages``), also
    run by ``bn.fit``: :func:`comparison_for` the main fit; SectionSkipped when its spec says
    ``compare = false``."""
    options = fit.spec.options if isinstance(fit.spec, ModelSpec) else (fit.spec or {}).get("options", {})
    if not options.get("compare", False):
        raise SectionSkipped("the threshold spec says compare = false: the number of thresholds is "
                             "the fitted one")
    return comparison_for(fit, panel)
