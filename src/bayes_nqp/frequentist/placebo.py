"""Placebo test: reassign pilot status and timing at random and refit the TWFE coefficient.

Each draw permutes the units' first-treated periods (never = NaN included), so the number of
pilots in each batch is kept while which cities and which years are scrambled; the placebo
D̃_it = 1{t ≥ G_π(i)} replaces D in ``y ~ D + X | unit + time``. Permutation p-value (two-sided)
= share of draws with |β_placebo| ≥ |β_actual|.

The fact to know first: this checks that the estimate is not an artefact of the fixed-effects
structure; it says nothing about confounders that move with the real pilot timing.

Speed: the within transformation does not depend on D, so all draws are demeaned in one call
of pyfixest's demeaner (which also handles unbalanced panels), the controls are partialled out
once (Frisch–Waugh–Lovell), and each coefficient is a ratio of two inner products.
"""

from __future__ import annotations

import numpy as np

from ._fe import coef_entry, complete_rows, demean, fe_part, feols, terms
from .base import SectionResult, section

DEFAULT_DRAWS = 500
#: draws demeaned per pyfixest call, at most; and at most CELLS obs × draws cells per call, so that
#: memory stays near a few × 8·CELLS bytes whatever the panel (at 1M rows, 250 draws at once held
#: 12 GB; the permutation stream, hence every draw, does not depend on the chunking)
CHUNK = 250
CELLS = 10_000_000


def placebo_draws(panel, draws: int = DEFAULT_DRAWS, seed: int = 20250101,
                  controls: bool = True) -> tuple[np.ndarray, float]:
    """(placebo coefficients, actual coefficient) of D in the TWFE with controls."""
    X = panel.controls if controls else []
    df = complete_rows(panel, ["y", "D", *X])
    actual = coef_entry(feols(df, "y", terms(panel, ("D",), controls), fe_part(panel)),
                        "D")["estimate"]

    Xt = demean(panel, df[X].to_numpy(float), df=df) if X else np.empty((len(df), 0))
    yt = demean(panel, df["y"].to_numpy(float), df=df)[:, 0]
    Q = np.linalg.qr(Xt)[0] if X else None

    def partial(A):  # residual on the demeaned controls (FWL)
        return A if Q is None else A - Q @ (Q.T @ A)

    ry = partial(yt)
    # one cohort per unit in unit_idx order; permuting it moves both who and when
    unit_cohort = df.groupby("unit_idx")["cohort"].first()
    cohort = unit_cohort.to_numpy()
    pos = np.searchsorted(unit_cohort.index.to_numpy(), df["unit_idx"].to_numpy())
    time = df["time"].to_numpy(float)
    rng = np.random.default_rng(seed)
    out = np.empty(draws)
    chunk = max(1, min(CHUNK, CELLS // max(len(df), 1)))
    for start in range(0, draws, chunk):
        k = min(chunk, draws - start)
        perm = np.stack([rng.permutation(cohort) for _ in range(k)], axis=1)  # units × k
        G = perm[pos]                                                          # obs × k
        D = (np.isfinite(G) & (time[:, None] >= np.nan_to_num(G, nan=np.inf))).astype(float)
        rD = partial(demean(panel, D, df=df))
        denom = np.einsum("ij,ij->j", rD, rD)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + k] = (rD.T @ ry) / denom
    return out, float(actual)


@section("placebo")
def placebo(panel, draws: int = DEFAULT_DRAWS, seed: int = 20250101,
            controls: bool = True) -> SectionResult:
    """Placebo distribution of the TWFE coefficient → {draws, mean, sd, p_value, actual}."""
    panel.require("outcome", "treatment", "staggered", what="the placebo test")
    controls = controls and bool(panel.controls)
    b, actual = placebo_draws(panel, draws=draws, seed=seed, controls=controls)
    b = b[np.isfinite(b)]  # a draw whose placebo D is absorbed by the fixed effects has none
    p = float(np.mean(np.abs(b) >= abs(actual)))
    summary = {"draws": int(len(b)), "mean": float(b.mean()), "sd": float(b.std(ddof=1)),
               "p_value": p, "actual": actual, "seed": int(seed),
               "quantiles": {q: float(np.quantile(b, float(q))) for q in ("0.025", "0.5", "0.975")}}
    import pandas as pd

    from .plots import placebo_figure

    table = pd.DataFrame({"draw": np.arange(len(b)), "placebo_estimate": b})
    fig = placebo_figure(b, actual, p, panel)
    return SectionResult(summary={"placebo": summary}, tables={"placebo": table},
                         figures={"placebo": fig})
