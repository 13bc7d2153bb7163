"""The mean of the unit-specific treatment effects of the fully interacted two-way regression,
with its between-unit standard error: the frequentist counterpart of the Bayesian models' τ
under unit-varying effects (``effect = "unit"``).

.. math::

    y_{it} = \\alpha_i + \\lambda_t + \\tau_i D_{it} (+ X_{it}'\\beta) + \\varepsilon_{it},
    \\qquad \\bar\\tau = \\frac1{n_1}\\sum_{i\\ \\text{treated}} \\hat\\tau_i,
    \\qquad \\mathrm{se}(\\bar\\tau) = \\frac{\\mathrm{sd}(\\hat\\tau_i)}{\\sqrt{n_1}},

estimated by pyfixest (one ``D × unit`` column per treated unit whose effect is identified:
the unit has treated and untreated periods). The between-unit SE treats the :math:`\\hat\\tau_i`
as a sample of unit effects; it contains their estimation noise and their true dispersion, which
is what a unit-clustered SE of TWFE also measures, and it holds when the errors within a unit
are serially correlated. The CI uses t(n₁ − 1). This estimand (the unweighted mean effect of the
treated units) differs from TWFE's variance-weighted average where effects vary.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..results import estimate
from ._fe import fe_part, feols


def mean_unit_effect(panel, controls: bool = True) -> dict:
    """``{estimate, se, ci95, pvalue, n_units, n_treated_units, unit_effects: {unit: τ̂_i}}``."""
    df = panel.df
    D = df["D"].to_numpy(float)
    by_unit = pd.DataFrame({"u": df["unit_idx"].to_numpy(), "D": D}).groupby("u")["D"]
    share = by_unit.mean()
    units = share.index[(share > 0) & (share < 1)].to_numpy()
    if len(units) < 2:
        raise ValueError("fewer than two treated units with untreated periods: no between-unit SE")
    names = [f"Dx{k}" for k in range(len(units))]
    uidx = df["unit_idx"].to_numpy()
    inter = pd.DataFrame(D[:, None] * (uidx[:, None] == units[None, :]), columns=names, index=df.index)
    data = pd.concat([df[["y", "unit", "time", *(panel.controls if controls else [])]], inter], axis=1)
    terms = names + (list(panel.controls) if controls else [])
    fit = feols(data, "y", terms, fe_part(panel), vcov="iid")  # names never reach a formula
    coef = fit.coef()
    kept = [n for n in names if n in coef.index and np.isfinite(coef[n])]
    tau_i = coef[kept].to_numpy(float)
    n1 = len(tau_i)
    mean = float(tau_i.mean())
    se = float(tau_i.std(ddof=1) / np.sqrt(n1))
    q = stats.t.ppf(0.975, n1 - 1)
    p = float(2 * stats.t.sf(abs(mean / se), n1 - 1)) if se > 0 else None
    labels = {f"Dx{k}": str(panel.units[u]) for k, u in enumerate(units)}
    return estimate(mean, se, pvalue=p, ci95=[mean - q * se, mean + q * se],
                    n_obs=fit.n_obs, n_units=int(panel.n_units), n_treated_units=n1,
                    estimator="mean of the unit-specific effects of the fully interacted TWFE "
                              "regression; between-unit SE sd(tau_i)/sqrt(n1), t(n1-1) CI",
                    unit_effects={labels[n]: float(coef[n]) for n in kept})
