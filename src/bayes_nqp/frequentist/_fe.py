"""Shared fixed-effects helpers for the replication sections: formulas, fits, entries.

Every regression here is ``lhs ~ rhs + controls | unit [+ time]`` estimated by pyfixest with
standard errors clustered by unit (CRV1), so that all sections use one variance convention:
pyfixest's small-sample-adjusted CRV1 with t(G−1) p-values and confidence intervals.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..results import estimate

#: the cluster-robust variance every section uses
VCOV = {"CRV1": "unit"}


def fe_part(panel) -> str:
    """``unit + time`` or ``unit`` when the column map turns time effects off."""
    return "unit + time" if panel.time_effects else "unit"


def formula(panel, lhs: str = "y", rhs: Sequence[str] = ("D",), controls: bool = True) -> str:
    """Build ``lhs ~ rhs + controls | unit + time`` for pyfixest."""
    terms = list(rhs) + (panel.controls if controls else [])
    return f"{lhs} ~ {' + '.join(terms)} | {fe_part(panel)}"


def feols(fml: str, data: pd.DataFrame, **kwargs):
    """pyfixest ``feols`` with unit-clustered SEs; pyfixest's own chatter is silenced."""
    import pyfixest as pf

    with warnings.catch_warnings():
        # singleton/collinearity notes are expected on split samples; the numbers carry the info
        warnings.simplefilter("ignore")
        return pf.feols(fml, data=data, vcov=kwargs.pop("vcov", VCOV), **kwargs)


def n_units_used(fit) -> int:
    """Units (clusters) in the estimation sample."""
    return int(np.asarray(fit._G).ravel()[0])


def coef_entry(fit, name: str, **extra) -> dict:
    """``{estimate, se, ci95, pvalue, ...}`` for one coefficient, with pyfixest's t(G−1) CI."""
    ci = fit.confint().loc[name]
    return estimate(fit.coef()[name], fit.se()[name], pvalue=fit.pvalue()[name],
                    ci95=[ci.iloc[0], ci.iloc[1]], **extra)


def wald_pvalue(fit, names: Sequence[str], R: np.ndarray | None = None) -> float:
    """F-test p-value of ``R b = 0`` on the named coefficients, F(m, G−1) with the cluster vcov.

    With ``R`` None the hypothesis is that all named coefficients are zero. The F(m, G−1)
    reference is Stata's ``test`` after clustered regression and is a little more conservative
    than the χ² form.
    """
    from scipy import stats

    coefnames = list(fit._coefnames)
    idx = [coefnames.index(n) for n in names]
    b = np.asarray(fit._beta_hat)[idx]
    V = np.asarray(fit._vcov)[np.ix_(idx, idx)]
    R = np.eye(len(idx)) if R is None else np.atleast_2d(R)
    Rb = R @ b
    W = float(Rb @ np.linalg.pinv(R @ V @ R.T) @ Rb)
    m = np.linalg.matrix_rank(R)
    G = n_units_used(fit)
    return float(stats.f.sf(W / m, m, G - 1))


def demean(panel, X: np.ndarray, df: pd.DataFrame | None = None,
           weights: np.ndarray | None = None) -> np.ndarray:
    """Within-transform the columns of ``X`` by unit (and time) effects: pyfixest's demeaner.

    Works on balanced and unbalanced panels alike (alternating projections, tight tolerance).
    """
    from pyfixest.estimation import demean as _demean

    df = panel.df if df is None else df
    cols = ["unit_idx", "time_idx"] if panel.time_effects else ["unit_idx"]
    flist = df[cols].to_numpy().astype(np.uint64)
    X = np.ascontiguousarray(np.asarray(X, dtype=float).reshape(len(df), -1))
    w = np.ones(len(df)) if weights is None else np.asarray(weights, dtype=float)
    out, ok = _demean(X, flist, w, tol=1e-12, maxiter=100_000)
    if not ok:
        warnings.warn("fixed-effects demeaning did not converge to 1e-12", RuntimeWarning,
                      stacklevel=2)
    return out


def complete_rows(panel, cols: Sequence[str]) -> pd.DataFrame:
    """Rows with every named column observed (what pyfixest would keep), re-indexed."""
    df = panel.df
    keep = df[list(cols)].notna().all(axis=1)
    return df.loc[keep].reset_index(drop=True)

