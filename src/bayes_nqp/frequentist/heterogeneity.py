"""Heterogeneity by group (region, city size, ...): split samples and the interaction form.

Split sample, for each level g of each group variable (the study's Table)::

    y_it = α_i + λ_t + β_g·D_it + γ_g'X_it + ε_it     on the units of level g only

Interaction form, one regression per group variable, common fixed effects and controls::

    y_it = α_i + λ_t + Σ_g β_g·D_it·1{group_i = g} + γ'X_it + ε_it

The fact to know first: "significant in the east, not in the centre" compares p-values, which
is not a test of a difference; ``wald_equal_pvalue`` tests β_g equal across levels (F(k−1, G−1),
unit-clustered), and the Bayesian model pools the levels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..results import jsonable
from ._fe import coef_entry, fe_part, feols, n_units_used, terms, wald_pvalue
from .base import SectionResult, section


def _levels(col: pd.Series) -> list:
    return sorted(col.dropna().unique().tolist(), key=str)


def _missing(n_units: int, why: str) -> dict:
    return {"estimate": None, "se": None, "ci95": None, "pvalue": None, "n_units": n_units,
            "note": why}


def split_sample(panel, group: str, controls: bool = True) -> dict:
    """TWFE on each level's sub-panel: {"<level>": {estimate, se, ci95, pvalue, n_units, n_obs}}."""
    col = panel.groups[group]
    out = {}
    for level in _levels(panel.df[col]):
        sub = panel.subset(panel.df[col] == level)
        fit = feols(sub.df, "y", terms(sub, ("D",), controls), fe_part(sub))
        if "D" not in fit.coefnames:
            out[str(level)] = _missing(sub.n_units, "D is collinear with the fixed effects in "
                                                    "this sub-sample (no treated or no control units)")
            continue
        out[str(level)] = coef_entry(fit, "D", n_units=n_units_used(fit), n_obs=fit.n_obs)
    return out


def interaction(panel, group: str, controls: bool = True) -> dict:
    """One TWFE with D × level dummies; adds ``wald_equal_pvalue`` (all β_g equal)."""
    col = panel.groups[group]
    df = panel.df.copy()
    levels = _levels(df[col])
    names = {}
    for k, level in enumerate(levels):
        # plain generated names: group levels may hold spaces or non-ASCII characters
        names[level] = f"D_x_{k}"
        df[names[level]] = df["D"] * (df[col] == level)
    fit = feols(df, "y", terms(panel, list(names.values()), controls), fe_part(panel))
    kept = [lv for lv in levels if names[lv] in fit.coefnames]
    out: dict = {}
    for level in levels:
        if names[level] in fit.coefnames:
            out[str(level)] = coef_entry(fit, names[level])
        else:
            out[str(level)] = _missing(int(df.loc[df[col] == level, "unit"].nunique()),
                                       "no treated observations in this level")
    if len(kept) >= 2:
        k = len(kept)
        R = np.hstack([-np.ones((k - 1, 1)), np.eye(k - 1)])  # β_g − β_first = 0
        out["wald_equal_pvalue"] = wald_pvalue(fit, [names[lv] for lv in kept], R=R)
    else:
        out["wald_equal_pvalue"] = None
    return jsonable(out)


@section("heterogeneity")
def heterogeneity(panel, controls: bool = True) -> SectionResult:
    """Split-sample and interaction estimates for every group in the column map.

    Summary keys ``heterogeneity`` (split samples) and ``heterogeneity_interaction``.
    """
    panel.require("groups", "treatment", "outcome", what="heterogeneity")
    controls = controls and bool(panel.controls)
    split, inter, rows = {}, {}, []
    for group in panel.groups:
        split[group] = split_sample(panel, group, controls=controls)
        inter[group] = interaction(panel, group, controls=controls)
        for level, s in split[group].items():
            i = inter[group][level]
            rows.append({
                "group": group, "level": level,
                "estimate": s["estimate"], "se": s["se"],
                "ci95_lo": None if s["ci95"] is None else s["ci95"][0],
                "ci95_hi": None if s["ci95"] is None else s["ci95"][1],
                "pvalue": s["pvalue"], "n_units": s["n_units"],
                "interaction_estimate": i["estimate"], "interaction_se": i["se"],
                "interaction_pvalue": i["pvalue"],
                "wald_equal_pvalue": inter[group]["wald_equal_pvalue"],
            })
    table = pd.DataFrame(rows)
    from .plots import heterogeneity_figure

    fig = heterogeneity_figure(table.dropna(subset=["estimate"]), panel)
    return SectionResult(summary={"heterogeneity": split, "heterogeneity_interaction": inter},
                         tables={"heterogeneity": table}, figures={"heterogeneity": fig})
