r"""Hierarchical two-way difference-in-differences, with the unit effects integrated out.

.. math::

    y_{it} = \alpha_i + \gamma_t + \tau_i D_{it} + X_{it}\beta + \varepsilon_{it},\qquad
    \alpha_i \sim N(\mu + \bar x_i'\lambda,\ \sigma_\alpha^2),\qquad
    \tau_i \sim N(\tau, \sigma_\tau^2),\qquad
    \gamma \sim \mathrm{ZeroSumNormal}(s_\gamma)\ \ (\textstyle\sum_t \gamma_t = 0),

    \varepsilon_{i\cdot} \sim \text{iid } N(0, \sigma^2)\ \text{or stationary AR(1)}(\rho, \sigma^2)
    \ \text{within unit } i\ \ (\text{or } t_\nu(0, \sigma))

Honest uncertainty (issue 13; spec options, all in models/did.toml):

``effect = "unit"`` (default) | ``"common"``
    unit-specific effects :math:`\tau_i \sim N(\tau, \sigma_\tau^2)`, :math:`\sigma_\tau` learned
    (prior ``sigma_effect``). :math:`\tau` is the **mean of the unit effects**; its posterior sd
    reflects how much treated units disagree, which is what a unit-clustered SE measures (the
    iid/common model's sd is the iid-OLS SE and its placebo intervals exclude 0 far too often).
    Frequentist counterpart: the mean of the unit effects of the fully interacted TWFE regression
    with its between-unit SE (:mod:`bayes_nqp.frequentist.unit_effects`). ``"common"``: one
    :math:`\tau` (TWFE's estimand; counterpart TWFE with CRV1 SE), intervals not robust to
    disagreeing units.
``errors = "iid"`` (default) | ``"ar1"``
    AR(1) errors within a unit over runs of consecutive periods, :math:`\rho` learned (prior
    ``rho``), integrated out exactly (:mod:`.panel_likelihood`). A complement, not the default:
    the estimate then becomes a GLS (quasi-differenced) comparison rather than TWFE's, and on
    strongly trending outcomes :math:`\rho \to 1` makes it a first-difference estimator with too
    narrow intervals (measured on Munnell's state GSP panel, benchmarks/bench_honest.py).
``year_effects = "fixed"`` (default) | ``"pooled"``
    fixed: zero-sum year effects with the prior set's fixed wide scale ``year`` — with the
    Mundlak unit means, a balanced panel, the common effect and weak priors the posterior mean of
    :math:`\tau` is TWFE's within estimate. pooled: a learned scale ``sigma_time``, which shrinks
    the year effects when years are few and **changes the estimand** (moves τ off TWFE's).

Both :math:`\alpha_i` and :math:`\tau_i` (and the AR(1) covariance) are integrated out: unit
*i*'s residuals are :math:`MVN(0, \sigma^2R(\rho) + \sigma_\alpha^2 11' + \sigma_\tau^2 d_id_i')`,
evaluated exactly from sufficient statistics (:mod:`.panel_likelihood`); afterwards
:math:`(\alpha_i, \tau_i)` are drawn from their exact conditional posterior and stored as
``alpha`` and ``tau_unit_z`` (standardised). The statistics are ``pm.Data``
(:meth:`TwoWayModel.likelihood_data`), so one compiled model refits other panels of the same
shapes (placebo calibration).

The year effects are present when the column map asks for them (``time_effects``).

Unit effects (spec option ``unit_means``, default true): :math:`\bar x_i` holds unit *i*'s means
of :math:`D` and of the controls (Mundlak 1978, "correlated random effects"). Plain partial pooling
(``unit_means = false``, :math:`\alpha_i \sim N(\mu, \sigma_\alpha^2)`) assumes the unit effects are
independent of treatment, which a DID exists to avoid: pilots went to richer cities. The unit
means absorb that correlation, so :math:`\tau` rests on within-unit changes as in TWFE, while
:math:`\alpha` is still partially pooled.

Parameterisation of the unit effects (spec option ``unit_effects``):

``"marginal"`` (default; normal likelihood only)
    :math:`\alpha_i` (and :math:`\tau_i`, and the AR(1) covariance) integrated out analytically.
    With the common effect and iid errors, unit *i* with :math:`n_i` observations and
    residuals :math:`r_{it} = y_{it} - (\mu + \bar x_i'\lambda + \gamma_t + \tau D_{it} + X_{it}\beta)`
    has :math:`r_i \sim MVN(0, \sigma^2 I + \sigma_\alpha^2 \mathbf{1}\mathbf{1}')`, so

    .. math::

        \log p(y_i) = -\tfrac12\Big[(n_i-1)\log\sigma^2 + \log(\sigma^2 + n_i\sigma_\alpha^2)
          + \frac{1}{\sigma^2}\Big(\textstyle\sum_t r_{it}^2
          - \frac{\sigma_\alpha^2 (\sum_t r_{it})^2}{\sigma^2 + n_i\sigma_\alpha^2}\Big)
          + n_i \log 2\pi\Big],

    from per-unit segment sums (unbalanced panels work as they are). Everything else being
    linear, the data enter through sufficient statistics computed once (see
    :class:`TwoWayModel`): the sampler sees about 25 parameters instead of 300, none in a funnel,
    and each gradient costs the same for 3,444 or 3 million observations. After sampling,
    :math:`\alpha_i` is drawn from its exact conditional posterior
    :math:`N\big(\mu + \bar x_i'\lambda + \frac{\sum_t r_{it}/\sigma^2}{1/\sigma_\alpha^2 + n_i/\sigma^2},\;
    (1/\sigma_\alpha^2 + n_i/\sigma^2)^{-1}\big)` and stored as ``alpha`` (dims ``unit``).
    The likelihood is a potential on whole units, so the pointwise log-likelihood is the
    per-unit marginal :math:`\log p(y_i \mid \theta)` (dims ``unit``): PSIS-LOO then leaves one
    *city* out, which is the right cross-validation for a panel (a city's years are not
    exchangeable with other cities' years, and leaving out one city-year would let
    :math:`\alpha_i` remember it). Posterior predictive draws simulate :math:`y` (standardised)
    from the draws including :math:`\alpha`.

``"centered"`` / ``"noncentered"``
    :math:`\alpha_i` sampled, centred (:math:`\alpha_i \sim N(\cdot, \sigma_\alpha)`) or
    non-centred (:math:`\alpha_i = \mu + \bar x_i'\lambda + \sigma_\alpha z_i`); needed for the
    Student-t likelihood (``likelihood = "student_t"``), which has no closed-form marginal.
    Non-centred mixes poorly when units have many observations (the intercept and unit means
    then trade off against all :math:`z_i` at once); centred is the better choice there.
    Unit-varying effects are then sampled non-centred (``effect_z``); AR(1) errors need the
    marginal parameterisation.
    Pointwise LOO is then per city-year, conditional on :math:`\alpha`.

Scale: the outcome and the controls are standardised (mean 0, sd 1); every prior lives on that
scale. Prior names in the prior set: ``intercept`` (:math:`\mu`), ``sigma_unit``
(:math:`\sigma_\alpha`), ``year`` (fixed year effects) or ``sigma_time`` (pooled),
``tau``, ``sigma_effect`` (:math:`\sigma_\tau`, unit effects), ``rho`` (AR(1)), ``beta`` (for
:math:`\beta` and :math:`\lambda`), ``sigma``, ``nu`` (Student-t only).

Estimand: ``tau``, the (mean) treatment effect on the outcome's original scale
(:math:`\tau_z \cdot \mathrm{sd}(y)`); summary.json names it (``estimands``), says what its
interval rests on (``assumptions``) and sets the posterior sd beside the matching frequentist SE
(``comparison.tau.sd_ratio``). Under staggered adoption with effects that grow with
exposure, :math:`\tau` is a TWFE-type weighted average of the cell effects, not the ATT (see the
event_study and staggered models); this model is the Bayesian counterpart of the replication's
``did_controls`` (``did`` without controls).

The machinery (:class:`TwoWayModel`) is shared: a model that changes only the treatment term
(heterogeneity) subclasses it and overrides :meth:`TwoWayModel.effect_params` and
:meth:`TwoWayModel.effect_design`.
"""

from __future__ import annotations

from functools import cached_property
from typing import NamedTuple

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from .. import estimands as E
from ..errors import SpecError
from . import panel_likelihood as pl
from .base import (LOO_MAX_VALUES, LOO_THIN_DRAWS, PPC_DRAWS_PER_CHAIN, PPC_MAX_VALUES, BayesModel,
                   draws_rng, loo_draws, ppc_draws, register)

LOG_2PI = float(np.log(2 * np.pi))
LIKELIHOODS = ("normal", "student_t")
UNIT_EFFECTS = ("marginal", "noncentered", "centered")
#: spec option ``effect``: one τ for every unit, or τ_i ~ N(τ, σ_τ²) around it
EFFECTS = ("unit", "common")
#: spec option ``errors``: AR(1) within a unit (ρ learned) or independent
ERRORS = ("ar1", "iid")
#: spec option ``year_effects``: a fixed wide zero-sum prior (TWFE's within estimand) or
#: partially pooled with a learned scale (shrinks the year effects: changes the estimand)
YEAR_EFFECTS = ("fixed", "pooled")
#: posterior draws processed at once after sampling: (draws × observations) arrays stay small
CHUNK = 250
# PPC_DRAWS_PER_CHAIN, PPC_MAX_VALUES, LOO_MAX_VALUES, LOO_THIN_DRAWS: the post-processing's
# thinning on long panels (base.py), imported as this module's names so that a test can change
# them for this model
#: draws × units above which α_i and τ_i are not stored per draw (3 GB for 4,000 draws × 100,000
#: units) but as their posterior mean and sd per unit (group ``unit_effects``)
UNIT_DRAW_MAX_VALUES = 25_000_000
#: draws (evenly thinned) from which those per-unit means and sds are computed
UNIT_SUMMARY_DRAWS = 500


def unit_marginal_logp(s1, s2, n, sigma, sigma_unit, log=np.log):
    """Per-unit log density of the residuals with the random intercept integrated out (the
    pointwise log-likelihood for LOO).

    ``s1``/``s2`` are the per-unit sums of residuals and squared residuals, ``n`` the per-unit
    counts.
    """
    s2e, s2a = sigma**2, sigma_unit**2
    denom = s2e + n * s2a
    return -0.5 * ((n - 1) * log(s2e) + log(denom) + (s2 - s2a * s1**2 / denom) / s2e + n * LOG_2PI)


def marginal_logp(ssr, s1, n, sigma, sigma_unit, log=np.log):
    """The sum of :func:`unit_marginal_logp` over units; the squared residuals enter only
    through their total ``ssr``, which the model gets from sufficient statistics. Written with
    operators and ``log`` only, so it serves the PyMC graph (``log=pt.log``) and NumPy alike."""
    s2e, s2a = sigma**2, sigma_unit**2
    denom = s2e + n * s2a
    return -0.5 * ((n.sum() - len(n)) * log(s2e) + log(denom).sum()
                   + (ssr - (s2a * s1**2 / denom).sum()) / s2e + n.sum() * LOG_2PI)


def unit_conditional(s1, n, sigma, sigma_unit):
    """Mean and sd of α_i − (μ + x̄_i'λ) given the other parameters and the unit's residual sum
    ``s1`` over its ``n`` observations (the conjugate normal update)."""
    prec = 1.0 / sigma_unit**2 + n / sigma**2
    return (s1 / sigma**2) / prec, 1.0 / np.sqrt(prec)


class Block(NamedTuple):
    """A block of θ: the parameter's name, its columns of W (N, k) and their labels."""

    name: str
    cols: np.ndarray
    labels: list


class TwoWayModel(BayesModel):
    """Unit effects (marginal or non-centred), zero-sum year effects, controls, unit means,
    a likelihood; the treatment term is a hook.

    Everything but the unit deviations is linear in the parameters: the linear predictor is
    W·θ, where :meth:`design` lists the blocks of θ with their columns of W. A subclass changes
    the treatment term only: :meth:`effect_params` creates its parameters and
    :meth:`effect_design` gives their columns.

    With the marginal likelihood the data enter only through sufficient statistics computed
    once — W'W, W'y, y'y and the per-unit segment sums of W and y, the units that share a
    covariance pattern (treatment timing, periods, gaps) grouped into at most c(P+1) rows per
    pattern (:mod:`.panel_likelihood`) — so a gradient costs O(P² + rows·P) with rows ≤
    min(units, patterns·c(P+1)) for P ≈ 20 columns, whatever the number of observations (on a
    balanced panel: whatever the number of units), and the compiled graph is a few dot products
    (fast to compile and to run).
    """

    def __init__(self, panel, spec, priors):
        super().__init__(panel, spec, priors)
        choice = self.spec.choice
        self.likelihood = choice("likelihood", "normal", LIKELIHOODS, self.name)
        self.unit_effects = choice("unit_effects", "marginal", UNIT_EFFECTS, self.name)
        self.unit_means = bool(self.spec.option("unit_means", True))
        where = f" ({self.spec.source})" if self.spec.source else ""
        if self.unit_effects == "marginal" and self.likelihood != "normal":
            raise SpecError(f"{self.name}: unit_effects = 'marginal' needs the normal likelihood "
                            f"(the Student-t marginal has no closed form); set unit_effects = "
                            f"'noncentered' or 'centered' for likelihood = '{self.likelihood}'{where}")
        self.effect = choice("effect", "unit", EFFECTS, self.name)
        self.errors = choice("errors", "iid", ERRORS, self.name)
        self.year_effects = choice("year_effects", "fixed", YEAR_EFFECTS, self.name)
        if self.errors == "ar1" and self.unit_effects != "marginal":
            raise SpecError(f"{self.name}: errors = 'ar1' needs unit_effects = 'marginal' (the AR(1) "
                            f"covariance is integrated out analytically); set errors = 'iid' for "
                            f"unit_effects = '{self.unit_effects}'{where}")
        # the canonical frame is sorted by unit, so each unit's rows are one contiguous block
        self.unit_start = np.flatnonzero(np.r_[True, np.diff(self.unit_idx) != 0])
        self.n_per_unit = np.diff(np.r_[self.unit_start, len(self.unit_idx)]).astype(float)
        #: units and their runs of consecutive periods (the AR(1) chains; a gap breaks a chain)
        self.layout = pl.UnitLayout.from_rows(self.unit_idx, self.time_idx)

    @property
    def marginal(self) -> bool:
        return self.unit_effects == "marginal"

    # ---- the treatment term (subclass hooks) -----------------------------------------------
    def effect_params(self) -> dict:
        """Create the treatment-effect parameters inside the model; returns name -> variable."""
        return {"tau_z": self.prior("tau_z", "tau")}

    def effect_design(self) -> list[Block]:
        """The treatment term's blocks of θ."""
        return [Block("tau_z", self.D[:, None], ["D"])]

    @property
    def effect_rows(self) -> np.ndarray:
        """d: the rows where a unit's own effect deviation t_i acts (τ_i = centre + t_i)."""
        return self.D

    def effect_centre(self, theta: np.ndarray) -> np.ndarray:
        """Centre of each unit's effect (S, units) from θ draws (S, P): here τ for every unit."""
        return np.repeat(self._block(theta, "tau_z"), self.panel.n_units, axis=1)

    def _block(self, theta: np.ndarray, name: str) -> np.ndarray:
        pos = 0
        for b in self.design:
            k = b.cols.shape[1]
            if b.name == name:
                return theta[:, pos:pos + k]
            pos += k
        raise KeyError(name)

    def assumptions(self) -> list[str]:
        out = self._two_way_assumptions(
            unit=("the treatment effect varies by unit: tau_i ~ N(tau, sigma_tau^2), sigma_tau learned; "
                  "tau is the mean of the unit effects, and its interval reflects how much "
                  "treated units disagree (as a unit-clustered SE does)"),
            common=("one treatment effect common to every unit (effect = 'common'): the interval "
                    "does not widen when treated units disagree"),
            unit_term=" and effect",
            fixed="year effects have a fixed wide zero-sum prior (the TWFE within comparison)",
            pooled=("year effects are partially pooled with a learned scale (year_effects = "
                    "'pooled'): they shrink, which moves tau away from the TWFE within estimate"))
        out.append("unit intercepts are random effects whose mean depends on the unit means of "
                   "the treatment and controls (Mundlak)" if self.unit_means else
                   "unit intercepts are random effects independent of the treatment (unit_means = false)")
        out.append("Gaussian errors" if self.likelihood == "normal" else "Student-t errors")
        return out

    def _two_way_assumptions(self, *, unit: str, common: str, unit_term: str, fixed: str,
                             pooled: str) -> list[str]:
        """The assumptions every two-way model states, by its options (effect, errors,
        year_effects), in the model's own words for its effect and its year effects."""
        out = [unit if self.effect == "unit" else common]
        if self.errors == "ar1":
            out.append("errors within a unit are AR(1) over consecutive periods (rho learned, "
                       "stationary); a gap in a unit's periods breaks the chain")
        else:
            out.append("errors are independent within a unit given its intercept"
                       + (unit_term if self.effect == "unit" else ""))
        if self.panel.time_effects:
            out.append(fixed if self.year_effects == "fixed" else pooled)
        return out

    # ---- shared machinery -------------------------------------------------------------------
    @property
    def controls_design(self) -> np.ndarray:
        """The controls' columns of θ's design: standardised (the event study's: two-way demeaned)."""
        return self.X_z

    @cached_property
    def design(self) -> list[Block]:
        """Blocks of θ in order: μ, γ (year effects), β (controls), the effect, λ (unit means)."""
        n = len(self.df)
        blocks = [Block("mu", np.ones((n, 1)), ["1"])]
        if self.panel.time_effects:
            blocks.append(Block("gamma", np.eye(self.panel.n_periods)[self.time_idx], self.coords()["year"]))
        if self.controls_design.shape[1]:
            blocks.append(Block("beta", self.controls_design, list(self.panel.controls)))
        blocks += self.effect_design()
        if self.unit_means:
            blocks.append(self._unit_mean_block(blocks))
        return blocks

    def _unit_mean_block(self, blocks: list[Block]) -> Block:
        """Mundlak's device: unit means of the time-varying regressors (controls and treatment
        columns), dropping any that add no rank (a group's D-means sum to the D-mean)."""
        cols, labels = [], []
        for b in blocks:
            if b.name in ("mu", "gamma"):
                continue
            for j, lab in enumerate(b.labels):
                cols.append(np.add.reduceat(b.cols[:, j], self.unit_start) / self.n_per_unit)
                labels.append(f"mean({lab})")
        keep, basis = [], np.ones((self.panel.n_units, 1))
        for j, c in enumerate(cols):
            trial = np.column_stack([basis, c])
            if np.linalg.matrix_rank(trial) > basis.shape[1]:
                keep.append(j)
                basis = trial
        self.unit_mean_labels = [labels[j] for j in keep]
        per_unit = np.column_stack([cols[j] for j in keep]) if keep else np.zeros((self.panel.n_units, 0))
        return Block("lambda", per_unit[self.unit_idx], self.unit_mean_labels)

    @cached_property
    def W(self) -> np.ndarray:
        return np.hstack([b.cols for b in self.design])

    @cached_property
    def W_unit(self) -> np.ndarray:
        """Per-unit value of the unit-constant columns (μ and the unit means), zero elsewhere:
        (μ + x̄_i'λ) = (W_unit θ)_i, the centre of unit i's effect."""
        out = np.zeros((self.panel.n_units, self.W.shape[1]))
        pos = 0
        for b in self.design:
            if b.name in ("mu", "lambda"):
                out[:, pos:pos + b.cols.shape[1]] = b.cols[self.unit_start]
            pos += b.cols.shape[1]
        return out

    def theta_draws(self, post) -> np.ndarray:
        """θ from posterior draws ``post`` (an xarray Dataset): shape (S, P), S = chains × draws."""
        S = post.sizes["chain"] * post.sizes["draw"]
        return np.hstack([post[b.name].to_numpy().reshape(S, -1) for b in self.design])

    def coords(self) -> dict:
        c = super().coords()
        if getattr(self, "unit_mean_labels", None):
            c["unit_mean"] = self.unit_mean_labels
        return c

    @cached_property
    def statistics(self) -> pl.PanelStatistics:
        """The data's sufficient statistics for the marginal likelihood (computed once)."""
        return pl.PanelStatistics(self.layout, self.y_z, self.W, self.effect_rows)

    def likelihood_data(self) -> dict[str, np.ndarray]:
        """The ``pm.Data`` values of the marginal likelihood (names without the ``stat__``
        prefix): pass ``{f"stat__{k}": v}`` to ``compiled.with_data`` to refit on other data."""
        arr = self.statistics.arrays(None if self.errors == "ar1" else 0.0)
        # what the graph does not read is left out (a with_data on it would fail): the effect's
        # terms of the common-effect model (σ_τ = 0) and the run counts of the iid model (ρ = 0)
        drop = (("a1d", "add") if self.effect == "common" else ()) + (("n_runs",) if self.errors == "iid" else ())
        return {k: v for k, v in arr.items() if k not in drop}

    def build(self) -> pm.Model:
        W, y = self.W, self.y_z  # computes the design (and the unit-mean labels) first
        with pm.Model(coords=self.coords()) as m:
            p = {"mu": self.prior("mu", "intercept")}
            p.update(self.year_effect_params())
            if self.X_z.shape[1]:
                p["beta"] = self.prior("beta", dims="control")
            p.update(self.effect_params())
            if self.unit_means:
                # coefficients of the unit means: slopes on the standardised scale, as β
                p["lambda"] = self.prior("lambda", "beta", dims="unit_mean")
            theta = pt.concatenate([pt.atleast_1d(p[b.name]) for b in self.design])
            sigma_unit = self.prior("sigma_unit")
            sigma = self.prior("sigma")
            sigma_effect = self.prior("sigma_effect") if self.effect == "unit" else 0.0
            if self.marginal:
                rho = self.prior("rho") if self.errors == "ar1" else 0.0
                # the statistics as pm.Data: one compiled model serves another panel of the same
                # shapes (placebo refits: refit.with_data(compiled, ...))
                arr = {**self.statistics.arrays(None if self.errors == "ar1" else 0.0),
                       **{k: pm.Data(f"stat__{k}", v) for k, v in self.likelihood_data().items()}}
                # a potential, not an observed variable: the density is per unit, not per
                # observation; log_likelihood() and posterior_predictive() below stand in for
                # what PyMC would derive from an observed variable
                pm.Potential("y_marginal", pl.logp_from(arr, theta, sigma, sigma_unit, sigma_effect, rho,
                                                        constant_rho=self.errors == "iid", log=pt.log,
                                                        dot=pt.dot, stack=pt.stack))
            else:
                centre = pt.dot(self.W_unit, theta)  # μ + x̄_i'λ
                if self.unit_effects == "centered":
                    alpha = pm.Normal("alpha", centre, sigma_unit, dims="unit")
                else:
                    z = pm.Normal("unit_z", 0.0, 1.0, dims="unit")
                    alpha = pm.Deterministic("alpha", centre + sigma_unit * z, dims="unit")
                mean = pt.dot(W, theta) + (alpha - centre)[self.unit_idx]
                if self.effect == "unit":
                    # the unit effects' deviations, non-centred (most units have few treated rows)
                    z_eff = pm.Normal("effect_z", 0.0, 1.0, dims="unit")
                    mean = mean + (sigma_effect * z_eff)[self.unit_idx] * self.effect_rows
                if self.likelihood == "student_t":
                    nu = self.prior("nu")
                    pm.StudentT("y", nu=nu, mu=mean, sigma=sigma, observed=y, dims="obs")
                else:
                    pm.Normal("y", mu=mean, sigma=sigma, observed=y, dims="obs")
        return m

    # ---- the generative process (simulation-based calibration) -------------------------------
    def simulate(self, params: dict, rng, noise_scale: float = 1.0, *, latents: bool = False):
        """An outcome (standardised) drawn from the model's likelihood at ``params`` (one draw of
        the free parameters, e.g. from the prior), on this panel's design:

        y_z = Wθ + a_i + t_i·d_it + ε_it,  a_i ~ N(0, σ_α²),  t_i ~ N(0, σ_τ²) (effect = "unit",
        on the rows ``effect_rows``), ε within a unit iid N(0, σ²) or stationary AR(1)(ρ, σ²) over
        its runs of consecutive periods (t_ν(0, σ) for the Student-t likelihood).

        With the sampled parameterisations the deviations are the parameters' own (``alpha`` or
        ``unit_z``, ``effect_z``). ``noise_scale`` multiplies σ (≠ 1: a deliberately wrong
        simulator). ``latents=True`` also returns the unit effects drawn, as the posterior names
        them (``alpha``; ``tau_unit_z`` with unit effects)."""
        theta = np.concatenate([np.atleast_1d(np.asarray(params[b.name], dtype=float)).ravel()
                                for b in self.design])
        n_units = self.panel.n_units
        sigma_unit, sigma = float(params["sigma_unit"]), float(params["sigma"]) * noise_scale
        sigma_effect = float(params["sigma_effect"]) if self.effect == "unit" else 0.0
        rho = float(params["rho"]) if self.errors == "ar1" else 0.0
        centre = self.W_unit @ theta
        if "alpha" in params:
            a = np.asarray(params["alpha"], dtype=float) - centre
        elif "unit_z" in params:
            a = sigma_unit * np.asarray(params["unit_z"], dtype=float)
        else:
            a = sigma_unit * rng.standard_normal(n_units)
        if "effect_z" in params:
            t = sigma_effect * np.asarray(params["effect_z"], dtype=float)
        else:
            t = sigma_effect * rng.standard_normal(n_units)
        if self.likelihood == "student_t":
            eps = sigma * rng.standard_t(float(params["nu"]), size=len(self.df))
        else:
            eps = pl.simulate_ar1(self.layout, np.array([[rho]]), np.array([[sigma]]), rng)[0]
        y = self.W @ theta + a[self.unit_idx] + t[self.unit_idx] * self.effect_rows + eps
        if not latents:
            return y
        out = {"alpha": centre + a}
        if self.effect == "unit":
            out["tau_unit_z"] = self.effect_centre(theta[None, :])[0] + t
        return y, out

    # ---- after sampling (marginal parameterisation) -----------------------------------------
    def _chunks(self, S: int):
        """Slices of draws: CHUNK at most, fewer on a long panel (draws × rows bounded)."""
        step = pl.draw_chunk(len(self.y_z), CHUNK)
        for start in range(0, S, step):
            yield slice(start, min(start + step, S))

    def _scalars(self, post, *names) -> list[np.ndarray]:
        """Scalar draws as (S, 1); a parameter the model does not have (ρ of the iid model,
        σ_τ of the common-effect model) is zero."""
        S = post.sizes["chain"] * post.sizes["draw"]
        return [post[n].to_numpy().reshape(-1, 1) if n in post.data_vars else np.zeros((S, 1))
                for n in names]

    def _terms(self, theta: np.ndarray, rho: np.ndarray):
        """Per-unit (q, s1, sd, a11, a1d, add) of the panel likelihood for draws θ (S_c, P): q
        from the rows' residuals, the rest from the per-unit statistics (no pass over the rows)."""
        r = self.y_z - theta @ self.W.T
        return (pl.residual_q(self.layout, r, rho), *self.statistics.unit_terms(theta, rho))

    def postprocess(self, idata, pm_model):
        """Draw α_i (and τ_i with unit-varying effects) from their exact joint conditional
        posterior (marginal parameterisation); τ_i is stored standardised as ``tau_unit_z``."""
        post = idata["posterior"].to_dataset()
        coords = {"chain": post["chain"], "draw": post["draw"], "unit": self.coords()["unit"]}
        shape = (post.sizes["chain"], post.sizes["draw"], -1)
        if not self.marginal:
            if self.effect == "unit":
                theta = self.theta_draws(post)
                sig_e, = self._scalars(post, "sigma_effect")
                z = post["effect_z"].to_numpy().reshape(len(theta), -1)
                idata["posterior"]["tau_unit_z"] = xr.DataArray(
                    (self.effect_centre(theta) + sig_e * z).reshape(shape),
                    dims=("chain", "draw", "unit"), coords=coords)
            return idata
        theta = self.theta_draws(post)
        sigma, sigma_unit, sig_e, rho = self._scalars(post, "sigma", "sigma_unit", "sigma_effect", "rho")
        rng = draws_rng(idata, sigma)
        S, n_units = len(theta), self.panel.n_units
        store = S * n_units <= UNIT_DRAW_MAX_VALUES
        if store:
            alpha = np.empty((S, n_units))
            tau_unit = np.empty_like(alpha)
        else:
            # per-unit posterior mean and sd only, Rao-Blackwellised (from the conditional means
            # and variances, no random draws) over evenly thinned draws: running sums
            keep = np.unique(np.linspace(0, S - 1, min(S, UNIT_SUMMARY_DRAWS)).astype(int))
            theta, sigma, sigma_unit, sig_e, rho = (x[keep] for x in (theta, sigma, sigma_unit, sig_e, rho))
            sums = np.zeros((6, n_units))
        # the deviations' conditionals come from the per-unit statistics: no pass over the rows
        step = max(1, min(CHUNK, UNIT_DRAW_MAX_VALUES // (10 * n_units)))
        for start in range(0, len(theta), step):
            sl = slice(start, min(start + step, len(theta)))
            s1, sd, a11, a1d, add = self.statistics.unit_terms(theta[sl], rho[sl])
            centre_a, centre_t = theta[sl] @ self.W_unit.T, self.effect_centre(theta[sl])
            if store:
                dev = pl.draw_deviations(s1, sd, a11, a1d, add, sigma[sl], sigma_unit[sl], sig_e[sl], rng)
                alpha[sl], tau_unit[sl] = centre_a + dev[..., 0], centre_t + dev[..., 1]
                continue
            mean, (l11, l21, l22) = pl.deviation_moments(s1, sd, a11, a1d, add, sigma[sl], sigma_unit[sl],
                                                         sig_e[sl])
            a, t = centre_a + mean[..., 0], centre_t + mean[..., 1]
            sums += np.stack([a.sum(0), (a**2).sum(0), (l11**2).sum(0),
                              t.sum(0), (t**2).sum(0), (l21**2 + l22**2).sum(0)])
        if not store:
            # E = mean of the conditional means; Var = mean conditional variance + their variance
            n = len(theta)
            mean_a, mean_t = sums[0] / n, sums[3] / n
            sd_a = np.sqrt(np.maximum(sums[1] / n - mean_a**2, 0.0) + sums[2] / n)
            sd_t = np.sqrt(np.maximum(sums[4] / n - mean_t**2, 0.0) + sums[5] / n)
            ds = {"alpha_mean": mean_a, "alpha_sd": sd_a}
            if self.effect == "unit":
                ds |= {"tau_unit_z_mean": mean_t, "tau_unit_z_sd": sd_t}
            idata["unit_effects"] = xr.DataTree(xr.Dataset(
                {k: ("unit", v) for k, v in ds.items()}, coords={"unit": coords["unit"]},
                attrs={"note": f"{S} draws x {n_units} units exceed {UNIT_DRAW_MAX_VALUES:,} values: "
                               "alpha and tau_unit_z are stored as their posterior mean and sd per "
                               "unit, not per draw (UNIT_DRAW_MAX_VALUES in bayes/did.py), from "
                               f"{n} evenly thinned draws and the exact conditional mean and "
                               "variance of each unit's deviations given each draw"}))
            return idata
        idata["posterior"]["alpha"] = xr.DataArray(alpha.reshape(shape), dims=("chain", "draw", "unit"),
                                                   coords=coords)
        if self.effect == "unit":
            idata["posterior"]["tau_unit_z"] = xr.DataArray(tau_unit.reshape(shape),
                                                            dims=("chain", "draw", "unit"), coords=coords)
        return idata

    def log_likelihood(self, idata, pm_model):
        """Per-unit marginal log-likelihood (dims ``unit``): PSIS-LOO leaves one city out."""
        if not self.marginal:
            return super().log_likelihood(idata, pm_model)
        # a long panel: LOO on evenly thinned draws (the same for every chain)
        post = loo_draws(idata["posterior"].to_dataset(), len(self.y_z), LOO_MAX_VALUES, LOO_THIN_DRAWS)
        theta = self.theta_draws(post)
        sigma, sigma_unit, sig_e, rho = self._scalars(post, "sigma", "sigma_unit", "sigma_effect", "rho")
        ll = np.empty((len(theta), self.panel.n_units))
        for sl in self._chunks(len(theta)):
            terms = self._terms(theta[sl], rho[sl])
            ll[sl] = pl.unit_logp(*terms, self.layout.n, self.layout.n_runs, sigma[sl], sigma_unit[sl],
                                  sig_e[sl], rho[sl])
        return self.unit_log_likelihood(post, ll)

    def posterior_predictive(self, idata, pm_model, seed: int):
        """y (standardised) simulated from the draws including α (and τ_i), with AR(1) or iid
        errors, thinned to PPC_DRAWS_PER_CHAIN draws per chain (enough for the p-values, keeps
        posterior.nc small)."""
        if not self.marginal:
            return super().posterior_predictive(idata, pm_model, seed)
        n_rows = len(self.y_z)
        post = ppc_draws(idata["posterior"].to_dataset(), n_rows, PPC_DRAWS_PER_CHAIN, PPC_MAX_VALUES)
        theta = self.theta_draws(post)
        sigma, sigma_unit, sig_e, rho = self._scalars(post, "sigma", "sigma_unit", "sigma_effect", "rho")
        rng = np.random.default_rng(seed)
        if "alpha" in post.data_vars:
            deviation = post["alpha"].to_numpy().reshape(len(theta), -1) - theta @ self.W_unit.T
            t = (post["tau_unit_z"].to_numpy().reshape(len(theta), -1) - self.effect_centre(theta)
                 if "tau_unit_z" in post.data_vars else None)
        else:  # unit effects not stored per draw (a large panel): draw them for these draws
            s1, sd, a11, a1d, add = self.statistics.unit_terms(theta, rho)
            dev = pl.draw_deviations(s1, sd, a11, a1d, add, sigma, sigma_unit, sig_e, rng)
            deviation, t = dev[..., 0], (dev[..., 1] if self.effect == "unit" else None)
        y = np.empty((len(theta), n_rows))
        for sl in self._chunks(len(theta)):
            y[sl] = theta[sl] @ self.W.T + deviation[sl][:, self.unit_idx]
            if t is not None:
                y[sl] += t[sl][:, self.unit_idx] * self.effect_rows
        y += pl.simulate_ar1(self.layout, rho, sigma, rng)
        return xr.Dataset({self.observed: (("chain", "draw", "obs"),
                                           y.reshape(post.sizes["chain"], post.sizes["draw"], -1))})


@register("did")
class DIDModel(TwoWayModel):
    """The two-way DID with one treatment effect ``tau`` (module docstring)."""

    replication_section = "did"
    key_estimands = ("tau",)

    def estimands(self, idata):
        return E.dataset({"tau": E.scalar(idata["posterior"]["tau_z"].to_numpy() * self.y_sd)})

    def estimand_labels(self) -> dict:
        return {"tau": ("the mean of the unit-specific effects tau_i (population mean of "
                        "N(tau, sigma_tau^2)); frequentist counterpart: the mean of the unit effects of "
                        "the fully interacted TWFE regression with its between-unit SE")
                if self.effect == "unit" else
                ("the treatment effect common to all units, TWFE's estimand; frequentist "
                 "counterpart: TWFE with unit-clustered (CRV1) SE")}

