"""Stepwise mediation (Baron–Kenny; Wen et al. 2004), one mediator M at a time::

    y = c·D  + γ₁'X + α_i + λ_t + e₁        (total effect c)
    M = a·D  + γ₂'X + μ_i + ν_t + e₂        (a)
    y = c'·D + b·M + γ₃'X + ρ_i + κ_t + e₃  (direct effect c', b)

indirect = a·b, Sobel z = ab / sqrt(b²·se_a² + a²·se_b²), and a unit-cluster bootstrap 95%
percentile interval for a·b. The fact to know first: b is identified only if nothing unmeasured
confounds M and y (sequential ignorability); D being as good as random is not enough.

The bootstrap resamples units with replacement. A unit drawn k times, each copy with its own
fixed effect, gives exactly the estimates of weighted least squares with unit weight k, so each
replicate is one weighted within-transformation (pyfixest's demeaner) plus two small solves —
no refit of the formula machinery, and the same code serves unbalanced panels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..results import jsonable
from ._fe import coef_entry, demean, fe_part, feols, terms
from .base import SectionResult, section

DEFAULT_REPS = 199
ALPHA = 0.05


def _wen_verdict(total: dict, a: dict, b: dict, direct: dict, sobel_p: float) -> str:
    """Wen et al. (2004) decision sequence at the 5% level."""
    if total["pvalue"] >= ALPHA:
        return "no total effect: stop (no mediation claim)"
    if a["pvalue"] < ALPHA and b["pvalue"] < ALPHA:
        return ("partial mediation" if direct["pvalue"] < ALPHA else "full mediation")
    return ("mediation by the Sobel test" if sobel_p < ALPHA
            else "no mediation (a or b not significant, Sobel not significant)")


def bootstrap_ab(panel, df: pd.DataFrame, mediator: str, controls: list[str], reps: int,
                 seed: int) -> np.ndarray:
    """Unit-cluster bootstrap draws of a·b (unit weights = times drawn; see module doc)."""
    rng = np.random.default_rng(seed)
    units = df["unit_idx"].to_numpy()
    n = int(units.max()) + 1
    present = np.unique(units)
    Z = df[["y", mediator, "D", *controls]].to_numpy(float)
    out = np.empty(reps)
    for r in range(reps):
        counts = np.bincount(rng.choice(present, size=len(present), replace=True), minlength=n)
        w = counts[units].astype(float)
        keep = w > 0
        sub = df.loc[keep, ["unit_idx", "time_idx"]]
        Zt = demean(panel, Z[keep], df=sub, weights=w[keep])
        # weighted cross-products of [y, M, D, X]: both regressions are solves on this Gram
        # matrix (columns scaled to unit norm first so that the solve is well conditioned)
        C = (Zt * w[keep][:, None]).T @ Zt
        s = 1.0 / np.sqrt(np.diag(C))
        C = C * s[:, None] * s[None, :]
        a = np.linalg.solve(C[2:, 2:], C[2:, 1])[0] * s[2] / s[1]
        b = np.linalg.solve(C[1:, 1:], C[1:, 0])[0] * s[1] / s[0]
        out[r] = a * b
    return out


def mediate(panel, mediator: str, controls: bool = True, reps: int = DEFAULT_REPS,
            seed: int = 20250101) -> dict:
    """All three regressions for one mediator on one common sample, Sobel and bootstrap."""
    X = panel.controls if controls else []
    sub = panel.subset(panel.df[["y", "D", mediator, *X]].notna().all(axis=1))
    df = sub.df
    fe = fe_part(sub)
    f_total = feols(df, "y", terms(sub, ("D",), controls), fe)
    f_a = feols(df, mediator, terms(sub, ("D",), controls), fe)
    f_b = feols(df, "y", terms(sub, ("D", mediator), controls), fe)
    total, a = coef_entry(f_total, "D"), coef_entry(f_a, "D")
    b, direct = coef_entry(f_b, mediator), coef_entry(f_b, "D")
    ab = a["estimate"] * b["estimate"]
    sobel_se = np.sqrt(b["estimate"] ** 2 * a["se"] ** 2 + a["estimate"] ** 2 * b["se"] ** 2)
    z = ab / sobel_se if sobel_se > 0 else np.nan
    sobel_p = float(2 * stats.norm.sf(abs(z)))
    entry = {"total": total, "a": a, "b": b, "direct": direct, "indirect": ab,
             "indirect_ci95": None, "sobel_p": sobel_p, "sobel_z": z,
             "share_mediated": ab / total["estimate"] if total["estimate"] else None,
             "n_obs": f_total.n_obs, "bootstrap_reps": int(reps),
             "stepwise_verdict": _wen_verdict(total, a, b, direct, sobel_p)}
    if reps > 0:
        draws = bootstrap_ab(sub, df, mediator, list(X), reps, seed)
        entry["indirect_ci95"] = np.percentile(draws, [2.5, 97.5]).tolist()
        entry["indirect_boot_se"] = float(draws.std(ddof=1))
    return jsonable(entry)


@section("mediation")
def mediation(panel, controls: bool = True, reps: int = DEFAULT_REPS,
              seed: int = 20250101) -> SectionResult:
    """Stepwise mediation for every mediator in the column map (``reps`` bootstrap draws)."""
    panel.require("mediators", "treatment", "outcome", what="mediation")
    controls = controls and bool(panel.controls)
    summary, rows = {}, []
    for k, med in enumerate(panel.mediators):
        e = mediate(panel, med, controls=controls, reps=reps, seed=seed + k)
        summary[med] = e
        ci = e["indirect_ci95"] or [None, None]
        rows.append({"mediator": med,
                     "total": e["total"]["estimate"], "total_p": e["total"]["pvalue"],
                     "a": e["a"]["estimate"], "a_se": e["a"]["se"], "a_p": e["a"]["pvalue"],
                     "b": e["b"]["estimate"], "b_se": e["b"]["se"], "b_p": e["b"]["pvalue"],
                     "direct": e["direct"]["estimate"], "direct_p": e["direct"]["pvalue"],
                     "indirect": e["indirect"], "indirect_ci95_lo": ci[0],
                     "indirect_ci95_hi": ci[1], "sobel_p": e["sobel_p"],
                     "share_mediated": e["share_mediated"], "verdict": e["stepwise_verdict"]})
    return SectionResult(summary={"mediation": summary}, tables={"mediation": pd.DataFrame(rows)})
