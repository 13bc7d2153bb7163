"""Shared fixed-effects helpers for the replication sections: fits, entries, demeaning.

Every regression here is ``lhs ~ rhs + controls | unit [+ time]`` estimated by pyfixest with
standard errors clustered by unit (CRV1), so that all sections use one variance convention:
pyfixest's small-sample-adjusted CRV1 with t(G−1) p-values and confidence intervals.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._logging import root_logger_kept
from ..results import estimate

#: the cluster-robust variance every section uses
VCOV = {"CRV1": "unit"}


def fe_part(panel) -> str:
    """``unit + time`` or ``unit`` when the column map turns time effects off."""
    return "unit + time" if panel.time_effects else "unit"


def terms(panel, rhs: Sequence[str] = ("D",), controls: bool = True) -> list[str]:
    """The regressors ``rhs + controls`` (column names of ``panel.df``)."""
    return list(rhs) + (panel.controls if controls else [])


class FEFit:
    """A pyfixest fit seen through the user's column names.

    pyfixest parses its formula with formulaic, which evaluates terms as Python: a column named
    ``exec("...")`` would run. So no column name ever reaches a formula string: :func:`feols`
    copies the regressors into a frame with generated names ``v0, v1, …`` and this wrapper
    maps the coefficient names back.
    """

    def __init__(self, fit, back: dict[str, str]):
        self.fit = fit
        self._back = back
        self.coefnames = [back.get(n, n) for n in fit._coefnames]
        self.n_obs = int(fit._N)
        G = getattr(fit, "_G", None)
        G = np.asarray([] if G is None else G, dtype=float).ravel()
        self.n_clusters = int(G[0]) if G.size else None  # None: not a clustered vcov
        self.beta = np.asarray(fit._beta_hat)
        self.vcov = np.asarray(fit._vcov)

    def _named(self, obj):
        obj = obj.copy()
        obj.index = self.coefnames
        return obj

    def coef(self) -> pd.Series:
        return self._named(self.fit.coef())

    def se(self) -> pd.Series:
        return self._named(self.fit.se())

    def pvalue(self) -> pd.Series:
        return self._named(self.fit.pvalue())

    def confint(self) -> pd.DataFrame:
        return self._named(self.fit.confint())


def feols(data: pd.DataFrame, lhs: str, rhs: Sequence[str], fe: str = "unit + time",
          **kwargs) -> FEFit:
    """pyfixest ``lhs ~ rhs | fe`` with unit-clustered SEs; pyfixest's own chatter is silenced.

    ``lhs`` and ``rhs`` are column names of ``data`` (any text: a user's column names may hold
    code, quotes, spaces or non-ASCII characters); the formula pyfixest sees holds only the
    generated names ``v0, v1, …`` and the canonical ``unit``/``time`` (see :class:`FEFit`).
    """
    with root_logger_kept():  # pyfixest's (lazy) import calls logging.basicConfig(level=INFO)
        import pyfixest as pf
        import pyfixest.estimation  # noqa: F401  (the lazy part, imported while guarded)

    if fe not in ("unit + time", "unit"):
        raise ValueError(f"fixed effects must be 'unit + time' or 'unit', got {fe!r}")
    cols = list(dict.fromkeys([lhs, *rhs]))
    safe = {c: f"v{k}" for k, c in enumerate(cols)}
    frame = pd.DataFrame({safe[c]: data[c].to_numpy() for c in cols})
    for c in ("unit", "time"):
        frame[c] = data[c].to_numpy()
    fml = f"{safe[lhs]} ~ {' + '.join(safe[c] for c in rhs)} | {fe}"
    with warnings.catch_warnings():
        # singleton/collinearity notes are expected on split samples; the numbers carry the info
        warnings.simplefilter("ignore")
        fit = pf.feols(fml, data=frame, vcov=kwargs.pop("vcov", VCOV), **kwargs)
    return FEFit(fit, {v: c for c, v in safe.items()})


def n_units_used(fit: FEFit) -> int:
    """Units (clusters) in the estimation sample."""
    return fit.n_clusters


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

    idx = [fit.coefnames.index(n) for n in names]
    b = fit.beta[idx]
    V = fit.vcov[np.ix_(idx, idx)]
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
    with root_logger_kept():
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

