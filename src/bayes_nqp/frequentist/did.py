"""The benchmark two-way fixed-effects difference-in-differences.

    y_it = α_i + λ_t + β·D_it (+ γ'X_it) + ε_it,   SEs clustered by unit.

β is the study's headline number. Under staggered adoption with effects that vary over time or
cohort, β is a weighted average of 2×2 comparisons some of which use already-treated units as
controls (Goodman-Bacon 2021); the event_study section reports the robust estimators next to it.
"""

from __future__ import annotations

import pandas as pd

from ._fe import coef_entry, fe_part, feols, n_units_used, terms
from .base import SectionResult, section
from .unit_effects import mean_unit_effect


def twfe(panel, controls: bool = True):
    """The pyfixest fit of ``y ~ D (+ controls) | unit + time`` (unit effects only per the map)."""
    return feols(panel.df, "y", terms(panel, ("D",), controls), fe_part(panel))


def _entry(fit) -> dict:
    return coef_entry(fit, "D", n_obs=fit.n_obs, n_units=n_units_used(fit))


@section("did")
def did(panel, controls: bool = True) -> SectionResult:
    """TWFE DID without and with controls → summary keys ``did`` and ``did_controls``.

    ``did_controls`` is skipped (reason in the entry) when the map names no controls, and can
    be turned off with ``controls=False``.
    """
    panel.require("outcome", "treatment", what="the TWFE DID")
    summary = {"did": _entry(twfe(panel, controls=False))}
    if controls and panel.controls:
        summary["did_controls"] = _entry(twfe(panel, controls=True))
    # the counterpart of the Bayesian τ under unit-varying effects (frequentist/unit_effects.py)
    for key, ctrl in (("did_unit_mean", False), ("did_unit_mean_controls", True)):
        if ctrl and not (controls and panel.controls):
            continue
        try:
            summary[key] = mean_unit_effect(panel, controls=ctrl)
        except ValueError as exc:
            summary[key] = {"estimate": None, "reason": str(exc)}
    rows = []
    for key, label in (("did", "TWFE"), ("did_controls", "TWFE + controls")):
        if key not in summary:
            continue
        s = summary[key]
        rows.append({"model": label, "estimate": s["estimate"], "se": s["se"],
                     "ci95_lo": s["ci95"][0], "ci95_hi": s["ci95"][1], "pvalue": s["pvalue"],
                     "n_obs": s["n_obs"], "n_units": s["n_units"],
                     "controls": ", ".join(panel.controls) if key == "did_controls" else "none",
                     "fixed_effects": "unit + time" if panel.time_effects else "unit"})
    # one column per model, statistics down the rows: the layout of a paper's Table 2
    table = pd.DataFrame(rows).set_index("model").T.reset_index(names="statistic")
    return SectionResult(summary=summary, tables={"did": table})
