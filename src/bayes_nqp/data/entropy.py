"""The entropy-weight composite index (熵值法), as the new-quality-productivity papers build it.

For n rows i and indicators j, with each indicator's min and max over the rows:

    positive j:  x'_ij = (x_ij − min_j) / (max_j − min_j) + s
    negative j:  x'_ij = (max_j − x_ij) / (max_j − min_j) + s
    p_ij = x'_ij / Σ_i x'_ij
    e_j  = −(1 / ln n) Σ_i p_ij ln p_ij          (0 · ln 0 taken as 0)
    w_j  = (1 − e_j) / Σ_j (1 − e_j)
    index_i = Σ_j w_j x'_ij

The shift ``s`` defaults to 0 (no shift; the row at an indicator's worst value contributes
0 · ln 0 = 0). Many papers add s = 1e-4 "to avoid ln 0"; pass ``shift=1e-4`` to reproduce them:
it changes the weights very slightly and adds s to every index value (the weights sum to 1).

The one fact to know first: once the weights, mins and maxs are fixed (:class:`EntropyWeights`),
the index is a fixed *linear* map of the indicators, ``index = c + Σ_j (w_j d_j / r_j) x_j``
with d_j = ±1 the direction and r_j = max_j − min_j. :func:`apply_entropy` applies that map to
other data (a counterfactual, a later year) without recomputing weights and without clipping to
[min, max], so differences of indices are exact linear functions of differences of indicators.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd

from ..errors import DataError


@dataclass(frozen=True)
class EntropyWeights:
    """What fixes the index as a linear map: weights, direction (+1/−1), min, max and shift."""

    weights: pd.Series
    direction: pd.Series
    mins: pd.Series
    maxs: pd.Series
    shift: float = 0.0

    @property
    def columns(self) -> list[str]:
        return list(self.weights.index)

    def slopes(self) -> pd.Series:
        """d index / d x_j = w_j d_j / (max_j − min_j): index points per unit of indicator j."""
        return self.weights * self.direction / (self.maxs - self.mins)

    def to_dict(self) -> dict:
        return {"shift": self.shift,
                "indicators": {c: {"weight": float(self.weights[c]),
                                   "direction": "positive" if self.direction[c] > 0 else "negative",
                                   "min": float(self.mins[c]), "max": float(self.maxs[c])}
                               for c in self.columns}}


def _check_lists(df: pd.DataFrame, positive: Iterable[str], negative: Iterable[str]):
    positive, negative = list(positive), list(negative)
    if not positive and not negative:
        raise DataError("entropy index: give at least one indicator in 'positive' or 'negative'")
    both = sorted(set(positive) & set(negative))
    if both:
        raise DataError(f"entropy index: column(s) {both} are listed as both positive and negative")
    cols = positive + negative
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise DataError(f"entropy index: column(s) {dup} are listed more than once")
    unknown = [c for c in cols if c not in df.columns]
    if unknown:
        raise DataError(f"entropy index: column(s) {unknown} are not in the data; columns are: "
                        f"{', '.join(map(str, df.columns[:30]))}")
    direction = pd.Series([1.0] * len(positive) + [-1.0] * len(negative), index=cols, dtype=float)
    return cols, direction


def _numeric(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    out = {}
    for c in cols:
        v = pd.to_numeric(df[c], errors="coerce").astype(float)
        bad = ~np.isfinite(v.to_numpy())
        if bad.any():
            rows = list(df.index[bad][:5])
            raise DataError(f"entropy index: column '{c}' has {int(bad.sum())} missing, non-numeric "
                            f"or infinite value(s) (rows {rows}{' ...' if bad.sum() > 5 else ''}); "
                            "impute or drop them first")
        out[c] = v
    return pd.DataFrame(out, index=df.index)


def _normalise(x: pd.DataFrame, ew: EntropyWeights) -> pd.DataFrame:
    cols = ew.columns
    lo, hi, d = (s.reindex(cols).to_numpy(float) for s in (ew.mins, ew.maxs, ew.direction))
    v = x[cols].to_numpy(float)
    # positive: (x − min)/(max − min); negative: (max − x)/(max − min)
    xn = np.where(d > 0, v - lo, hi - v) / (hi - lo) + ew.shift
    return pd.DataFrame(xn, index=x.index, columns=cols)


def entropy_weights(df: pd.DataFrame, positive: Iterable[str] = (), negative: Iterable[str] = (),
                    *, shift: float = 0.0) -> EntropyWeights:
    """Entropy weights of the indicators over the rows of ``df`` (equations in the module doc).

    Raises DataError for an unknown column, a column in both lists, a missing/non-numeric value,
    a constant indicator (max = min: it cannot be normalised) or fewer than 2 rows.
    """
    cols, direction = _check_lists(df, positive, negative)
    if len(df) < 2:
        raise DataError(f"entropy index: needs at least 2 rows, got {len(df)}")
    if not np.isfinite(shift) or shift < 0:
        raise DataError(f"entropy index: shift must be a finite number ≥ 0, got {shift!r}")
    x = _numeric(df, cols)
    mins, maxs = x.min(), x.max()
    const = [c for c in cols if not maxs[c] > mins[c]]
    if const:
        raise DataError(f"entropy index: indicator(s) {const} are constant over the rows; "
                        "a constant indicator carries no information and cannot be min–max normalised")
    ew0 = EntropyWeights(pd.Series(np.nan, index=cols), direction, mins, maxs, float(shift))
    xn = _normalise(x, ew0).to_numpy()
    p = xn / xn.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p), 0.0)  # 0 · ln 0 = 0
    e = -plogp.sum(axis=0) / np.log(len(x))
    d = 1.0 - e
    if not d.sum() > 0:
        # only when every indicator is spread perfectly evenly: no indicator discriminates
        raise DataError("entropy index: every indicator has maximal entropy; the weights are undefined")
    w = pd.Series(d / d.sum(), index=cols, name="weight")
    return EntropyWeights(w, direction, mins, maxs, float(shift))


def apply_entropy(df: pd.DataFrame, ew: EntropyWeights) -> pd.Series:
    """index_i = Σ_j w_j x'_ij with fixed weights, mins and maxs (no re-estimation, no clipping)."""
    unknown = [c for c in ew.columns if c not in df.columns]
    if unknown:
        raise DataError(f"entropy index: column(s) {unknown} are not in the data")
    x = _numeric(df, ew.columns)
    xn = _normalise(x, ew).to_numpy()
    return pd.Series(xn @ ew.weights.to_numpy(float), index=df.index, name="entropy_index")


def entropy_index(df: pd.DataFrame, positive: Iterable[str] = (), negative: Iterable[str] = (),
                  *, shift: float = 0.0) -> tuple[pd.Series, pd.Series]:
    """The entropy-weight index of ``df``'s rows and the weights: ``(index, weights)``.

    ``positive`` indicators count up, ``negative`` ones (energy intensity, emissions) count
    down. The index lies in [shift, 1 + shift]. Use :func:`entropy_weights` and
    :func:`apply_entropy` to keep the map fixed across data sets.
    """
    ew = entropy_weights(df, positive, negative, shift=shift)
    return apply_entropy(df, ew), ew.weights
