r"""Bayesian event study with pre-trend probabilities and relative-magnitude sensitivity.

.. math::

    y_{it} = \alpha_i + \gamma_t + \sum_{e \in [-K, L],\, e \neq -1} \beta_e\,
        \mathbf 1\{\tilde e_{it} = e\} + t_i\,\mathbf 1\{\tilde e_{it} \ge 0\}
        + X_{it}\beta_x + \varepsilon_{it},

    \alpha_i \sim N(\mu, \sigma_\alpha^2),\qquad t_i \sim N(0, \sigma_\tau^2),\qquad
    \gamma \sim \text{zero-sum, fixed wide scale}\ (\text{when the map has time effects}),

    \varepsilon_{i\cdot} \sim \text{iid } N(0, \sigma^2)\ \text{or stationary AR(1)}(\rho, \sigma^2)
    \ \text{within unit } i,

where :math:`\tilde e_{it} = \min(\max(t - G_i, -K), L)` is the binned event time of a unit
first treated in :math:`G_i` (never-treated units are zero on every dummy) and :math:`e = -1` is
the reference. The window is the replication's (``frequentist.event_study.window``):
:math:`K = \min(4, \text{largest lead})`, :math:`L = \text{largest lag}`; spec options
``leads`` / ``lags`` narrow it. An event time with no observation in the window is dropped, as is
one that is collinear with the fixed effects (logged).

Honest uncertainty (issue 13; the same spec options as the did model, :mod:`.did`): with
``effect = "unit"`` (default) each treated unit's post-period effects deviate from the
event-time effects by its own :math:`t_i` (unit-level deviations of the post-period effects,
:math:`\sigma_\tau` learned, prior ``sigma_effect``), so the interval of ``att_post`` reflects
how much treated units disagree, as a unit-clustered SE does; ``effect = "common"`` drops it.
``errors = "ar1"`` adds AR(1) errors within a unit (:math:`\rho` learned, prior ``rho``).
:math:`\alpha_i`, :math:`t_i` and the AR(1) covariance are integrated out exactly from
sufficient statistics (:mod:`.panel_likelihood`, through :class:`~.did.TwoWayModel`; the
treated-row indicator of :math:`t_i` is the post-period rows), and drawn afterwards from their
exact conditional posterior (``alpha``; ``tau_unit_z`` = the unit's standardised average
post-period effect, ``att_post`` + :math:`t_i`). ``year_effects = "pooled"`` restores the
learned-scale ZeroSumNormal year effects of the previous version.

Event-time prior (spec option ``prior``):

``"independent"``  :math:`\beta_e \sim` the prior set's ``beta_event``.

``"random_walk"``  a smoothing prior anchored at the reference on both sides:
    :math:`\beta_e - \beta_{e+1} = \delta_e` for :math:`e \le -2` and
    :math:`\beta_e - \beta_{e-1} = \delta_e` for :math:`e \ge 0` (with :math:`\beta_{-1} = 0`),
    :math:`\delta_e \sim N(0, \sigma_{event}^2)`, :math:`\sigma_{event} \sim` ``sigma_event``.
    The step into :math:`e = 0` is a step like any other, so a large jump at adoption raises
    :math:`\sigma_{event}` and smooths less.

Scale: the outcome and the controls are standardised (mean 0, sd 1), and every prior lives on
that scale. Prior names: ``intercept`` (:math:`\mu`), ``sigma_unit``, ``year`` (or ``sigma_time``
when pooled), ``beta_event`` or ``sigma_event``, ``beta`` (controls), ``sigma``,
``sigma_effect``, ``rho``.

Parameterisation (measured on a 287 × 12 panel simulated like the demo; it does not change the
model):

* the event dummies and the controls enter *within-transformed* (two-way demeaned, by exact
  sparse least squares). By Frisch–Waugh–Lovell this leaves :math:`\beta_e` and
  :math:`\beta_x` unchanged and only re-defines :math:`\alpha_i, \gamma_t` (they absorb the
  projections of the regressors on the fixed effects). Without it the event coefficients are
  strongly correlated with the year and unit effects and nutpie's diagonal mass matrix mixes
  badly (bulk ESS ≈ 10 in 1000 draws). The demeaned columns have zero unit means, so the
  random intercept needs no Mundlak means (``unit_means`` is off here);
* the event-time vector (or its random-walk steps) is sampled in *whitened* coordinates
  :math:`\omega = L^{-1}(\beta_e - \hat\beta_e)`, with :math:`\hat\beta_e` and
  :math:`LL' = \hat V` from least squares on the demeaned data (Stan's QR idea). Any
  invertible affine map is an exact reparameterisation; this one makes the posterior nearly
  isotropic (bulk ESS of the event coefficients 155 → 1800 in 2 × 500 draws).

Estimands (outcome's original scale):

* ``beta[e=<k>]`` for every event time in the window except the reference;
* ``att_post`` = :math:`\sum_{e \ge 0} w_e \beta_e` with :math:`w_e` the share of treated
  unit-periods in (binned) event time *e*: the average post-treatment effect over treated cells;
* ``breakdown_M`` (only with at least one lead): the smallest *M* at which the 95%
  relative-magnitude interval of ``att_post`` (below) includes zero. It is a number computed
  from the whole posterior, not a random quantity: it is stored as a constant draw array so that
  it sits in ``params`` with the others (sd 0, no convergence diagnostics).

``extras()``:

* ``pretrend``: ``delta`` (spec ``pretrend_delta`` outcome standard deviations, default 0.1,
  converted to the original scale with the sd of the outcome over all observations),
  ``prob_all_within`` = :math:`P(|\beta_e| \le \delta\ \forall e \le -2 \mid y)` and
  ``max_abs_pre`` = :math:`E[\max_{e \le -2} |\beta_e| \mid y]`;
* ``sensitivity``: relative magnitudes in the spirit of Rambachan & Roth (2023), on the draws.
  For draw *s*, :math:`m_s = \max_{e \le -2} |\beta_{e,s}|` is the largest pre-period
  deviation from parallel trends (the reference is zero by construction). The restriction
  "each post-period deviation is at most :math:`M` times :math:`m_s`" bounds the bias of
  ``att_post`` (a weighted mean of post-period deviations) by :math:`M m_s`, so the identified
  set of draw *s* is :math:`[\mathrm{att}_s - M m_s,\ \mathrm{att}_s + M m_s]`. The reported
  interval for *M* is the 95% interval of the union over draws: the 2.5% quantile of the lower
  ends and the 97.5% quantile of the upper ends. ``breakdown_M`` solves for the *M* at which this
  interval first touches zero (exactly, by root finding; 0 when it already contains zero).
  ``m_grid`` (spec option) is the grid reported.
"""

from __future__ import annotations

import logging
from functools import cached_property

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.logprob.transforms import Transform
from scipy.optimize import brentq

from .. import estimands as E
from ..errors import ModelError, SpecError
from .algebra import FixedEffects
from .base import register
from .did import Block, TwoWayModel

log = logging.getLogger(__name__)

PRIORS = ("independent", "random_walk")
DEFAULT_M_GRID = tuple(np.round(np.arange(0.0, 3.0001, 0.25), 2))
DEFAULT_PRETREND_DELTA = 0.1  # outcome standard deviations


# ---- the reparameterisation of the event-time effects ------------------------------------------

class Whiten(Transform):
    """Affine reparameterisation ω = L⁻¹(x − shift) of a vector on the real line.

    The sampler works in ω; the variable keeps its prior. The log-Jacobian is the constant
    log|det L|, so the transform is exact whatever ``shift`` and ``L`` are.
    """

    name = "whiten"

    def __init__(self, shift: np.ndarray, chol: np.ndarray):
        self.shift = np.asarray(shift, dtype=float)
        self.chol = np.asarray(chol, dtype=float)
        self.chol_inv = np.linalg.inv(self.chol)
        self.log_det = float(np.log(np.abs(np.diag(self.chol))).sum())

    def forward(self, value, *inputs):
        return pt.dot(value - self.shift, self.chol_inv.T)

    def backward(self, value, *inputs):
        return self.shift + pt.dot(value, self.chol.T)

    def log_jac_det(self, value, *inputs):
        return pt.constant(self.log_det)


def whitening(Z: np.ndarray, y: np.ndarray, n_absorbed: int, block: slice):
    """Least squares of ``y`` on ``Z`` (both within-transformed): (coef, covariance) of ``block``.

    ``n_absorbed`` fixed effects were partialled out, which the residual degrees of freedom
    count. Only used to choose sampling coordinates, never as an estimate.
    """
    coef, *_ = np.linalg.lstsq(Z, y, rcond=None)
    dof = max(len(y) - n_absorbed - Z.shape[1], 1)
    s2 = float(np.sum((y - Z @ coef) ** 2) / dof)
    if not np.isfinite(s2) or s2 <= 0:
        s2 = float(np.var(y)) or 1.0
    V = s2 * np.linalg.pinv(Z.T @ Z)
    Vb = V[block, block]
    return coef[block], 0.5 * (Vb + Vb.T)


def label(value) -> str:
    """A period or cohort as written in estimand names: 2013.0 → '2013'."""
    v = float(value)
    return str(int(v)) if v.is_integer() else f"{v:g}"


# ---- pre-trends and sensitivity on posterior draws ----------------------------------------------

def pretrend_summary(pre: np.ndarray, delta: float) -> dict:
    """P(all pre-period |β_e| ≤ δ) and E[max |β_e|] from draws ``pre`` of shape (S, n_pre)."""
    a = np.abs(np.asarray(pre, dtype=float).reshape(len(pre), -1))
    return {"delta": float(delta), "prob_all_within": float((a <= delta).all(axis=1).mean()),
            "max_abs_pre": float(a.max(axis=1).mean()), "n_pre": int(a.shape[1])}


def rm_interval(att: np.ndarray, maxpre: np.ndarray, M: float) -> tuple[float, float]:
    """95% interval of the union of the per-draw identified sets [att − M·m, att + M·m]."""
    return (float(np.quantile(att - M * maxpre, 0.025)), float(np.quantile(att + M * maxpre, 0.975)))


def breakdown_m(att: np.ndarray, maxpre: np.ndarray) -> float:
    """The smallest M at which the relative-magnitude interval of ``att`` contains zero.

    The lower end falls and the upper end rises monotonically in M, so a root finder on the end
    that lies on the far side of zero finds it exactly. Inf when no pre-period deviation is ever
    positive (no M can cover zero).
    """
    att, maxpre = np.asarray(att, float).ravel(), np.asarray(maxpre, float).ravel()
    lo, hi = rm_interval(att, maxpre, 0.0)
    if lo <= 0.0 <= hi:
        return 0.0
    end = (lambda M: rm_interval(att, maxpre, M)[0]) if lo > 0 else (lambda M: -rm_interval(att, maxpre, M)[1])
    upper = 1.0
    while end(upper) > 0:
        upper *= 2.0
        if upper > 1e12:
            return float("inf")
    return float(brentq(end, 0.0, upper, xtol=1e-6))


def sensitivity_summary(att: np.ndarray, maxpre: np.ndarray, m_grid) -> dict:
    rows = []
    for M in m_grid:
        lo, hi = rm_interval(att, maxpre, float(M))
        rows.append({"M": float(M), "ci95": [lo, hi], "includes_zero": bool(lo <= 0.0 <= hi)})
    return {"construction": "per draw s: [att_post_s − M·m_s, att_post_s + M·m_s], m_s = max over "
                            "pre-periods e ≤ −2 of |β_e,s|; interval = [2.5% quantile of lower "
                            "ends, 97.5% quantile of upper ends]",
            "grid": rows, "breakdown_M": breakdown_m(att, maxpre)}


# ---- the model --------------------------------------------------------------------------------

@register("event_study")
class EventStudyModel(TwoWayModel):
    """Event-time effects on the shared two-way machinery (:class:`~.did.TwoWayModel`): the
    treatment term is the demeaned event dummies, the unit deviation acts on post-period rows."""

    needs = ("outcome", "treatment", "staggered")
    replication_section = "event_study"
    key_estimands = ("att_post",)

    def __init__(self, panel, spec, priors):
        super().__init__(panel, spec, priors)
        from ..frequentist.event_study import window  # the replication's window, so both agree

        where = f" ({self.spec.source})" if self.spec.source else ""
        # the demeaned event dummies and controls have zero unit means: no Mundlak device needed
        self.unit_means = False
        self.prior_kind = self.spec.choice("prior", "independent", PRIORS, "event_study")
        self.delta_sd = float(self.spec.option("pretrend_delta", DEFAULT_PRETREND_DELTA))
        self.m_grid = [float(m) for m in self.spec.option("m_grid", DEFAULT_M_GRID)]
        if self.delta_sd <= 0 or any(m < 0 for m in self.m_grid):
            raise SpecError(f"event_study: pretrend_delta must be positive and m_grid non-negative{where}")
        self.K, self.L = window(panel, self.spec.option("leads"), self.spec.option("lags"))
        self.replication_options = {"leads": self.K, "lags": self.L}

        binned = self.df["rel_time"].clip(lower=-self.K, upper=self.L).to_numpy()
        candidates = [e for e in range(-self.K, self.L + 1) if e != -1 and (binned == e).any()]
        if not any(e >= 0 for e in candidates):
            raise ModelError("event_study: no treated unit-period on this panel (every cohort "
                             "starts after the last period), so there is no effect to estimate")
        E = np.column_stack([(binned == e).astype(float) for e in candidates])
        fe = FixedEffects(self.unit_idx, self.time_idx, time_effects=panel.time_effects)
        E_w, X_w = fe.residual(E), fe.residual(self.X_z) if self.X_z.shape[1] else self.X_z
        keep = self._independent_columns(E_w, X_w)
        dropped = [e for j, e in enumerate(candidates) if j not in keep]
        if dropped:
            log.warning("event_study: event time(s) %s are collinear with the fixed effects and "
                        "controls (no never-treated units?) and are dropped", dropped)
        self.events = [candidates[j] for j in keep]
        if not any(e >= 0 for e in self.events):
            raise ModelError("event_study: no post-treatment event time can be estimated on this "
                             "panel (all are collinear with the fixed effects)")
        self.E_w = E_w[:, keep]
        self.X_w = X_w
        self.binned = binned
        self.pre = [e for e in self.events if e <= -2]
        post = [e for e in self.events if e >= 0]
        counts = np.array([(binned == e).sum() for e in post], dtype=float)
        self.post_weights = dict(zip(post, counts / counts.sum()))
        y_w = fe.residual(self.y_z)[:, 0]
        k = len(self.events)
        shift, V = whitening(np.hstack([self.E_w, self.X_w]), y_w, fe.n_effects, slice(0, k))
        if self.prior_kind == "random_walk":
            C = self.walk_matrix(self.events)
            Ci = np.linalg.inv(C)
            shift, V = Ci @ shift, Ci @ V @ Ci.T
        # a relative jitter keeps the factorisation defined when a coefficient is barely identified
        self.transform = Whiten(shift, np.linalg.cholesky(V + 1e-10 * np.trace(V) / k * np.eye(k)))

    @staticmethod
    def _independent_columns(E: np.ndarray, X: np.ndarray) -> list[int]:
        """Event columns that add rank after the controls (greedy, in event-time order)."""
        base = X
        keep = []
        rank = np.linalg.matrix_rank(base) if base.shape[1] else 0
        for j in range(E.shape[1]):
            trial = np.hstack([base, E[:, [j]]])
            r = np.linalg.matrix_rank(trial)
            if r > rank:
                keep.append(j)
                base, rank = trial, r
        return keep

    @staticmethod
    def walk_matrix(events: list[int]) -> np.ndarray:
        """C with β = C·δ: each coefficient is the sum of the steps between it and e = −1."""
        k = len(events)
        C = np.zeros((k, k))
        for i, e in enumerate(events):
            for j, f in enumerate(events):
                if (e <= f <= -2) or (0 <= f <= e):
                    C[i, j] = 1.0
        return C

    def coords(self) -> dict:
        return {**super().coords(), "event_time": list(self.events)}

    def assumptions(self) -> list[str]:
        out = self._two_way_assumptions(
            unit=("each treated unit's post-period effects deviate from the event-time effects by "
                  "its own t_i ~ N(0, sigma_tau^2), sigma_tau learned: att_post's interval "
                  "reflects how much treated units disagree (as a unit-clustered SE does); the "
                  "deviation is common to a unit's post periods (its dynamics are shared)"),
            common=("each event-time effect is common to all units (effect = 'common'): the "
                    "interval does not widen when treated units disagree"),
            unit_term=" and effect deviation",
            fixed="year effects have a fixed wide zero-sum prior",
            pooled="year effects are partially pooled with a learned scale (year_effects = 'pooled')")
        out.append("unit intercepts are random effects; the event dummies and controls enter "
                   "two-way demeaned, so the event-time effects rest on within-unit changes")
        out.append("Gaussian errors" if self.likelihood == "normal" else "Student-t errors")
        return out

    def estimand_labels(self) -> dict:
        return {"att_post": "the treated-cell-weighted average of the post-period event-time effects"
                            + (" (the mean over units: each treated unit's own deviation t_i averages "
                               "to zero in the population)" if self.effect == "unit" else "")}

    # ---- the treatment term on the shared machinery -------------------------------------------
    @property
    def controls_design(self) -> np.ndarray:
        """θ = (μ, γ, β on the demeaned controls, β_e on the demeaned event dummies): the shared
        design with the two-way demeaned controls (and no unit means: ``unit_means`` is off)."""
        return self.X_w

    def effect_design(self) -> list[Block]:
        return [Block("beta_event", self.E_w, [str(e) for e in self.events])]

    def effect_params(self) -> dict:
        if self.prior_kind == "independent":
            return {"beta_event": self.prior("beta_event", transform=self.transform, dims="event_time")}
        sigma_event = self.prior("sigma_event")
        step = pm.Normal("event_step", 0.0, sigma_event, dims="event_time", transform=self.transform)
        return {"beta_event": pm.Deterministic("beta_event", pt.dot(self.walk_matrix(self.events), step),
                                               dims="event_time")}

    @cached_property
    def effect_rows(self) -> np.ndarray:
        """The post-period rows (binned event time ≥ 0): where a unit's deviation t_i acts."""
        return (np.nan_to_num(self.binned, nan=-np.inf) >= 0).astype(float)

    @cached_property
    def _post_vector(self) -> np.ndarray:
        return np.array([self.post_weights.get(e, 0.0) for e in self.events])

    def effect_centre(self, theta: np.ndarray) -> np.ndarray:
        """att_post (standardised) for every unit: ``tau_unit_z`` is a unit's average post effect."""
        att = self._block(theta, "beta_event") @ self._post_vector
        return np.repeat(att[:, None], self.panel.n_units, axis=1)

    # ---- estimands ----------------------------------------------------------------------------
    def event_draws(self, idata) -> np.ndarray:
        """β_e on the original scale, shape (chains, draws, event_time)."""
        return idata["posterior"]["beta_event"].transpose("chain", "draw", "event_time").to_numpy() * self.y_sd

    def _att_maxpre(self, beta: np.ndarray):
        idx = {e: j for j, e in enumerate(self.events)}
        att = sum(w * beta[..., idx[e]] for e, w in self.post_weights.items())
        maxpre = np.abs(beta[..., [idx[e] for e in self.pre]]).max(axis=-1) if self.pre else None
        return att, maxpre

    def estimands(self, idata):
        beta = self.event_draws(idata)
        out = {"beta": E.indexed(beta, "event_time", [int(e) for e in self.events], "beta[e={}]")}
        att, maxpre = self._att_maxpre(beta)
        out["att_post"] = E.scalar(att)
        if maxpre is not None:
            bm = breakdown_m(att, maxpre)
            if np.isfinite(bm):  # inf only when every pre-period draw is exactly zero
                out["breakdown_M"] = E.scalar(np.full(att.shape, bm))
        return E.dataset(out)

    def extras(self, idata, draws, replication=None):
        beta = self.event_draws(idata)
        att, maxpre = self._att_maxpre(beta)
        out = {"event_study": {"leads": self.K, "lags": self.L, "reference": -1,
                               "event_times": list(self.events), "prior": self.prior_kind,
                               "att_post_weights": {str(e): w for e, w in self.post_weights.items()}}}
        delta = self.delta_sd * self.y_sd
        if maxpre is None:
            note = "no pre-period coefficient (e ≤ −2) in the window: no pre-trend check possible"
            out["pretrend"] = {"delta": delta, "prob_all_within": None, "max_abs_pre": None, "note": note}
            out["sensitivity"] = {"note": note}
            return out
        idx = {e: j for j, e in enumerate(self.events)}
        pre = beta[..., [idx[e] for e in self.pre]].reshape(-1, len(self.pre))
        out["pretrend"] = {**pretrend_summary(pre, delta), "delta_sd": self.delta_sd,
                           "definition": f"δ = {self.delta_sd:g} × sd(outcome); probability that "
                                         "every pre-period β_e (e ≤ −2) lies in [−δ, δ]"}
        out["sensitivity"] = sensitivity_summary(att.ravel(), maxpre.ravel(), self.m_grid)
        return out
