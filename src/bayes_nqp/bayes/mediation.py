r"""Bayesian mediation: one joint model of every mediator and the outcome, with unit and time effects.

.. math::

    M_{k,it} &= \alpha^k_i + \gamma^k_t + a_k D_{it} + X_{it}\beta_k + e_{k,it},
        \qquad e_{k,it} \sim N(0, \sigma_k^2),\quad k = 1..K \\
    Y_{it} &= \alpha_i + \gamma_t + c' D_{it} + \textstyle\sum_k b_k M_{k,it} + X_{it}\beta + e_{it},
        \qquad e_{it} \sim N(0, \sigma^2)

The fact to know first: :math:`b_k` is causal only under sequential ignorability (nothing
unmeasured moves both :math:`M_k` and :math:`Y`); the :math:`\rho`-sensitivity below says how
much such confounding the indirect effect survives.

**Scale.** :math:`Y`, every :math:`M_k` and the continuous controls are standardised (mean 0, sd 1);
:math:`D` stays 0/1. The priors ``a``, ``b``, ``tau`` (for :math:`c'`), ``beta``, ``sigma`` (and, with
``unit_effects = "pooled"``, ``intercept``, ``sigma_unit``, ``sigma_time``) from the prior set live
on that scale. The errors of the equations are independent (the mediator equations share their
regressors, so a correlation among the :math:`e_k` would not change :math:`a_k`).

**Unit and time effects** (spec option ``unit_effects``):

* ``"within"`` (default): fixed effects with flat priors, integrated out analytically. That is the
  within transformation :math:`W` (two-way demeaning on a balanced panel; on an unbalanced one the
  unit demeaning followed by the projection off the demeaned period dummies, which is exact), and a
  Gaussian likelihood with :math:`n_\text{eff} = n - N - (T-1)` degrees of freedom per equation,
  written with the cross products of :math:`W[y, M, D, X]` (a ``Potential``; its cost does not grow
  with :math:`n`). Consistent when the effects correlate with :math:`D` or :math:`X` (the pilot
  cities are not random), and the posterior has only :math:`(K+1)(k_X + 2) + K` parameters.
  Measured on the 287×12 demo (2 mediators, 5 controls, 4×1000 draws, 2 cores): about 20 s in
  all, every gate passed with bulk ESS above 5,000; ``"pooled"`` took about 75 s and failed the
  R-hat gate (1.12, a control's slope trading off against the unit effects it correlates with).
  LOO leaves one unit's whole block (outcome and mediators) out.
* ``"pooled"``: :math:`\alpha_i \sim N(\mu, \sigma_\text{unit}^2)` (centred, summing to zero
  around the intercept :math:`\mu`) and zero-sum :math:`\gamma_t \sim N(0, \sigma_\text{time}^2)`;
  assumes the effects are independent of :math:`D` and :math:`X` (random effects: it also uses the
  between-unit variation), and samples several hundred more parameters.

**Estimands** (original scales): ``a[<m>]`` (mediator units per unit of D), ``b[<m>]`` (outcome units
per mediator unit), ``indirect[<m>]`` = :math:`a_k b_k`, ``direct`` = :math:`c'`, ``total`` =
:math:`c' + \sum_k a_k b_k` (outcome units), ``prop_mediated[<m>]`` = :math:`a_k b_k / \text{total}`,
``rho_breakdown[<m>]`` (a constant). P(indirect > 0) is the ``p_positive`` of ``indirect[<m>]``.

**Sensitivity to mediator–outcome confounding** (Imai, Keele & Yamamoto 2010). Let
:math:`\rho = \operatorname{corr}(e_k, e)` in the *structural* equations. The regression of :math:`Y`
on :math:`M` (given :math:`D`, :math:`X`, the other mediators and the effects) then estimates
:math:`\tilde b_k = b_k + \rho\,\sigma_Y/\sigma_k` with residual sd :math:`\sigma = \sigma_Y\sqrt{1-\rho^2}`,
where :math:`\sigma_Y` is the structural error sd. The model's :math:`b_k, \sigma, \sigma_k` are
those of that regression, so per posterior draw

.. math::

    b_k(\rho) = b_k - \rho\,\frac{\sigma}{\sigma_k\sqrt{1-\rho^2}},\qquad
    \text{indirect}_k(\rho) = a_k\, b_k(\rho),

(IKY's Theorem 2 for the linear model, written in this model's parameters; scale-free, so it holds on
the standardised scale and is then rescaled). Only :math:`b_k` moves: :math:`a_k` does not depend on
:math:`\rho`, and confounding between :math:`e_k` and :math:`e` alone leaves the other mediators'
:math:`b_j` unbiased when the mediators' errors are independent. ``rho_grid`` (spec) gives the
reported curve (posterior mean and 95% equal-tailed interval per :math:`\rho`); ``rho_breakdown[<m>]``
is the smallest :math:`|\rho|`, signed in the direction that offsets the indirect effect
(:math:`\operatorname{sign}(\rho) = \operatorname{sign}(a_k)\operatorname{sign}(a_k b_k)`), at which that
interval first includes zero, found on a 0.001 grid (0 when the interval includes zero already).
"""

from __future__ import annotations

import logging

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from .. import estimands as E
from ..errors import ModelError, SpecError
from ..results import jsonable, param_entry
from .algebra import WithinTransform, within_regressors
from . import panel_likelihood as pl
from .base import BayesModel, loo_draws, ppc_draws, register

log = logging.getLogger(__name__)

#: fine grid step of ρ for the breakdown point (the reported curve uses the spec's rho_grid)
RHO_STEP = 0.001
RHO_MAX = 0.999


def complete_panel(panel, cols: list[str], what: str):
    """The panel restricted to rows where every column in ``cols`` is observed (logged)."""
    ok = panel.df[cols].notna().all(axis=1).to_numpy()
    if ok.all():
        return panel
    if not ok.any():
        raise ModelError(f"{what}: no row has all of {', '.join(cols)} observed")
    log.info("%s: dropping %d row(s) with missing values in %s", what, int((~ok).sum()), cols)
    return panel.subset(ok)


def rho_grid(option) -> np.ndarray:
    """The ρ values of the reported sensitivity curve: a table {start, stop, step} or a list."""
    if option is None:
        option = {"start": -0.5, "stop": 0.5, "step": 0.05}
    if isinstance(option, dict):
        try:
            start, stop, step = (float(option[k]) for k in ("start", "stop", "step"))
        except KeyError as exc:
            raise SpecError(f"rho_grid needs start, stop and step; {exc.args[0]} is missing") from None
        if step <= 0 or stop < start:
            raise SpecError(f"rho_grid: need step > 0 and stop ≥ start, got {option}")
        values = np.round(np.arange(start, stop + step / 2, step), 10)
    else:
        values = np.asarray(option, dtype=float)
    if values.size == 0 or (np.abs(values) >= 1).any():
        raise SpecError(f"rho_grid values must lie strictly between −1 and 1, got {values.tolist()}")
    return np.unique(np.r_[values, 0.0])


def indirect_under_rho(a, b, sigma, sigma_k, rho, scale: float = 1.0) -> np.ndarray:
    """Indirect-effect draws a·b(ρ), b(ρ) = b − ρσ/(σ_k√(1−ρ²)); (len(rho), draws) times ``scale``."""
    rho = np.atleast_1d(np.asarray(rho, dtype=float))
    adj = rho / np.sqrt(1.0 - rho ** 2)
    return scale * a[None, :] * (b[None, :] - adj[:, None] * (sigma / sigma_k)[None, :])


def rho_breakdown(a, b, sigma, sigma_k, scale: float = 1.0) -> float:
    """Smallest |ρ| (signed: the direction that offsets the effect) at which the 95% interval of
    the indirect effect includes zero; NaN when none below |ρ| = RHO_MAX does."""
    ab = a * b
    direction = np.sign(ab.mean()) * np.sign(a.mean())
    if direction == 0:
        return 0.0
    rho = direction * np.arange(0.0, RHO_MAX + RHO_STEP / 2, RHO_STEP)
    cur = indirect_under_rho(a, b, sigma, sigma_k, rho, scale)
    lo, hi = np.quantile(cur, [0.025, 0.975], axis=1)
    hit = np.flatnonzero((lo <= 0) & (hi >= 0))
    return float(rho[hit[0]]) if hit.size else float("nan")


@register("mediation")
class MediationModel(BayesModel):
    """Joint mediators–outcome model; see the module docstring for equations and scales."""

    needs = ("outcome", "treatment", "mediators")
    replication_section = "mediation"

    def __init__(self, panel, spec, priors):
        panel.require(*self.needs, what="the Bayesian mediation model")
        panel = complete_panel(panel, ["y", "D", *panel.mediators, *panel.controls],
                               "the Bayesian mediation model")
        super().__init__(panel, spec, priors)
        self.mediators = list(panel.mediators)
        self.effects = spec.option("unit_effects", "within")
        if self.effects not in ("within", "pooled"):
            raise SpecError(f"mediation: unit_effects must be 'within' or 'pooled', got {self.effects!r}")
        M = self.df[self.mediators].to_numpy(float)
        self.m_mean, self.m_sd = M.mean(axis=0), M.std(axis=0)
        const = [m for m, s in zip(self.mediators, self.m_sd) if s == 0]
        if const:
            raise ModelError(f"mediator(s) {const} are constant; there is nothing to mediate")
        self.M_z = (M - self.m_mean) / self.m_sd
        self.rho = rho_grid(spec.option("rho_grid"))
        self.key_estimands = tuple(f"indirect[{m}]" for m in self.mediators) + ("direct", "total")
        self._sensitivity: dict = {}
        if self.effects == "within":
            self.fe = WithinTransform(self.unit_idx, self.time_idx, panel.time_effects)
            self.Dw = within_regressors(self.fe, self.D[:, None], ["D (the treatment)"], "mediation")[:, 0]
            self.Xw = within_regressors(self.fe, self.X_z, self.panel.controls, "mediation")
            self._within_statistics()

    def _within_statistics(self) -> None:
        """W·y, W·M and the cross products Z'Z, Z = W[y, M, D, X], of the standardised data."""
        self.yw = self.fe(self.y_z)
        self.Mw = within_regressors(self.fe, self.M_z, self.mediators, "mediation")
        self.Z = np.column_stack([self.yw, self.Mw, self.Dw, self.Xw])
        self.ZZ = self.Z.T @ self.Z

    # ---- model ----------------------------------------------------------------------------
    def coords(self) -> dict:
        c = super().coords()
        c["mediator"] = self.mediators
        return c

    def build(self) -> pm.Model:
        within = self.effects == "within"
        with pm.Model(coords=self.coords()) as m:
            a = self.prior("a_z", "a", dims="mediator")
            sigma_m = self.prior("sigma_m", "sigma", dims="mediator")
            beta_m = self.prior("beta_m", "beta", dims=("control", "mediator")) if self.X_z.shape[1] else None
            tau = self.prior("tau_z", "tau")
            b = self.prior("b_z", "b", dims="mediator")
            sigma = self.prior("sigma")
            beta = self.prior("beta", dims="control") if self.X_z.shape[1] else None
            if within:
                pm.Potential("loglik", self._within_loglik(a, beta_m, tau, b, beta, sigma, sigma_m))
            else:
                self._pooled_likelihood(a, beta_m, tau, b, beta, sigma, sigma_m)
        return m

    def _within_loglik(self, a, beta_m, tau, b, beta, sigma, sigma_m):
        """Joint log-likelihood of the within-transformed equations from their cross products:
        each equation's residual is V_e·Z for a coefficient row V_e over Z = W[y, M, D, X], so its
        SSR is V_e Z'Z V_e' and the cost does not grow with n (nor does the compiled graph)."""
        K = len(self.mediators)
        cols_x = ([-beta_m.T] if beta_m is not None else [])
        V_m = pt.concatenate([pt.zeros((K, 1)), pt.eye(K), -a[:, None], *cols_x], axis=1)
        v_y = pt.concatenate([pt.ones(1), -b, -tau[None], *([-beta] if beta is not None else [])])
        V = pt.concatenate([v_y[None, :], V_m], axis=0)
        ssr = pt.sum(pt.dot(V, self.ZZ) * V, axis=1)
        sig = pt.concatenate([sigma[None], sigma_m])
        n_eff = self.fe.n_eff  # flat fixed effects integrated out: n_eff degrees of freedom each
        return (-0.5 * (K + 1) * n_eff * np.log(2 * np.pi) - n_eff * pt.sum(pt.log(sig))
                - pt.sum(ssr / (2 * sig ** 2)))

    def _pooled_likelihood(self, a, beta_m, tau, b, beta, sigma, sigma_m) -> None:
        mu_m = self.D[:, None] * a[None, :] + self._pooled_effects("m", dims="mediator")
        mu = tau * self.D + pt.dot(self.M_z, b) + self._pooled_effects("y")
        if beta is not None:
            mu_m = mu_m + pt.dot(self.X_z, beta_m)
            mu = mu + pt.dot(self.X_z, beta)
        pm.Normal("m", mu=mu_m, sigma=sigma_m, observed=self.M_z, dims=("obs", "mediator"))
        pm.Normal("y", mu=mu, sigma=sigma, observed=self.y_z, dims="obs")

    def _pooled_effects(self, eq: str, dims: str | None = None):
        """Partially pooled unit effects and zero-sum period effects of one equation
        (``dims="mediator"``: one set per mediator). Centred, because a dozen periods identify each
        unit's effect well (the non-centred form gave R-hat 1.17 on the demo), and summing to zero,
        because otherwise their mean trades off against the intercept (R-hat 1.25)."""
        mu0 = self.prior(f"intercept_{eq}", "intercept", dims=dims)
        s_unit = self.prior(f"sigma_unit_{eq}", "sigma_unit", dims=dims)
        if dims:  # the zero-sum axis is the last one: put city last, then transpose
            alpha = pm.ZeroSumNormal(f"unit_{eq}", sigma=s_unit[:, None], dims=(dims, "unit")).T
        else:
            alpha = pm.ZeroSumNormal(f"unit_{eq}", sigma=s_unit, dims="unit")
        out = mu0 + alpha[self.unit_idx]
        if self.panel.time_effects:
            s_time = self.prior(f"sigma_time_{eq}", "sigma_time", dims=dims)
            if dims:  # the zero-sum axis is the last one: put year last, then transpose
                g = pm.ZeroSumNormal(f"time_{eq}", sigma=s_time[:, None], dims=(dims, "year"))
                out = out + g.T[self.time_idx]
            else:
                g = pm.ZeroSumNormal(f"time_{eq}", sigma=s_time, dims="year")
                out = out + g[self.time_idx]
        return out

    # ---- simulation (SBC) ------------------------------------------------------------------
    def simulate(self, params: dict, rng, noise_scale: float = 1.0, *, latents: bool = False):
        r"""Outcome and mediators (standardised) drawn from the model's likelihood at ``params``
        (one draw of the free parameters, e.g. from the prior), on this panel's design (D and X as
        observed), mediators first because the outcome equation reads them:

        .. math::

            M_k = F^k + a_k D + X\beta_k + \sigma_k\varepsilon_k,\qquad
            y = F + c'D + \textstyle\sum_k b_k M_k + X\beta + \sigma\varepsilon,
            \qquad \varepsilon_k, \varepsilon \sim N(0, I)\ \text{independent}

        With ``unit_effects = "within"`` the flat fixed effects F are not in the likelihood (W
        annihilates them: it reads W·M_k ~ N(W(a_k D + Xβ_k), σ_k²W) and W·y likewise, n_eff
        degrees of freedom each), so F = (I − W) of the observed standardised series: the
        simulated panel keeps the observed unit and period levels. With ``"pooled"``, F is the
        parameters' μ + α_i + γ_t of each equation. ``noise_scale`` multiplies σ and every σ_k (≠ 1:
        a deliberately wrong simulator). ``latents=True`` returns ``(y_z, latents)`` whose
        ``"columns"`` holds the mediators drawn, on their original scale (the panel columns the
        refit reads); without it, y_z alone."""
        f = lambda v: np.asarray(params[v], dtype=float)  # noqa: E731
        K, n = len(self.mediators), len(self.y_z)
        beta_m = f("beta_m") if self.X_z.shape[1] else np.zeros((0, K))
        beta = f("beta") if self.X_z.shape[1] else np.zeros(0)
        if self.effects == "within":
            F_m, F_y = self.M_z - self.fe(self.M_z), self.y_z - self.fe(self.y_z)
        else:
            F_m, F_y = self._simulated_effects(params, "m", K), self._simulated_effects(params, "y", None)
        sigma_m, sigma = f("sigma_m") * noise_scale, float(f("sigma")) * noise_scale
        M = (F_m + self.D[:, None] * f("a_z")[None, :] + self.X_z @ beta_m
             + sigma_m[None, :] * rng.standard_normal((n, K)))
        y = (F_y + float(f("tau_z")) * self.D + M @ f("b_z") + self.X_z @ beta
             + sigma * rng.standard_normal(n))
        if not latents:
            return y
        return y, {"columns": dict(zip(self.mediators, (self.m_mean + self.m_sd * M).T))}

    def _simulated_effects(self, params: dict, eq: str, K: int | None) -> np.ndarray:
        """μ + α_i (+ γ_t) of one pooled equation at ``params``: (n,), or (n, K) for the mediators."""
        f = lambda v: np.asarray(params[v], dtype=float)  # noqa: E731
        unit = f(f"unit_{eq}")
        out = f(f"intercept_{eq}") + (unit.T[self.unit_idx] if K else unit[self.unit_idx])
        if self.panel.time_effects:
            time = f(f"time_{eq}")
            out = out + (time.T[self.time_idx] if K else time[self.time_idx])
        return out

    def use_scales_of(self, base: "MediationModel") -> None:
        """Standardise the mediators with ``base``'s means and sds (the observed panel's: the scale
        the priors that simulated them live on) and recompute the within statistics (SBC; the
        outcome's scale is set by the caller)."""
        self.m_mean, self.m_sd = base.m_mean, base.m_sd
        self.M_z = (self.df[self.mediators].to_numpy(float) - self.m_mean) / self.m_sd
        if self.effects == "within":
            self._within_statistics()

    # ---- estimands ------------------------------------------------------------------------
    def _draws(self, idata) -> dict[str, np.ndarray]:
        post = idata["posterior"]
        return {k: post[v].to_numpy() for k, v in
                (("a", "a_z"), ("b", "b_z"), ("tau", "tau_z"), ("sigma", "sigma"), ("sigma_m", "sigma_m"))}

    def estimands(self, idata):
        d = self._draws(idata)
        meds = list(self.mediators)
        direct = d["tau"] * self.y_sd
        a = d["a"][..., :len(meds)] * self.m_sd
        b = d["b"][..., :len(meds)] * self.y_sd / self.m_sd
        indirect = d["a"][..., :len(meds)] * d["b"][..., :len(meds)] * self.y_sd
        total = direct + indirect.sum(axis=-1)
        self._sensitivity = self.sensitivity(idata)
        rho = np.stack([np.full(direct.shape, self._sensitivity[m]["breakdown"]) for m in meds], axis=-1)
        by = lambda x, stem: E.indexed(x, "mediator", meds, stem + "[{}]")  # noqa: E731
        return E.dataset({"a": by(a, "a"), "b": by(b, "b"), "indirect": by(indirect, "indirect"),
                          "direct": E.scalar(direct), "total": E.scalar(total),
                          "prop_mediated": by(indirect / total[..., None], "prop_mediated"),
                          "rho_breakdown": by(rho, "rho_breakdown")})

    def sensitivity(self, idata) -> dict:
        """Per mediator: the indirect effect's posterior (mean, 95% interval, P(>0)) over rho_grid,
        and the breakdown ρ (see the module docstring)."""
        d = self._draws(idata)
        flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in d.items()}
        out = {}
        for k, med in enumerate(self.mediators):
            args = (flat["a"][:, k], flat["b"][:, k], flat["sigma"], flat["sigma_m"][:, k])
            cur = indirect_under_rho(*args, self.rho, scale=self.y_sd)
            lo, hi = np.quantile(cur, [0.025, 0.975], axis=1)
            out[med] = {"rho": self.rho, "mean": cur.mean(axis=1), "ci95_lo": lo, "ci95_hi": hi,
                        "p_positive": (cur > 0).mean(axis=1),
                        "breakdown": rho_breakdown(*args, scale=self.y_sd)}
        return out

    # ---- comparison, extras, figures ------------------------------------------------------
    def extras(self, idata, draws, replication=None) -> dict:
        sens = self._sensitivity or self.sensitivity(idata)
        out = {
            "rho_sensitivity": jsonable(sens),
            "rho_breakdown": {m: sens[m]["breakdown"] for m in self.mediators},
            "unit_effects": self.effects,
            "scales": {"outcome_sd": self.y_sd,
                       "mediator_sd": dict(zip(self.mediators, self.m_sd.tolist()))},
        }
        sec = (replication or {}).get("mediation") or {}
        if sec:
            out["comparison_table"] = self.comparison_rows(draws, sec)
        return jsonable(out)

    def comparison_rows(self, draws, sec: dict) -> list[dict]:
        """Rows of the Markdown comparison table: a, b, indirect per mediator — the stepwise
        estimate, its interval (the bootstrap one for the indirect effect) and Sobel p beside the
        posterior mean, 95% HDI and P(>0)."""
        rows = []
        for med in self.mediators:
            e = sec.get(med)
            for q in ("a", "b", "indirect"):
                p = param_entry(draws[f"{q}[{med}]"])
                row = {"mediator": med, "quantity": q, "posterior_mean": p["mean"],
                       "hdi95": p["hdi95"], "p_positive": p["p_positive"]}
                if e:
                    f = (e[q] if q != "indirect"
                         else {"estimate": e["indirect"], "ci95": e.get("indirect_ci95")})
                    row.update(stepwise=f["estimate"], stepwise_ci95=f.get("ci95"),
                               sobel_p=e.get("sobel_p") if q == "indirect" else None)
                rows.append(row)
        return jsonable(rows)

    # ---- predictive checks ----------------------------------------------------------------
    def log_likelihood(self, idata, pm_model):
        """With ``within`` effects: per-unit log-likelihood (dims ``unit``) of the unit's whole
        block (outcome and mediators, within-transformed; Σ_t W_tt degrees of freedom per equation),
        so PSIS-LOO leaves one unit out. Pooled: PyMC's pointwise log-likelihood of y."""
        if self.effects != "within":
            return super().log_likelihood(idata, pm_model)
        # a long panel: evenly thinned draws (base.loo_draws), chunks of draws × rows bounded
        post = loo_draws(idata["posterior"].to_dataset(), len(self.yw) * (1 + len(self.mediators)))
        ch, dr = post.sizes["chain"], post.sizes["draw"]
        flat = lambda v: post[v].to_numpy().reshape(ch * dr, -1)  # noqa: E731
        K, kx = len(self.mediators), self.Xw.shape[1]
        a, b, tau, sigma, sigma_m = flat("a_z"), flat("b_z"), flat("tau_z"), flat("sigma"), flat("sigma_m")
        beta = flat("beta") if kx else np.zeros((ch * dr, 0))
        beta_m = post["beta_m"].to_numpy().reshape(ch * dr, kx, K) if kx else np.zeros((ch * dr, 0, K))
        dof = np.asarray(self.fe._U @ self.fe.diag).ravel()
        out = np.zeros((ch * dr, self.fe.n_units))

        def add(resid, sd):  # resid (draws, n), sd (draws,)
            ssr = np.asarray(self.fe._U @ (resid ** 2).T).T
            s2 = (sd ** 2)[:, None]
            return -0.5 * dof[None, :] * np.log(2 * np.pi * s2) - ssr / (2 * s2)

        step = pl.draw_chunk(len(self.yw), 256)
        for s in range(0, ch * dr, step):
            sl = slice(s, s + step)
            e = self.yw[None, :] - tau[sl] * self.Dw[None, :] - b[sl] @ self.Mw.T - beta[sl] @ self.Xw.T
            out[sl] += add(e, sigma[sl, 0])
            for k in range(K):
                e = (self.Mw[None, :, k] - a[sl, k:k + 1] * self.Dw[None, :]
                     - beta_m[sl, :, k] @ self.Xw.T)
                out[sl] += add(e, sigma_m[sl, k])
        return self.unit_log_likelihood(post, out)

    def observed_values(self) -> np.ndarray:
        return self.y_z

    def posterior_predictive(self, idata, pm_model, seed: int):
        """Replicated outcomes (standardised scale), thinned to base.PPC_DRAWS_PER_CHAIN draws per
        chain; with ``within`` effects the fixed effects are drawn from their posterior
        (:meth:`WithinTransform.replicate`)."""
        if self.effects != "within":
            return super().posterior_predictive(idata, pm_model, seed)
        post = ppc_draws(idata["posterior"].to_dataset(), len(self.y_z))
        ch, dr = post.sizes["chain"], post.sizes["draw"]
        flat = lambda v: post[v].to_numpy().reshape(ch * dr, -1)  # noqa: E731
        mu = flat("tau_z") * self.Dw[None, :] + flat("b_z") @ self.Mw.T
        if self.Xw.shape[1]:
            mu = mu + flat("beta") @ self.Xw.T
        rep = self.fe.replicate(self.y_z, mu, flat("sigma")[:, 0], np.random.default_rng(seed))
        return xr.Dataset({"y": (("chain", "draw", "obs"), rep.reshape(ch, dr, -1))})
