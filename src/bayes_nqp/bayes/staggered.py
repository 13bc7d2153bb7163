r"""Heterogeneity-robust staggered ATT: Wooldridge's (2021) extended two-way model, with unit-level
effect deviations so that its intervals hold on real panels.

.. math::

    y_{it} = \alpha_i + \gamma_t + \sum_{(g, s)} \tau_{g,s}\,\mathbf 1\{G_i = g,\ t = s\}\,D_{it}
             + t_i D_{it} + X_{it}\beta + \varepsilon_{it},

    \alpha_i \sim N\big(\mu + \textstyle\sum_g \lambda_g \mathbf 1\{G_i = g\} + \bar X_i'\lambda_x,\
        \sigma_\alpha^2\big),\qquad
    t_i \sim N(0, \sigma_\tau^2),\qquad
    \gamma \sim \text{zero-sum, fixed wide scale},

    \varepsilon_{i\cdot} \sim \text{iid } N(0, \sigma^2)\ \text{or stationary AR(1)}(\rho, \sigma^2)
    \ \text{within unit } i,

where :math:`G_i` is unit *i*'s cohort (first treated period; never-treated units are the base)
and :math:`D_{it} = \mathbf 1\{t \ge G_i\}`. The treatment term is **saturated**: one
:math:`\tau_{g,s}` for every treated (cohort, period) cell, prior ``tau``.

Why this model (the choice of issue 13). The point estimates of the imputation estimator
(Borusyak–Jaravel–Spiess; Gardner), which fits :math:`\alpha_i + \gamma_t` on the untreated
cells and imputes the treated ones, are those of the saturated extended TWFE regression
(Wooldridge 2021, Theorem: with a cohort × period effect on every treated cell, the treated
cells are fitted exactly and :math:`\alpha_i, \gamma_t, \beta` rest on the untreated cells
only). With random intercepts, Mundlak's device makes the random-effects fit equal the
fixed-effects one: in a balanced panel the unit means of the cell indicators are the cohort
indicators (divided by :math:`T`), so the intercepts' mean carries the **cohort indicators**
:math:`\lambda_g` (and the unit means of the controls), the cohort means of the previous
imputation model. Under ``effect = "common"``, weak priors and a balanced panel the posterior
mean of every :math:`\tau_{g,s}` is therefore the imputation estimate. The year effects have the
prior set's fixed wide zero-sum ``year`` prior (no learned scale): pooled ones shrink the late,
mostly treated, years and bias the imputed :math:`Y(0)` (castle doctrine's placebo ATT).

Honest uncertainty. What the imputation model's intervals missed is that a unit's treated cells
share its errors and its own effect. Here (spec option ``effect = "unit"``, the default) each
treated unit's effect deviates from its cells' :math:`\tau_{g,s}` by its own
:math:`t_i \sim N(0, \sigma_\tau^2)` on all its treated rows (:math:`\sigma_\tau` learned, prior
``sigma_effect``); :math:`\alpha_i`, :math:`t_i` and the AR(1) covariance (``errors = "ar1"``,
:math:`\rho` learned, prior ``rho``) are integrated out exactly from sufficient statistics
(:mod:`.panel_likelihood`, through :class:`~.did.TwoWayModel`, the did model's machinery; this
class only sets the hooks ``effect_params``/``effect_design``/``effect_rows``/``effect_centre``
and the unit-mean block). :math:`\tau_{g,s}` is then the mean effect of cohort *g*'s units in
period *s*, and its posterior sd reflects how much the units disagree, as a unit-clustered SE
does. After sampling, :math:`\alpha_i` and :math:`\tau_i` (stored standardised as
``tau_unit_z``: the unit's treated-row average of its :math:`\tau_{g,s}` plus :math:`t_i`) are
drawn from their exact conditional posterior.

Estimands (outcome's original scale), cell-count-weighted averages of the :math:`\tau_{g,s}`
draws over the treated cells (the BJS weights: each treated unit-period counts once):

* ``att``: all treated cells, :math:`\sum_{g,s} n_{g,s}\tau_{g,s} / \sum n_{g,s}`;
* ``att[g=<cohort>]`` (Dataset variable ``att_cohort(cohort)``): the cells of cohort *g*;
* ``att[e=<k>]`` (``att_event(event_time)``): the cells with :math:`s - g = k`.

They are means over units (population means of the cohorts' effects), not the sample ATT of
exactly these units; their frequentist counterpart is the imputation ATT of diff-diff with
unit-clustered SE (``[[compare]]`` in models/staggered.toml).

Measured (benchmarks/bench_honest.py, README "Honest uncertainty"; 100 placebo-law panels, weak
priors): false-positive rate of att's 95% HDI 8% on castle doctrine (the imputation model: 26%)
and 16% on Munnell's state GSP (49%), whose near-random-walk errors make a unit's imputation error
grow with exposure, which one constant deviation per unit does not describe (``errors = "ar1"``
does not help: 1% on castle, 27% on Munnell); on the real castle panel att's posterior sd is
1.07 × the BJS unit-clustered SE.

Spec options (models/staggered.toml): ``method = "extended_twfe"`` (default, this model) or
``"imputation"`` (the previous model, :mod:`.staggered_imputation`: iid errors, **not robust
to within-unit dependence**); ``effect = "unit" | "common"``; ``errors = "iid" | "ar1"``;
``year_effects = "fixed" | "pooled"`` (pooled changes the estimand); ``cohort_levels =
"observed" | "panel"``.

Refits on other treatment timings (placebo laws). With ``cohort_levels = "panel"`` there is a
:math:`\tau_{g,s}` for every pair of panel periods :math:`g \le s` with :math:`g` after the first
period, and a cohort indicator :math:`\lambda_g` for every such *g*, whether or not a unit adopts
then: a cell without rows is a zero column of the design, so its :math:`\tau_{g,s}` (and an
empty cohort's :math:`\lambda_g`) keeps only its prior and the posterior of everything else is
unchanged. The design's shape and the coordinates then do not depend on the timing, the data
enter as ``pm.Data`` statistics, and every placebo timing of a panel refits one compilation
(``placebo_options``; the engine's cache :func:`bayes_nqp.engine.compiled_model`).

Cells that cannot be identified are dropped with a logged warning (and counted in ``extras``):
all rows of a unit treated from its first period (no untreated row fixes its
:math:`\alpha_i`), and the treated cells of a period in which no unit is untreated
(:math:`\gamma_t` unidentified). The model then runs on the remaining rows (a dropped period
inside a unit's run would be read as consecutive by the AR(1) option; dropped periods are the
last ones in practice, after every unit has adopted).

Scale: outcome and controls standardised (mean 0, sd 1); priors ``intercept`` (:math:`\mu`),
``sigma_unit``, ``year`` (or ``sigma_time`` when pooled), ``tau`` (every :math:`\tau_{g,s}`),
``beta`` (controls and :math:`\lambda`), ``sigma_effect``, ``rho``, ``sigma`` live on that scale.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .. import estimands as E
from ..errors import ModelError, SpecError
from .base import register
from .did import Block, TwoWayModel
from .event_study import label
from .staggered_imputation import twfe_reference

log = logging.getLogger(__name__)

#: spec option ``method``: the extended two-way model (this module) or the previous imputation
#: model (:mod:`.staggered_imputation`, iid errors, not robust to within-unit dependence)
METHODS = ("extended_twfe", "imputation")
#: which cohorts and cells get parameters: "observed" (the treatment timing's) or "panel" (every
#: period but the first as a cohort, every later-or-same period as a cell: one structure per panel)
COHORT_LEVELS = ("observed", "panel")
IMPUTATIONS = ("mean", "predictive")


def identifiable_rows(panel) -> tuple[np.ndarray, list[str], list[str]]:
    """(rows kept, dropped units, dropped periods): a unit with no untreated row and a treated
    cell in a period with no untreated unit cannot be identified (module docstring)."""
    df = panel.df
    D = df["D"].to_numpy(float) > 0
    u, t = df["unit_idx"].to_numpy(), df["time_idx"].to_numpy()
    no_unit = ~np.isin(u, np.unique(u[~D]))
    no_time = (D & ~np.isin(t, np.unique(t[~D]))) if panel.time_effects else np.zeros(len(df), bool)
    units = sorted({str(x) for x in df["unit"].to_numpy()[no_unit]})
    times = [label(x) for x in np.unique(df["time"].to_numpy()[no_time & ~no_unit])]
    return ~(no_unit | no_time), units, times


@register("staggered")
class StaggeredModel(TwoWayModel):
    """Saturated cohort × period effects with unit-level deviations (module docstring)."""

    needs = ("outcome", "treatment", "staggered")
    replication_section = "event_study"  # its imputation / callaway_santanna entries are the comparison
    key_estimands = ("att",)
    #: spec options of the placebo refits (calibration.placebo_task, bench_honest.py): a cell and
    #: a cohort indicator for every period of the panel, so every placebo timing is one structure
    placebo_options = {"cohort_levels": "panel"}

    def __new__(cls, panel, spec, priors):
        if spec.choice("method", "extended_twfe", METHODS, "staggered") == "imputation":
            from .staggered_imputation import ImputationStaggeredModel

            return ImputationStaggeredModel(panel, spec, priors)
        return super().__new__(cls)

    def __init__(self, panel, spec, priors):
        panel.require(*self.needs, what="the Bayesian staggered model")
        keep, self.dropped_units, self.dropped_times = identifiable_rows(panel)
        if self.dropped_units:
            log.warning("staggered: %d treated unit(s) have no untreated period, so their Y(0) "
                        "is not identified; their rows are dropped: %s", len(self.dropped_units),
                        ", ".join(self.dropped_units[:10]) + (" ..." if len(self.dropped_units) > 10 else ""))
        if self.dropped_times:
            log.warning("staggered: no unit is untreated in period(s) %s, so the year effect is not "
                        "identified there; those treated cells are dropped", ", ".join(self.dropped_times))
        if not (panel.df["D"].to_numpy(float)[keep] > 0).any():
            raise ModelError("staggered: no treated cell can be imputed (every treated unit is "
                             "treated from its first period, or no unit is untreated when they are)")
        #: the panel as given (the TWFE reference uses it); ``self.panel`` holds the rows used
        self.source_panel = panel
        super().__init__(panel if keep.all() else panel.subset(keep), spec, priors)
        choice = self.spec.choice
        self.method = "extended_twfe"
        if choice("imputation", "mean", IMPUTATIONS, "staggered") != "mean":
            raise SpecError("staggered: imputation = 'predictive' belongs to method = 'imputation' "
                            "(the extended two-way model's estimands are means over units)")
        self.cohort_support = choice("cohort_levels", "observed", COHORT_LEVELS, "staggered")
        df, panel = self.df, self.panel
        D = self.D > 0
        self.treated_rows = np.flatnonzero(D)
        self.n_dropped_cells = int(self.source_panel.df["D"].sum() - D.sum())
        cohort = df["cohort"].to_numpy(float)
        time = df["time"].to_numpy(float)

        # the cells (g, s): observed treated pairs, or every pair of panel periods g <= s (g > first)
        observed = sorted({(cohort[r], time[r]) for r in self.treated_rows})
        cells = set(observed)
        if self.cohort_support == "panel":
            grid = [float(x) for x in panel.times]
            cells |= {(g, s) for g in grid[1:] for s in grid if s >= g}
        self.cells = sorted(cells)
        self.cell_labels = [f"{label(g)}:{label(s)}" for g, s in self.cells]
        index = {c: j for j, c in enumerate(self.cells)}
        self.cell_of_row = np.full(len(df), -1)
        self.cell_of_row[self.treated_rows] = [index[(cohort[r], time[r])] for r in self.treated_rows]
        self.Z = np.zeros((len(df), len(self.cells)))
        self.Z[self.treated_rows, self.cell_of_row[self.treated_rows]] = 1.0

        # cohorts of the Mundlak indicators: units with a treated row (a later adopter is a control)
        n_units = panel.n_units
        unit_treated = np.bincount(self.unit_idx, weights=D.astype(float), minlength=n_units) > 0
        first = pd.Series(cohort).groupby(self.unit_idx).first().reindex(range(n_units)).to_numpy()
        unit_g = np.where(unit_treated, first, np.nan)
        levels = set(unit_g[unit_treated].tolist())
        if self.cohort_support == "panel":
            levels |= {float(x) for x in panel.times[1:]}
        self.cohort_levels = sorted(levels)
        if unit_treated.all():
            # no never-treated unit: the indicators would sum to the intercept; the last cohort
            # becomes the base (its units are the not-yet-treated controls)
            last = max(unit_g)
            log.info("staggered: no never-treated unit; cohort %s is the base of the cohort means", label(last))
            self.cohort_levels = [g for g in self.cohort_levels if g != last]
        self.unit_cohort = unit_g
        self._lambda = self._cohort_mean_columns()

        # each unit's share of its treated rows in every cell: tau_unit_z = its average effect
        C = np.zeros((n_units, len(self.cells)))
        np.add.at(C, (self.unit_idx[self.treated_rows], self.cell_of_row[self.treated_rows]), 1.0)
        self.C_unit = C / np.maximum(C.sum(1, keepdims=True), 1.0)

        # averaging weights of the estimands over the cells (estimands × cells), BJS's cell counts
        counts = np.bincount(self.cell_of_row[self.treated_rows], minlength=len(self.cells)).astype(float)
        g_cell = np.array([g for g, _ in self.cells])
        e_cell = np.array([s - g for g, s in self.cells])
        used = counts > 0
        self.cohorts = [label(g) for g in np.unique(g_cell[used])]
        self.event_times = [int(e) for e in np.unique(e_cell[used])]
        masks = {"att": used}
        masks.update({f"att[g={label(g)}]": used & (g_cell == g) for g in np.unique(g_cell[used])})
        masks.update({f"att[e={int(e)}]": used & (e_cell == e) for e in np.unique(e_cell[used])})
        self.groups = masks
        self.W_est = np.stack([counts * m / (counts * m).sum() for m in masks.values()])
        self.n_cells = {k: int((counts * m).sum()) for k, m in masks.items()}

    # ---- the design: cohort means of the unit intercepts, saturated cell effects --------------
    def _cohort_mean_columns(self) -> tuple[np.ndarray, list[str]]:
        """Per-unit columns of λ: the cohort indicators (never-treated = base; an empty cohort is
        a zero column, keeping the structure) and the unit means of the controls that add rank."""
        n_units = self.panel.n_units
        if not self.unit_means:
            return np.zeros((n_units, 0)), []
        cols = [(self.unit_cohort == g).astype(float) for g in self.cohort_levels]
        labels = [f"cohort={label(g)}" for g in self.cohort_levels]
        if self.X_z.shape[1]:
            basis = np.column_stack([np.ones(n_units)] + [c for c in cols if c.any()])
            for j, name in enumerate(self.panel.controls):
                m = np.add.reduceat(self.X_z[:, j], self.unit_start) / self.n_per_unit
                trial = np.column_stack([basis, m])
                if np.linalg.matrix_rank(trial) > np.linalg.matrix_rank(basis):
                    cols.append(m)
                    labels.append(f"mean({name})")
                    basis = trial
        return (np.column_stack(cols) if cols else np.zeros((n_units, 0))), labels

    def _unit_mean_block(self, blocks: list[Block]) -> Block:
        per_unit, labels = self._lambda
        self.unit_mean_labels = labels
        return Block("lambda", per_unit[self.unit_idx], labels)

    def coords(self) -> dict:
        c = super().coords()
        if self.unit_means and self._lambda[1]:
            c["unit_mean"] = list(self._lambda[1])
        c["cell"] = list(self.cell_labels)
        return c

    def effect_params(self) -> dict:
        return {"tau_cell": self.prior("tau_cell", "tau", dims="cell")}

    def effect_design(self) -> list[Block]:
        return [Block("tau_cell", self.Z, list(self.cell_labels))]

    def effect_centre(self, theta: np.ndarray) -> np.ndarray:
        """Each unit's treated-row average of its cells' τ_{g,s} (S, units); 0 if never treated."""
        return self._block(theta, "tau_cell") @ self.C_unit.T

    # ---- words ------------------------------------------------------------------------------
    def assumptions(self) -> list[str]:
        out = ["method = 'extended_twfe': a saturated cohort x period effect tau_{g,s} on every "
               "treated cell (Wooldridge 2021), parallel trends and no anticipation; the point "
               "estimates are the imputation estimator's (Borusyak-Jaravel-Spiess)"]
        out += self._two_way_assumptions(
            unit=("each treated unit's effect deviates from its cells' tau_{g,s} by its own "
                  "t_i ~ N(0, sigma_tau^2) on all its treated rows, sigma_tau learned: the ATT's "
                  "interval reflects how much treated units disagree (as a unit-clustered SE "
                  "does); a unit's deviation is common to its treated periods"),
            common=("each cell's effect is common to the units of its cohort (effect = 'common'): "
                    "the interval does not widen when treated units disagree"),
            unit_term=" and effect deviation",
            fixed="year effects have a fixed wide zero-sum prior (no shrinkage)",
            pooled=("year effects are partially pooled with a learned scale (year_effects = "
                    "'pooled'): shrunken year effects bias the implied Y(0) of late periods"))
        out.append("unit intercepts are random effects whose mean depends on the unit's adoption "
                   "cohort (and the unit means of the controls): Mundlak's device, so the effects "
                   "rest on within-unit changes" if self.unit_means else
                   "unit intercepts are random effects independent of the adoption cohort "
                   "(unit_means = false)")
        out.append("Gaussian errors" if self.likelihood == "normal" else "Student-t errors")
        return out

    def estimand_labels(self) -> dict:
        mean = (" (means over units: each treated unit's own deviation t_i averages to zero in "
                "the population)" if self.effect == "unit" else "")
        cp = ("; frequentist counterpart: the Borusyak-Jaravel-Spiess imputation estimate "
              "(same cell weights) with unit-clustered SE")
        out = {"att": "the treated-cell-weighted average of the cohort x period effects tau_{g,s}" + mean + cp}
        out.update({f"att[g={g}]": f"the same average over cohort {g}'s treated cells" + cp for g in self.cohorts})
        out.update({f"att[e={e}]": f"the same average over the treated cells {e} periods after adoption" + cp
                    for e in self.event_times})
        return out

    # ---- estimands --------------------------------------------------------------------------
    def estimands(self, idata):
        tau = idata["posterior"]["tau_cell"].transpose("chain", "draw", "cell").to_numpy()
        est = (tau @ self.W_est.T) * self.y_sd           # (chain, draw, estimands)
        nc = len(self.cohorts)
        return E.dataset({
            "att": E.scalar(est[..., 0]),
            "att_cohort": E.indexed(est[..., 1:1 + nc], "cohort", self.cohorts, "att[g={}]", stem="att"),
            "att_event": E.indexed(est[..., 1 + nc:], "event_time", self.event_times, "att[e={}]", stem="att")})

    def extras(self, idata, draws, replication=None):
        src = self.source_panel.df
        out = {"cells": {
            "method": self.method, "effect": self.effect, "errors": self.errors,
            "treated_cells": int(src["D"].sum()), "used_cells": len(self.treated_rows),
            "dropped_cells": self.n_dropped_cells, "cell_parameters": len(self.cells),
            "cells_per_estimand": self.n_cells, "dropped_units": self.dropped_units,
            "dropped_periods": self.dropped_times, "cohort_levels": self.cohort_support,
            "definition": ("att = sum over treated cells (g, s) of n_gs * tau_gs / sum n_gs per "
                           "posterior draw (tau_gs: the mean effect of cohort g's units in period s)")}}
        out["twfe"] = twfe_reference(self.source_panel, replication)
        return out
