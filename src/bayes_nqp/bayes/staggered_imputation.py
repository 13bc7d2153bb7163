r"""The previous staggered model, kept as ``method = "imputation"`` of the staggered spec: the
heterogeneity-robust ATT by Bayesian imputation (Borusyak–Jaravel–Spiess, Gardner).

**Not robust to within-unit dependence**: the imputed :math:`Y(0)` of a unit's treated cells share
its serially correlated errors and its own effect, which this model ignores; on real panels its
placebo-law false-positive rate is 26% (castle doctrine) and 49% (Munnell) against a nominal 5%
(README, "Honest uncertainty"). The default staggered model is :mod:`.staggered` (extended TWFE
with unit-level effect deviations). This class is built by
:class:`~.staggered.StaggeredModel` when the spec says ``method = "imputation"``; it is not
registered under a name of its own.

Fit the model of the *untreated* outcome on the untreated observations only (never-treated units
and not-yet-treated periods, :math:`D_{it} = 0`):

.. math::

    y_{it}(0) = \alpha_i + \gamma_t + X_{it}\beta + \varepsilon_{it},\qquad
    \varepsilon_{it} \sim N(0, \sigma^2),

    \alpha_i \sim N(\mu_{g(i)}, \sigma_\alpha^2),\qquad
    \gamma \sim \mathrm{ZeroSumNormal}(\sigma_\gamma)\ (\text{when the map has time effects}),

where :math:`g(i)` is unit *i*'s cohort (first treated period, or "never"). Spec option
``year_effects = "fixed"`` replaces the pooled year effects by the prior set's wide zero-sum
``year`` prior (no learned scale, no shrinkage; did's default); ``"pooled"`` is the default. A treated unit's
:math:`\alpha_i` is identified by its own pre-treatment periods; pooling it towards the mean of
*its cohort* (not of all units) keeps the shrinkage from pulling treated units towards the
never-treated level, which would bias the imputed :math:`Y(0)` when cohorts differ in level.

Then impute, draw by draw, the untreated outcome of every treated cell and take the difference:

.. math::

    \tau_{it}^{(s)} = y_{it} - E\big[y_{it}(0) \mid \theta^{(s)}\big]
                    = y_{it} - \big(\alpha_i^{(s)} + \gamma_t^{(s)} + X_{it}\beta^{(s)}\big),
    \qquad D_{it} = 1.

By default (spec option ``imputation = "mean"``) the conditional mean is used, not a fresh noise
draw: every estimand averages :math:`\tau_{it}` over many cells, where the idiosyncratic noise
of :math:`y_{it}(0)` averages out, and the uncertainty reported is that of the imputation (of
:math:`\alpha_i, \gamma_t, \beta`): the posterior of the *expected* effect in those cells.
``imputation = "predictive"`` also draws :math:`\varepsilon_{it} \sim N(0, \sigma^2)` for each
treated cell, :math:`\tau_{it} = y_{it} - (\alpha_i + \gamma_t + X_{it}\beta + \varepsilon_{it})`:
the posterior of the *sample* ATT of exactly these cells, wider by about
:math:`\sigma/\sqrt{n_{cells}}` (it matters for an event time with few cells). Because the
model is linear, each average is computed from the parameter draws and cell weights directly.

Cells that cannot be imputed are dropped with a logged warning and counted in ``extras``: those
of a unit with no untreated period (treated from the first period on), and those in a period in
which no unit is untreated (no never-treated units left, :math:`\gamma_t` unidentified).

Parameterisation (measured on a panel simulated like the demo, where the 2012 cohort has a
single untreated year). With :math:`\alpha_i` sampled (centred), the unit effects of a cohort and the year effects
of its few pre-treatment years form a ridge of ~90 parameters that nutpie's diagonal mass matrix
follows slowly (bulk ESS of ``att`` ≈ 160 in 2 × 500 draws, R-hat 1.03). So :math:`\alpha_i` is
integrated out analytically: unit *i* with :math:`n_i` untreated observations and residuals
:math:`r_{it} = y_{it} - (\mu_{g(i)} + \gamma_t + X_{it}\beta)` has
:math:`r_i \sim MVN(0, \sigma^2 I + \sigma_\alpha^2 \mathbf 1 \mathbf 1')`, whose log density
needs only :math:`\sum_t r_{it}` and :math:`\sum_t r_{it}^2` (the same formula as the did model's
marginal parameterisation). After sampling, :math:`\alpha_i` is drawn from its exact conditional
posterior :math:`N\big(\mu_{g(i)} + \frac{\sum_t r_{it}/\sigma^2}{1/\sigma_\alpha^2 + n_i/\sigma^2},
(1/\sigma_\alpha^2 + n_i/\sigma^2)^{-1}\big)` and stored as ``alpha`` (dims ``unit``), so the
imputation uses joint posterior draws. The pointwise log-likelihood is per unit (LOO leaves one
city out). The controls enter within-transformed on the untreated sample (two-way demeaned by
exact sparse least squares, extended to the treated cells with the same fitted effects), which
leaves :math:`\beta` and the imputed :math:`y_{it}(0)` unchanged and decorrelates
:math:`\beta` from the year effects.

Scale: the outcome and controls are standardised (mean 0, sd 1 over all observations); priors
(prior-set names ``intercept`` for the cohort means :math:`\mu_g`, ``sigma_unit``,
``sigma_time``, ``beta``, ``sigma``) live on that scale.

Estimands (outcome's original scale; averages over imputable treated cells):

* ``att``: all treated cells;
* ``att[g=<cohort>]``: the treated cells of each cohort;
* ``att[e=<k>]``: the treated cells *k* = t − cohort periods after adoption, each *k* observed.

Refits on other treatment timings (placebo laws). With spec option ``cohort_levels = "panel"``
there is a cohort mean :math:`\mu_g` for every period of the panel but the first (and "never"),
whether or not a unit adopts then; a level without units enters no likelihood term, so its
:math:`\mu_g` keeps its prior and the posterior of everything else is the same as with the
observed cohorts only (the default, ``"observed"``). Everything else that depends on the timing
(the untreated rows, their sufficient statistics, the controls' demeaning, the treated cells'
averaging weights) is data of fixed shape, not graph structure, and the model has no
coordinate of the untreated rows; so every timing of one panel (same units, periods and
controls) is one model structure, which the engine's cache (:func:`bayes_nqp.engine.compiled_model`)
compiles once and refits with the new data (``placebo_options``, applied by
:func:`bayes_nqp.calibration.placebo_spec`). Same seed, same posterior as a fresh compilation.

``extras()``: ``imputation`` (counts of cells used and dropped) and ``twfe`` (the TWFE DID
coefficient of the replication, with controls when the map has them, for reference).
"""

from __future__ import annotations

import logging
import zlib

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import scipy.sparse as sp
import xarray as xr

from .. import estimands as E
from ..errors import ModelError
from .base import PPC_DRAWS_PER_CHAIN, BayesModel, draws_rng, even_draws
from . import panel_likelihood as pl
from .algebra import FixedEffects
from .did import ERRORS, YEAR_EFFECTS
from .event_study import label

log = logging.getLogger(__name__)

#: posterior draws processed at once after sampling (draws × rows arrays stay small)
CHUNK = 250
IMPUTATIONS = ("mean", "predictive")
#: which cohorts get a mean μ_g (spec option ``cohort_levels``): "observed" — the cohorts of the
#: panel's treatment timing; "panel" — one for every period of the panel but the first, and
#: "never" (a level no unit adopts in has only its prior, so the other parameters' posterior is
#: unchanged), so the model's structure does not depend on the timing
COHORT_LEVELS = ("observed", "panel")


def _onehot(idx: np.ndarray, n: int):
    """Sparse rows × n indicator matrix of ``idx``."""
    return sp.csr_matrix((np.ones(len(idx)), (np.arange(len(idx)), idx)), shape=(len(idx), n))



def twfe_reference(panel, replication: dict | None) -> dict:
    """The TWFE DID coefficient of the replication (with controls when the panel has them) that
    the staggered models show for reference in ``extras["twfe"]``; run here when the comparison
    ran without the did section (fast). Its failure is reported in the entry, not raised."""
    key = "did_controls" if panel.controls else "did"
    rep = replication or {}
    try:
        if not rep.get(key):
            from ..frequentist import replicate

            rep = replicate("did", panel)
        return {**rep[key], "source": f"replication '{key}' (TWFE DID)"}
    except Exception as exc:  # a reference number: its failure is reported, not fatal
        log.warning("staggered: TWFE reference failed: %s", exc)
        return {"error": str(exc)}

class ImputationStaggeredModel(BayesModel):
    """The imputation estimator (module docstring); built through ``StaggeredModel``."""

    name = "staggered"
    needs = ("outcome", "treatment", "staggered")
    replication_section = "event_study"  # its callaway_santanna entry is the comparison
    key_estimands = ("att",)
    #: spec options of the placebo refits (calibration.placebo_task, bench_honest.py): placebo
    #: panels differ only in the treatment timing, and with a cohort mean for every period of the
    #: panel they share one model structure (one compilation; the data swapped in by the engine)
    placebo_options = {"cohort_levels": "panel"}

    def __init__(self, panel, spec, priors):
        super().__init__(panel, spec, priors)
        choice = self.spec.choice
        self.imputation = choice("imputation", "mean", IMPUTATIONS, "staggered")
        self.errors = choice("errors", "iid", ERRORS, "staggered")
        # "pooled" (default): ZeroSumNormal with a learned scale, as before; "fixed": the prior
        # set's wide zero-sum "year" prior (no shrinkage of the year effects, did's default)
        self.year_effects = choice("year_effects", "pooled", YEAR_EFFECTS, "staggered")
        self.cohort_support = choice("cohort_levels", "observed", COHORT_LEVELS, "staggered")
        df = self.df
        D = self.D.astype(bool)
        untreated = np.flatnonzero(~D)
        units_ok = np.unique(self.unit_idx[untreated])
        times_ok = np.unique(self.time_idx[untreated])
        treated = np.flatnonzero(D)
        no_unit = ~np.isin(self.unit_idx[treated], units_ok)
        no_time = ~np.isin(self.time_idx[treated], times_ok) if panel.time_effects else np.zeros(len(treated), bool)
        self.dropped_units = sorted({str(u) for u in df["unit"].to_numpy()[treated[no_unit]]})
        self.dropped_times = [label(t) for t in np.unique(df["time"].to_numpy()[treated[no_time & ~no_unit]])]
        if self.dropped_units:
            log.warning("staggered: %d treated unit(s) have no untreated period, so their Y(0) "
                        "cannot be imputed; their cells are dropped: %s", len(self.dropped_units),
                        ", ".join(self.dropped_units[:10]) + (" ..." if len(self.dropped_units) > 10 else ""))
        if self.dropped_times:
            log.warning("staggered: no unit is untreated in period(s) %s, so the year effect is not "
                        "identified there; those treated cells are dropped", ", ".join(self.dropped_times))
        self.cells = treated[~(no_unit | no_time)]
        if len(self.cells) == 0:
            raise ModelError("staggered: no treated cell can be imputed (every treated unit is "
                             "treated from its first period, or no unit is untreated when they are)")
        self.rows = untreated
        # the fit sample's own unit / year indices (units without an untreated period are absent)
        self.fit_units, self.fit_times = units_ok, times_ok
        self.u_fit = np.searchsorted(units_ok, self.unit_idx)
        self.t_fit = np.searchsorted(times_ok, self.time_idx)
        # the frame is sorted by unit, so each unit's untreated rows form one contiguous block
        self.u_rows = self.u_fit[untreated]
        self.unit_start = np.flatnonzero(np.r_[True, np.diff(self.u_rows) != 0])
        self.n_per_unit = np.diff(np.r_[self.unit_start, len(self.u_rows)]).astype(float)
        #: the untreated rows' units and runs of consecutive periods (of the panel's grid: a
        #: dropped period is a gap that breaks the AR(1) chain)
        self.layout = pl.UnitLayout.from_rows(self.u_rows, self.time_idx[untreated])

        # cohort of every unit in the fit sample; "never" for never-treated units
        coh = df.groupby("unit_idx")["cohort"].first().reindex(units_ok)
        self.cohort_labels = ["never" if pd.isna(c) else label(c) for c in coh]
        levels = set(self.cohort_labels)
        if self.cohort_support == "panel":
            # every period but the first (a unit adopting then has no untreated row to impute from)
            levels |= {"never", *(label(t) for t in panel.times[1:])}
        self.cohort_levels = sorted(levels, key=lambda c: (c != "never", 0.0 if c == "never" else float(c)))
        self.unit_cohort = np.array([self.cohort_levels.index(c) for c in self.cohort_labels])

        fe = FixedEffects(self.u_fit, self.t_fit, time_effects=panel.time_effects, rows=untreated)
        self.X_w = self.X_z
        if self.X_z.shape[1]:
            # demeaned on the untreated rows; the same fitted effects carry over to the treated
            # cells (NaN in the dropped ones, which nothing reads)
            coef = fe.fit(self.X_z[untreated])
            usable = np.sort(np.r_[untreated, self.cells])
            self.X_w = np.full_like(self.X_z, np.nan)
            self.X_w[usable] = self.X_z[usable] - fe.fitted(coef, self.u_fit[usable], self.t_fit[usable])

        # averaging weights of each estimand over the imputable treated cells
        y_cells = df["y"].to_numpy(float)[self.cells]
        rel = df["rel_time"].to_numpy()[self.cells]
        cohort = df["cohort"].to_numpy()[self.cells]
        groups = {"att": np.ones(len(self.cells), bool)}
        groups.update({f"att[g={label(g)}]": cohort == g for g in np.unique(cohort)})
        groups.update({f"att[e={int(e)}]": rel == e for e in np.unique(rel)})
        self.groups = groups
        #: the estimands' coordinates, in the order of ``groups``: att, then by cohort and event time
        self.cohorts = [label(g) for g in np.unique(cohort)]
        self.event_times = [int(e) for e in np.unique(rel)]
        W = np.stack([m / m.sum() for m in groups.values()])            # estimands × cells
        self.W = W
        self.y_bar = W @ y_cells                                         # observed mean, original scale
        self.W_unit = _onehot(self.u_fit[self.cells], len(units_ok)).T.dot(W.T).T   # estimands × units
        self.W_time = (_onehot(self.t_fit[self.cells], len(times_ok)).T.dot(W.T).T
                       if panel.time_effects else None)                  # estimands × years
        self.X_bar = W @ self.X_w[self.cells]                            # estimands × controls
        self.n_cells = {k: int(m.sum()) for k, m in groups.items()}

    def coords(self) -> dict:
        times = self.panel.times[self.fit_times]
        c = {"unit": [str(u) for u in self.panel.units[self.fit_units]],
             "year": [int(t) if float(t).is_integer() else float(t) for t in times],
             "cohort": list(self.cohort_levels),
             "obs": self.rows}
        if self.panel.controls:
            c["control"] = list(self.panel.controls)
        return c

    def build(self) -> pm.Model:
        # no variable has the dimension "obs" (the untreated rows, which change with the
        # treatment timing): leaving it out keeps one structure for every timing of the panel
        coords = {k: v for k, v in self.coords().items() if k != "obs"}
        with pm.Model(coords=coords) as m:
            p = {"mu": self.prior("mu", "intercept", dims="cohort")}
            sigma_unit = self.prior("sigma_unit")
            p.update(self.year_effect_params())
            if self.X_w.shape[1]:
                p["beta"] = self.prior("beta", dims="control")
            sigma = self.prior("sigma")
            rho = self.prior("rho") if self.errors == "ar1" else 0.0
            theta = pt.concatenate([pt.atleast_1d(p[k]) for k in ("mu", "gamma", "beta") if k in p])
            # a potential: the density is per unit (α, and the AR(1) covariance, integrated out:
            # panel_likelihood with no unit effect, σ_τ = 0); log_likelihood and
            # posterior_predictive below stand in for what PyMC derives from an observed variable
            pm.Potential("y_marginal", self.statistics.logp(theta, sigma, sigma_unit, 0.0, rho, log=pt.log,
                                                            dot=pt.dot, stack=pt.stack))
        return m

    @property
    def W_rows(self) -> np.ndarray:
        """The untreated rows' design for θ = (μ by cohort, γ, β): y_z[rows] − W θ is the
        residual of :meth:`mean_without_unit`."""
        r = self.rows
        cols = [np.eye(len(self.cohort_levels))[self.unit_cohort[self.u_rows]]]
        if self.panel.time_effects:
            cols.append(np.eye(len(self.fit_times))[self.t_fit[r]])
        if self.X_w.shape[1]:
            cols.append(self.X_w[r])
        return np.hstack(cols)

    @property
    def statistics(self) -> pl.PanelStatistics:
        if not hasattr(self, "_statistics"):
            self._statistics = pl.PanelStatistics(self.layout, self.y_z[self.rows], self.W_rows,
                                                  np.zeros(len(self.rows)))
        return self._statistics

    def assumptions(self) -> list[str]:
        return ["method = 'imputation' (the previous default): its intervals are NOT robust to "
                "within-unit dependence (a unit's imputed Y(0) share its serially correlated "
                "errors; placebo-law false-positive rates 26-49% on real state panels); the "
                "default method = 'extended_twfe' carries them",
                "the untreated-outcome model is fitted on untreated cells only, so no "
                "unit-specific effect enters its likelihood; unit-varying effects are what the "
                "imputation averages over the treated cells",
                ("errors of the untreated outcome are AR(1) within a unit over consecutive "
                 "periods (rho learned); the imputed mean E[Y(0)] ignores the error's persistence "
                 "into the treated periods" if self.errors == "ar1" else
                 "errors of the untreated outcome are independent within a unit given its "
                 "intercept (errors = 'iid'): with serially correlated outcomes the imputed Y(0) "
                 "of a unit's treated cells share errors, and the ATT's interval can be too narrow"),
                ("year effects are partially pooled (ZeroSumNormal with a learned scale): with a "
                 "trend or a shock in the late (mostly treated) periods the shrunken year effects "
                 "bias the imputed Y(0)" if self.year_effects == "pooled" else
                 "year effects have a fixed wide zero-sum prior (year_effects = 'fixed'; no shrinkage)"),
                "Gaussian errors"]

    def mean_without_unit(self, p):
        """μ_g(i) + γ_t + X̃β on the untreated rows, from PyMC variables or draws (S, ...)."""
        eta = p["mu"][..., self.unit_cohort[self.u_rows]]
        if "gamma" in p:
            eta = eta + p["gamma"][..., self.t_fit[self.rows]]
        if "beta" in p:
            eta = eta + p["beta"] @ self.X_w[self.rows].T
        return eta

    def _draws(self, post) -> dict:
        """Posterior draws as (S, ...) arrays; scalars as (S, 1)."""
        out = {}
        for name in ("mu", "gamma", "beta", "sigma", "sigma_unit", "alpha", "rho"):
            if name in post.data_vars:
                x = post[name].to_numpy()
                x = x.reshape((-1,) + x.shape[2:])
                out[name] = x[:, None] if x.ndim == 1 else x
        return out

    def _terms(self, d: dict, sl: slice):
        """Per-unit terms of the panel likelihood for the draws ``sl`` (see panel_likelihood)."""
        resid = self.y_z[self.rows] - self.mean_without_unit({k: v[sl] for k, v in d.items()})
        rho = d["rho"][sl] if "rho" in d else np.zeros((resid.shape[0], 1))
        return pl.residual_terms(self.layout, resid, np.zeros(len(self.rows)), rho), rho

    def postprocess(self, idata, pm_model):
        post = idata["posterior"]
        n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
        d = self._draws(post)
        S = n_chain * n_draw
        rng = draws_rng(idata, d["sigma"])
        alpha = np.empty((S, len(self.fit_units)))
        step = pl.draw_chunk(len(self.rows), CHUNK)  # draws × rows of one chunk bounded
        for start in range(0, S, step):
            sl = slice(start, min(start + step, S))
            (_, s1, sd, a11, a1d, add), _ = self._terms(d, sl)
            dev = pl.draw_deviations(s1, sd, a11, a1d, add, d["sigma"][sl], d["sigma_unit"][sl], 0.0, rng)
            alpha[sl] = d["mu"][sl][:, self.unit_cohort] + dev[..., 0]
        idata["posterior"]["alpha"] = xr.DataArray(
            alpha.reshape(n_chain, n_draw, -1), dims=("chain", "draw", "unit"),
            coords={"chain": post["chain"], "draw": post["draw"], "unit": self.coords()["unit"]})
        return idata

    def log_likelihood(self, idata, pm_model):
        post = idata["posterior"]
        d = self._draws(post)
        S = post.sizes["chain"] * post.sizes["draw"]
        ll = np.empty((S, len(self.fit_units)))
        step = pl.draw_chunk(len(self.rows), CHUNK)
        for start in range(0, S, step):
            sl = slice(start, min(start + step, S))
            terms, rho = self._terms(d, sl)
            ll[sl] = pl.unit_logp(*terms, self.layout.n, self.layout.n_runs, d["sigma"][sl],
                                  d["sigma_unit"][sl], 0.0, rho)
        return self.unit_log_likelihood(post, ll)

    def posterior_predictive(self, idata, pm_model, seed: int):
        post = idata["posterior"]
        thin = even_draws(post, PPC_DRAWS_PER_CHAIN)
        d = self._draws(thin)
        rng = np.random.default_rng(seed)
        mean = (self.mean_without_unit(d) - d["mu"][:, self.unit_cohort[self.u_rows]]
                + d["alpha"][:, self.u_rows])
        rho = d["rho"] if "rho" in d else np.zeros((mean.shape[0], 1))
        y = mean + pl.simulate_ar1(self.layout, rho, d["sigma"], rng)
        return xr.Dataset({self.observed: (("chain", "draw", "obs"),
                                           y.reshape(thin.sizes["chain"], len(keep), -1))},
                          coords={"obs": self.rows})

    def simulate(self, params: dict, rng, noise_scale: float = 1.0, *, latents: bool = False):
        """An outcome (standardised) from the untreated-outcome model at ``params``:
        α_i ~ N(μ_g(i), σ_α²) for every unit with an untreated period, and on the untreated rows
        y_z = α_i + γ_t + X̃β + ε, ε iid N(0, σ²) or stationary AR(1)(ρ, σ²) over the unit's
        untreated run (the likelihood's generative process). The treated cells get the same
        untreated mean plus iid noise (no effect): the model does not read them, and the
        estimands' truth (y − E[y(0)], from the same simulated y) is exact whatever they hold.
        ``noise_scale`` multiplies σ; ``latents=True`` also returns ``alpha``."""
        sigma = float(params["sigma"]) * noise_scale
        rho = float(params["rho"]) if self.errors == "ar1" else 0.0
        mu = np.atleast_1d(np.asarray(params["mu"], dtype=float))
        alpha = mu[self.unit_cohort] + float(params["sigma_unit"]) * rng.standard_normal(len(self.fit_units))
        n = len(self.df)
        in_fit = np.isin(self.unit_idx, self.fit_units)
        mean = np.zeros(n)
        mean[in_fit] = alpha[self.u_fit[in_fit]]
        if self.panel.time_effects and "gamma" in params:
            gamma = np.asarray(params["gamma"], dtype=float)
            ok = np.isin(self.time_idx, self.fit_times)
            mean[ok] += gamma[self.t_fit[ok]]
        if self.X_w.shape[1]:
            xb = self.X_w @ np.asarray(params["beta"], dtype=float)
            mean += np.where(np.isfinite(xb), xb, 0.0)
        y = mean + sigma * rng.standard_normal(n)
        y[self.rows] = mean[self.rows] + pl.simulate_ar1(self.layout, np.array([[rho]]),
                                                          np.array([[sigma]]), rng)[0]
        return (y, {"alpha": alpha}) if latents else y

    def observed_values(self) -> np.ndarray:
        """What the posterior predictive draws are compared with: the untreated rows."""
        return self.y_z[self.rows]

    # ---- imputation ---------------------------------------------------------------------------
    def estimands(self, idata):
        post = idata["posterior"]
        shape = (post.sizes["chain"], post.sizes["draw"])
        y0 = self.flat(idata, "alpha") @ self.W_unit.T                  # draws × estimands
        if self.W_time is not None:
            y0 = y0 + self.flat(idata, "gamma") @ self.W_time.T
        if self.X_w.shape[1]:
            y0 = y0 + self.flat(idata, "beta") @ self.X_bar.T
        if self.imputation == "predictive":
            y0 = y0 + self._noise_means(self.flat(idata, "sigma"))
        tau = self.y_bar - (self.y_mean + self.y_sd * y0)
        tau = tau.reshape(shape + (-1,))
        nc = len(self.cohorts)
        return E.dataset({
            "att": E.scalar(tau[..., 0]),
            "att_cohort": E.indexed(tau[..., 1:1 + nc], "cohort", self.cohorts, "att[g={}]", stem="att"),
            "att_event": E.indexed(tau[..., 1 + nc:], "event_time", self.event_times, "att[e={}]", stem="att")})

    def _noise_means(self, sigma: np.ndarray) -> np.ndarray:
        """Each estimand's mean of per-cell noise draws ε_it ~ N(0, σ²): (draws × estimands)."""
        # seeded from the draws, like alpha: the same posterior gives the same estimands
        rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(sigma).tobytes()) + 1)
        out = np.empty((len(sigma), len(self.W)))
        for start in range(0, len(sigma), CHUNK):
            sl = slice(start, min(start + CHUNK, len(sigma)))
            eps = rng.standard_normal((sl.stop - sl.start, len(self.cells))) * sigma[sl, None]
            out[sl] = eps @ self.W.T
        return out

    def extras(self, idata, draws, replication=None):
        out = {"imputation": {
            "treated_cells": int(self.D.sum()), "imputed_cells": len(self.cells),
            "untreated_obs": len(self.rows), "cells_per_estimand": self.n_cells,
            "dropped_units": self.dropped_units, "dropped_periods": self.dropped_times,
            "method": "imputation", "imputation": self.imputation, "cohort_levels": self.cohort_support,
            "definition": ("tau_it = y_it − E[y_it(0) | θ] per posterior draw, averaged over the "
                           "treated cells of each estimand (no idiosyncratic noise draw)"
                           if self.imputation == "mean" else
                           "tau_it = y_it − (E[y_it(0) | θ] + ε_it), ε_it ~ N(0, σ²) per posterior "
                           "draw and cell, averaged over the treated cells of each estimand")}}
        out["twfe"] = twfe_reference(self.panel, replication)
        return out
