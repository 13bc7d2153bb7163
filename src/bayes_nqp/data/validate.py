"""Panel validation: every problem with its column, unit/row and value, never a traceback."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .columnmap import ColumnMap

#: fewest distinct values a threshold variable needs for a trimmed grid search
MIN_THRESHOLD_VALUES = 10

#: largest magnitude accepted in a numeric role: squares and sums of squares (demeaning,
#: standardising, least squares) must stay finite in double precision (max ≈ 1.8e308)
MAX_ABS_VALUE = 1e100


def time_as_numeric(s: pd.Series) -> tuple[pd.Series, str | None]:
    """A time (or cohort) column as numbers, and a note when dates were converted to years.

    Dates (a datetime column, as Parquet, Stata or Excel give them, or date/Timestamp objects)
    become their calendar year; anything else goes through ``pd.to_numeric`` (non-numbers →
    NaN), so a date is never read as nanoseconds since 1970.
    """
    if isinstance(s.dtype, pd.PeriodDtype):
        return s.dt.year.astype(float), "periods converted to their calendar year"
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.year.astype(float), "dates converted to their calendar year"
    if s.dtype == object:
        nonnull = s.dropna()
        import datetime as _dt
        if len(nonnull) and all(isinstance(v, (_dt.date, pd.Timestamp)) for v in nonnull):
            years = s.map(lambda v: np.nan if pd.isna(v) else float(v.year))
            return years.astype(float), "dates converted to their calendar year"
    if pd.api.types.is_timedelta64_dtype(s):
        return pd.Series(np.nan, index=s.index), None
    return pd.to_numeric(s, errors="coerce").astype(float), None


@dataclass(frozen=True)
class Problem:
    level: str  # "error" or "warning"
    check: str  # short machine name, e.g. "missing_column"
    message: str
    column: str | None = None
    unit: object = None
    row: int | None = None
    value: object = None


@dataclass
class ValidationReport:
    problems: list[Problem] = field(default_factory=list)
    n_obs: int = 0
    n_units: int = 0
    n_periods: int = 0
    balanced: bool | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def checks(self) -> set[str]:
        return {p.check for p in self.problems}

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(p) for p in self.problems],
                            columns=["level", "check", "message", "column", "unit", "row", "value"])

    def format(self, limit: int = 20) -> str:
        """Plain-text listing, at most ``limit`` lines per check."""
        lines = [f"{self.n_obs} rows, {self.n_units} units, {self.n_periods} periods"
                 f"{'' if self.balanced is None else (', balanced' if self.balanced else ', unbalanced')}"]
        seen: dict[str, int] = {}
        for p in self.problems:
            seen[p.check] = seen.get(p.check, 0) + 1
            if seen[p.check] <= limit:
                lines.append(f"{p.level.upper():7s} {p.message}")
        for check, n in seen.items():
            if n > limit:
                lines.append(f"        ... and {n - limit} more '{check}' problems")
        if self.ok:
            lines.append("no errors")
        return "\n".join(lines)


def _py(v):
    """numpy scalars as plain Python values, so messages read 2 rather than np.int64(2)."""
    return v.item() if isinstance(v, np.generic) else v


def _add(rep: ValidationReport, level, check, message, **kw):
    kw = {k: _py(v) for k, v in kw.items()}
    rep.problems.append(Problem(level, check, message, **kw))


def validate_frame(df: pd.DataFrame, cmap: ColumnMap) -> ValidationReport:
    """Check a raw panel against its column map. Returns a report; raises nothing."""
    rep = ValidationReport(n_obs=len(df))
    roles = {
        "unit": cmap.unit, "time": cmap.time, "outcome": cmap.outcome, "cohort": cmap.cohort,
        "treated": cmap.treated, "threshold": cmap.threshold, "regime": cmap.regime,
        **{f"controls[{c}]": c for c in cmap.controls},
        **{f"mediators[{c}]": c for c in cmap.mediators},
        **{f"groups.{g}": c for g, c in cmap.groups.items()},
    }
    missing = False
    for role, col in roles.items():
        if col is not None and col not in df.columns:
            missing = True
            _add(rep, "error", "missing_column",
                 f"column '{col}' (role {role}) is not in the data; columns are: "
                 f"{', '.join(map(str, df.columns[:30]))}", column=col)
    if cmap.unit not in df.columns or cmap.time not in df.columns:
        return rep

    _check_roles(rep, cmap)
    unit = df[cmap.unit]
    # the unit ids as integer codes, computed once (NaN for a missing id): every per-unit
    # grouping below uses them (grouping a million string ids anew each time took most of a load)
    codes, uniques = pd.factorize(unit)
    ucode = pd.Series(np.where(codes < 0, np.nan, codes), index=df.index)
    rep.n_units = len(uniques)
    for i in np.flatnonzero(unit.isna().to_numpy()):
        _add(rep, "error", "missing_unit",
             f"column '{cmap.unit}' (unit), row {i}: the unit id is missing; every row needs one",
             column=cmap.unit, row=int(i))

    # time must be numeric (years or integer periods)
    time, note = time_as_numeric(df[cmap.time])
    if note:
        _add(rep, "warning", "time_converted",
             f"column '{cmap.time}' (time): {note} (a panel's periods must be numeric)",
             column=cmap.time)
    bad_time = time.isna() | ~np.isfinite(time.astype(float))
    for i in np.flatnonzero(bad_time.to_numpy()):
        _add(rep, "error", "non_numeric", f"column '{cmap.time}' (time), unit {_py(unit.iloc[i])!r}, "
             f"row {i}: value {_py(df[cmap.time].iloc[i])!r} is not a finite number",
             column=cmap.time, unit=unit.iloc[i], row=int(i), value=df[cmap.time].iloc[i])
    rep.n_periods = int(time.nunique())
    if rep.n_periods < 2:
        _add(rep, "error", "too_few_periods",
             f"column '{cmap.time}' (time) has {rep.n_periods} distinct period(s); a panel needs at least 2",
             column=cmap.time)

    dup = pd.DataFrame({"u": codes, "t": time.to_numpy()}).duplicated(keep="first")
    for i in np.flatnonzero(dup.to_numpy()):
        shown = _py(time.iloc[i]) if note else _py(df[cmap.time].iloc[i])
        _add(rep, "error", "duplicate_row",
             f"unit {_py(unit.iloc[i])!r}, time {shown!r} appears more than once (row {i})"
             + (f" after {note}; aggregate to one row per unit and year" if note else ""),
             column=cmap.time, unit=unit.iloc[i], row=int(i), value=shown)

    numeric_roles = {r: c for r, c in roles.items()
                     if c is not None and c in df.columns and r not in ("unit", "time", "cohort")
                     and not r.startswith("groups.")}
    for role, col in numeric_roles.items():
        if pd.api.types.is_datetime64_any_dtype(df[col]) or pd.api.types.is_timedelta64_dtype(df[col]):
            _add(rep, "error", "non_numeric",
                 f"column '{col}' ({role}) holds dates or durations, not numbers", column=col)
            continue
        vals = pd.to_numeric(df[col], errors="coerce").astype(float)
        bad = ~np.isfinite(vals.to_numpy())
        for i in np.flatnonzero(bad):
            raw = df[col].iloc[i]
            what = "is missing" if pd.isna(raw) else ("is not finite" if isinstance(raw, (int, float, np.number)) else "is not numeric")
            _add(rep, "error", "non_numeric",
                 f"column '{col}' ({role}), unit {_py(unit.iloc[i])!r}, row {i}: value {_py(raw)!r} {what}",
                 column=col, unit=unit.iloc[i], row=int(i), value=None if pd.isna(raw) else raw)
        huge = np.isfinite(vals.to_numpy()) & (np.abs(vals.to_numpy()) > MAX_ABS_VALUE)
        for i in np.flatnonzero(huge)[:20]:
            _add(rep, "error", "value_too_large",
                 f"column '{col}' ({role}), unit {_py(unit.iloc[i])!r}, row {i}: value {vals.iloc[i]:g} "
                 f"exceeds {MAX_ABS_VALUE:g} in magnitude; its squares overflow double precision "
                 "(rescale the column, e.g. to thousands or logs)",
                 column=col, unit=unit.iloc[i], row=int(i), value=float(vals.iloc[i]))
        finite = vals[np.isfinite(vals.to_numpy())]
        if role == "outcome" and len(finite) and finite.nunique() == 1:
            _add(rep, "error", "constant_outcome",
                 f"column '{col}' (outcome) takes the single value {finite.iloc[0]:g} in every row; "
                 "there is no variation to explain", column=col, value=float(finite.iloc[0]))

    if cmap.cohort and cmap.cohort in df.columns:
        _check_cohort(rep, df, cmap, unit, time, ucode)
    if cmap.treated and cmap.treated in df.columns:
        _check_treated(rep, df, cmap, unit, time, ucode)
    for gname, col in cmap.groups.items():
        if col in df.columns:
            for i in np.flatnonzero(df[col].isna().to_numpy())[:20]:
                _add(rep, "error", "missing_group",
                     f"group '{gname}' (column '{col}'), unit {_py(unit.iloc[i])!r}, row {i}: the level "
                     "is missing", column=col, unit=unit.iloc[i], row=int(i))
            n_levels = df[col].nunique()
            if n_levels < 2:
                _add(rep, "error", "single_level_group",
                     f"group '{gname}' (column '{col}') has {n_levels} level(s); heterogeneity needs "
                     "at least 2 (drop the group from the map)", column=col, value=int(n_levels))
            counts = ucode.groupby(df[col], dropna=False).nunique()
            for level, n in counts.items():
                if n < 2:
                    _add(rep, "error", "single_unit_group",
                         f"group '{gname}' (column '{col}'): level {_py(level)!r} has only {n} unit; "
                         "a group effect needs at least 2 units (merge it with a neighbour)",
                         column=col, value=level)
    if cmap.threshold and cmap.threshold in df.columns:
        nq = pd.to_numeric(df[cmap.threshold], errors="coerce").nunique()
        if nq < MIN_THRESHOLD_VALUES:
            _add(rep, "error", "threshold_too_few_values",
                 f"column '{cmap.threshold}' (threshold) has {nq} distinct values; a threshold "
                 f"search needs at least {MIN_THRESHOLD_VALUES}", column=cmap.threshold, value=int(nq))

    if not missing and not bad_time.any():
        per_unit = time.groupby(ucode).nunique()
        rep.balanced = bool((per_unit == rep.n_periods).all() and not dup.any())
        if not rep.balanced:
            short = per_unit[per_unit < rep.n_periods]
            _add(rep, "warning", "unbalanced",
                 f"unbalanced panel: {len(short)} of {rep.n_units} units miss some of the "
                 f"{rep.n_periods} periods (accepted by the DID, event-study and mediation models; "
                 "the threshold regression needs a balanced panel)")
    return rep


def _check_cohort(rep, df, cmap, unit, time, ucode):
    col = cmap.cohort
    raw = df[col]
    coh, note = time_as_numeric(raw)
    if note:
        _add(rep, "warning", "time_converted", f"column '{col}' (cohort): {note}", column=col)
    notnum = raw.notna() & coh.isna() & (raw.astype(str).str.strip() != "")
    for i in np.flatnonzero(notnum.to_numpy()):
        _add(rep, "error", "non_numeric",
             f"column '{col}' (cohort), unit {_py(unit.iloc[i])!r}, row {i}: value {_py(raw.iloc[i])!r} is not numeric",
             column=col, unit=unit.iloc[i], row=int(i), value=raw.iloc[i])
    coh = coh.where(coh != 0)  # 0 = never treated
    varying = coh.groupby(ucode).nunique(dropna=False)
    for code in varying.index[varying > 1]:
        u = unit[ucode == code].iloc[0]
        vals = sorted({("never" if pd.isna(v) else v) for v in coh[unit == u]}, key=str)
        _add(rep, "error", "cohort_varies",
             f"column '{col}' (cohort), unit {_py(u)!r}: the first treated period must be the same in "
             f"every row, found {vals}", column=col, unit=u)
    tmin, tmax = time.min(), time.max()
    outside = coh.notna() & ((coh < tmin) | (coh > tmax))
    for u, v in coh[outside].groupby(unit[outside]).first().items():
        _add(rep, "error", "cohort_out_of_range",
             f"column '{col}' (cohort), unit {_py(u)!r}: first treated period {v:g} is outside the "
             f"observed range {tmin:g}–{tmax:g}", column=col, unit=u, value=float(v))
    ever = coh.notna().groupby(ucode).any()  # vectorised: no Python call per unit
    if len(ever) and not ever.any():
        _add(rep, "error", "no_treated_units",
             f"column '{col}' (cohort): no unit is ever treated (every value is empty, 0 or "
             "missing); there is no effect to estimate", column=col)
    if len(ever) and ever.all():
        _add(rep, "error", "no_comparison_units",
             f"column '{col}' (cohort): every unit is treated at some point; the design needs "
             "never-treated comparison units", column=col)


def _check_treated(rep, df, cmap, unit, time, ucode):
    col = cmap.treated
    d = pd.to_numeric(df[col], errors="coerce")
    notbin = d.notna() & ~d.isin([0, 1])
    for i in np.flatnonzero(notbin.to_numpy()):
        _add(rep, "error", "treated_not_binary",
             f"column '{col}' (treated), unit {_py(unit.iloc[i])!r}, row {i}: value {_py(df[col].iloc[i])!r} "
             "is not 0 or 1", column=col, unit=unit.iloc[i], row=int(i), value=df[col].iloc[i])
    order = np.lexsort((time.to_numpy(), ucode.to_numpy()))
    s = pd.DataFrame({"u": ucode.to_numpy()[order], "t": time.to_numpy()[order], "d": d.to_numpy()[order],
                      "unit": unit.to_numpy()[order]})
    s["prev"] = s.groupby("u")["d"].shift()
    off = s[(s["prev"] == 1) & (s["d"] == 0)]
    for _, r in off.groupby("u").first().reset_index().iterrows():
        _add(rep, "error", "treatment_switches_off",
             f"column '{col}' (treated), unit {_py(r['unit'])!r}: treatment switches off at time {r['t']:g}; "
             "the indicator must be absorbing (once 1, always 1)", column=col, unit=r["unit"], value=r["t"])
    ever = s.groupby("u")["d"].max()
    if len(ever) and not (ever == 1).any():
        _add(rep, "error", "no_treated_units",
             f"column '{col}' (treated): no unit is ever treated (the indicator is 0 everywhere); "
             "there is no effect to estimate", column=col)
    if len(ever) and (ever == 1).all():
        _add(rep, "error", "no_comparison_units",
             f"column '{col}' (treated): every unit is treated at some point; the design needs "
             "never-treated comparison units", column=col)


def _check_roles(rep, cmap):
    """A column may play one role only: the outcome is not also a control, mediator, treatment,
    threshold or regime; a mediator is not a control or the treatment; no role repeats a column."""
    single = {"unit": cmap.unit, "time": cmap.time, "outcome": cmap.outcome, "cohort": cmap.cohort,
              "treated": cmap.treated}
    lists = {"controls": list(cmap.controls), "mediators": list(cmap.mediators)}

    def clash(col, a, b):
        _add(rep, "error", "role_conflict",
             f"column '{col}' is given two roles, {a} and {b}; a column can play one role only",
             column=col)

    seen: dict[str, str] = {}
    for role, col in single.items():
        if col is None:
            continue
        if col in seen:
            clash(col, seen[col], role)
        seen.setdefault(col, role)
    for role, cols in lists.items():
        for col in dict.fromkeys(cols):
            if col in seen:
                clash(col, seen[col], role[:-1])
            seen.setdefault(col, role[:-1])
        dups = sorted({c for c in cols if cols.count(c) > 1})
        for col in dups:
            _add(rep, "error", "role_conflict", f"column '{col}' is listed twice in {role}", column=col)
    # the threshold and regime variables may be controls (Hansen's q may enter X), but not the
    # outcome, the treatment's source column or a mediator
    for role in ("threshold", "regime"):
        col = getattr(cmap, role)
        if col is None:
            continue
        if col in (cmap.outcome, cmap.unit, cmap.time, cmap.cohort) or col in cmap.mediators:
            clash(col, seen.get(col, "outcome"), role)
