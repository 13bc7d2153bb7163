"""Placebo-law assignment (Bertrand, Duflo & Mullainathan 2004): a fake absorbing adoption on a
real panel, the real outcome kept, so that nothing should be found.

:func:`assign_placebo` is the one place that draws placebo panels; the placebo calibration (a
benchmark loop, the many-fits engine and ``bayes-nqp calibrate placebo``) reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError

POOLS = ("never", "all")


@dataclass(frozen=True)
class Placebo:
    """One placebo panel: the raw frame with the fake treatment in ``column``, and what was drawn."""

    frame: pd.DataFrame
    column: str
    units: list          # units given a placebo adoption
    years: dict          # unit -> placebo adoption period
    dropped_units: list  # really treated units left out (pool = "never")


def assign_placebo(raw: pd.DataFrame, *, unit: str, time: str, rng: np.random.Generator,
                   treated: str | None = None, pool: str = "never", share: float = 0.5,
                   column: str = "placebo_D", margin: int = 1) -> Placebo:
    """Draw a placebo adoption on ``raw`` (one row per unit and period).

    ``pool = "never"``: the units the real treatment ``treated`` never reaches form the panel
    (ever-treated units are dropped, so their real effect cannot leak into the comparison) and a
    random ``share`` of them adopts. ``pool = "all"``: every unit may adopt; the real treatment
    column stays in the frame for use as a control. Each adopting unit gets its own adoption
    period, uniform over the periods that leave ``margin`` periods before and after it; the
    placebo is absorbing (1 from the adoption period on).
    """
    if pool not in POOLS:
        raise DataError(f"placebo pool '{pool}' is not one of {', '.join(POOLS)}")
    if not 0 < share < 1:
        raise DataError(f"placebo share must be strictly between 0 and 1, got {share}")
    df = raw.copy()
    dropped = []
    if pool == "never":
        if treated is None:
            raise DataError("placebo pool 'never' needs the real treatment column (treated=...)")
        ever = df.groupby(unit)[treated].transform("max") > 0
        dropped = sorted(df.loc[ever, unit].unique().tolist())
        df = df.loc[~ever].copy()
    units = np.array(sorted(df[unit].unique()))
    periods = np.array(sorted(df[time].unique()))
    if len(units) < 4:
        raise DataError(f"only {len(units)} units are available for placebo adoption")
    if len(periods) < 2 * margin + 1:
        raise DataError(f"{len(periods)} periods leave no room for a placebo adoption")
    n_adopt = max(1, int(round(share * len(units))))
    chosen = rng.choice(units, size=n_adopt, replace=False)
    window = periods[margin:len(periods) - margin] if margin else periods
    first = {u: window[rng.integers(len(window))] for u in chosen}
    start = df[unit].map(first)
    df[column] = (start.notna() & (df[time] >= start)).astype(int)
    return Placebo(df.reset_index(drop=True), column, [u.item() if hasattr(u, "item") else u for u in chosen],
                   {(u.item() if hasattr(u, "item") else u): (t.item() if hasattr(t, "item") else t)
                    for u, t in first.items()}, dropped)
