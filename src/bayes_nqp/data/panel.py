"""The validated panel: a canonical frame plus the roles that the models read.

The canonical frame ``Panel.df`` is sorted by unit and time and has these columns:

=============  =================================================================
``unit``       the unit id (original values)
``time``       the period, numeric (years or integer periods)
``unit_idx``   0..n_units-1, ``time_idx`` 0..n_periods-1
``y``          the outcome (absent when the map names none)
``D``          the absorbing 0/1 treatment indicator (when the map has a treatment)
``cohort``     first treated period, NaN for never-treated units
``rel_time``   time - cohort, NaN for never-treated units
=============  =================================================================

Controls, mediators, the threshold variable, the regime variable and group columns keep their
original names. The data layer knows nothing of models.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ColumnMapError, DataError, SectionSkipped
from .columnmap import ColumnMap, read_column_map
from .io import read_table, sha256
from .validate import ValidationReport, time_as_numeric, validate_frame

RESERVED = ("unit", "time", "unit_idx", "time_idx", "y", "D", "cohort", "rel_time")
REPO_ROOT = Path(__file__).resolve().parents[3]
DATA_DIR = REPO_ROOT / "data"
DEMO_PANEL = DATA_DIR / "demo_panel.csv"
DEMO_MAP = DATA_DIR / "demo_map.toml"


@dataclass
class Panel:
    df: pd.DataFrame
    cmap: ColumnMap
    report: ValidationReport
    source: str | None = None
    sha256: str | None = None

    # ---- shape -------------------------------------------------------------------------
    @property
    def units(self) -> np.ndarray:
        return self.df["unit"].drop_duplicates().to_numpy()

    @property
    def times(self) -> np.ndarray:
        return np.sort(self.df["time"].unique())

    @property
    def n_units(self) -> int:
        return int(self.df["unit_idx"].max()) + 1

    @property
    def n_periods(self) -> int:
        return int(self.df["time_idx"].max()) + 1

    @property
    def n_obs(self) -> int:
        return len(self.df)

    @property
    def balanced(self) -> bool:
        return self.n_obs == self.n_units * self.n_periods

    # ---- roles -------------------------------------------------------------------------
    @property
    def controls(self) -> list[str]:
        return list(self.cmap.controls)

    @property
    def mediators(self) -> list[str]:
        return list(self.cmap.mediators)

    @property
    def threshold(self) -> str | None:
        return self.cmap.threshold

    @property
    def regime(self) -> str | None:
        """Canonical column of the regressor whose slope switches at the threshold."""
        if self.cmap.regime is None or self.cmap.regime == self.cmap.treated:
            return "D" if self.has_treatment else None
        return self.cmap.regime

    @property
    def groups(self) -> dict[str, str]:
        return dict(self.cmap.groups)

    @property
    def has_treatment(self) -> bool:
        return "D" in self.df.columns

    @property
    def has_outcome(self) -> bool:
        return "y" in self.df.columns

    @property
    def time_effects(self) -> bool:
        return self.cmap.time_effects

    @property
    def simulated(self) -> bool:
        return bool(self.cmap.simulated)

    @property
    def cohorts(self) -> list[float]:
        """Distinct first-treated periods, ascending."""
        if "cohort" not in self.df:
            return []
        return sorted(self.df["cohort"].dropna().unique().tolist())

    def require(self, *roles: str, what: str = "this section") -> None:
        """Raise SectionSkipped naming the first role the map lacks."""
        checks = {
            "outcome": self.has_outcome,
            "treatment": self.has_treatment,
            "controls": bool(self.controls),
            "mediators": bool(self.mediators),
            "threshold": self.threshold is not None,
            "regime": self.regime is not None,
            "groups": bool(self.groups),
            "balanced": self.balanced,
            "staggered": len(self.cohorts) > 0,
        }
        for r in roles:
            if not checks[r]:
                if r == "balanced":
                    raise SectionSkipped(f"{what} needs a balanced panel; this one has "
                                         f"{self.n_obs} of {self.n_units}×{self.n_periods} unit-periods")
                if r == "treatment":
                    raise SectionSkipped(f"{what} needs a treatment: the column map names neither "
                                         "'cohort' nor 'treated'")
                raise SectionSkipped(f"{what} needs the role '{r}', which the column map does not give")

    def data_block(self) -> dict:
        """The ``data`` entry of every summary.json (``map_sha256``: the column map's, so that
        results made with another map are not mixed in; see :mod:`bayes_nqp.guard`)."""
        from ..guard import map_sha256

        return {
            "path": self.source,
            "sha256": self.sha256,
            "map_sha256": map_sha256(self.cmap.to_dict()),
            "simulated": self.simulated,
            "n_obs": self.n_obs,
            "n_units": self.n_units,
            "periods": [int(t) if float(t).is_integer() else float(t) for t in self.times],
        }

    def subset(self, mask) -> "Panel":
        """A panel of the rows where ``mask`` holds, re-indexed (for split samples)."""
        raw = self.df.loc[np.asarray(mask)].copy()
        return Panel(_index(raw), self.cmap, self.report, self.source, self.sha256)

    def __repr__(self) -> str:
        sim = ", simulated" if self.simulated else ""
        return (f"Panel({self.n_units} units × {self.n_periods} periods, {self.n_obs} obs"
                f"{'' if self.balanced else ', unbalanced'}{sim})")


def _index(df: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by unit, then time (stable), with ``unit_idx`` and ``time_idx``. The unit ids
    are factorised once (sorted) and the rows ordered by their codes: sorting a million string
    ids directly took most of a load."""
    unit_idx = pd.factorize(df["unit"], sort=True)[0]
    time_idx = pd.factorize(df["time"], sort=True)[0]
    order = np.lexsort((time_idx, unit_idx))  # stable: equal keys keep their order
    df = df.iloc[order].reset_index(drop=True)
    df["unit_idx"] = unit_idx[order]
    df["time_idx"] = time_idx[order]
    return df


def _canonical(raw: pd.DataFrame, cmap: ColumnMap) -> pd.DataFrame:
    keep = cmap.used_columns()
    renames = {cmap.unit: "unit", cmap.time: "time"}
    if cmap.outcome:
        renames[cmap.outcome] = "y"
    others = [c for c in keep if c not in renames and c not in (cmap.cohort, cmap.treated)]
    clash = [c for c in others if c in RESERVED]
    if clash:
        raise ColumnMapError(
            f"column(s) {clash} clash with names bayes-nqp reserves ({', '.join(RESERVED)}); "
            "rename them in the data"
        )
    df = pd.DataFrame({renames.get(c, c): raw[c] for c in keep if c not in (cmap.cohort, cmap.treated)})
    df["time"] = time_as_numeric(df["time"])[0]
    if (df["time"] % 1 == 0).all():
        df["time"] = df["time"].astype(int)
    for c in df.columns:
        if c not in ("unit", "time") and c not in cmap.groups.values():
            df[c] = pd.to_numeric(df[c]).astype(float)
    if cmap.cohort:
        coh = time_as_numeric(raw[cmap.cohort])[0]
        df["cohort"] = coh.where(coh != 0)
        df["D"] = ((df["time"] >= df["cohort"]) & df["cohort"].notna()).astype(float)
    elif cmap.treated:
        d = pd.to_numeric(raw[cmap.treated]).astype(float)
        df["D"] = d
        first = df["time"].where(d == 1).groupby(df["unit"]).transform("min")
        df["cohort"] = first
    if "cohort" in df:
        df["rel_time"] = df["time"] - df["cohort"]
    return _index(df)


def panel_from_frame(raw: pd.DataFrame, cmap: ColumnMap | dict, *, source: str | None = None,
                     digest: str | None = None, strict: bool = True) -> Panel:
    """Validate a DataFrame against a column map and build the Panel.

    Raises DataError (with ``.report``) when the report has errors and ``strict``.
    """
    if not isinstance(cmap, ColumnMap):
        cmap = ColumnMap.from_dict(cmap)
    if not isinstance(raw, pd.DataFrame):
        raise DataError(f"a panel is a pandas DataFrame, got {type(raw).__name__}")
    report = validate_frame(raw, cmap)
    if not report.ok:
        if strict:
            n = len(report.errors)
            raise DataError(f"the panel has {n} error(s):\n{report.format()}", report=report)
        return Panel(pd.DataFrame(), cmap, report, source, digest)
    return Panel(_canonical(raw, cmap), cmap, report, source, digest)


def load_panel(path: str | Path | pd.DataFrame | None = None,
               columns: str | Path | ColumnMap | dict | None = None,
               *, strict: bool = True) -> Panel:
    """Read and validate a panel. Defaults: the bundled demo panel and its map.

    ``path`` is a file (CSV, Parquet, .dta, Excel) or a pandas DataFrame already in memory;
    ``columns`` is the column map: a TOML file, a dict with the same keys
    (``{"unit": "state", "time": "year", "outcome": "y", "treated": "d"}``) or a ColumnMap.
    """
    if isinstance(path, pd.DataFrame):
        if columns is None:
            raise ColumnMapError("a DataFrame needs its column map: load_panel(df, columns={'unit': ..., "
                                 "'time': ..., 'outcome': ..., 'treated': ...}) or a TOML path")
        cmap = columns if isinstance(columns, (ColumnMap, dict)) else read_column_map(columns)
        digest = hashlib.sha256(pd.util.hash_pandas_object(path, index=False).to_numpy().tobytes()
                                + repr(list(map(str, path.columns))).encode()).hexdigest()
        return panel_from_frame(path, cmap, source="<DataFrame>", digest=digest, strict=strict)
    if path is not None and not isinstance(path, (str, Path)):
        raise DataError(f"a data file is a path or a pandas DataFrame, got {type(path).__name__}")
    path = Path(path) if path is not None else DEMO_PANEL
    if columns is None:
        columns = DEMO_MAP
    cmap = columns if isinstance(columns, (ColumnMap, dict)) else read_column_map(columns)
    raw = read_table(path)
    return panel_from_frame(raw, cmap, source=str(path), digest=sha256(path), strict=strict)


def demo_panel() -> Panel:
    """The bundled simulated panel on the real 287-city frame (data/demo_panel.csv)."""
    if not DEMO_PANEL.exists():
        raise DataError(f"the demo panel is missing at {DEMO_PANEL}; run `bayes-nqp simulate`")
    return load_panel(DEMO_PANEL, DEMO_MAP)
