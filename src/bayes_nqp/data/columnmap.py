"""The column map: which column of a user's panel plays which role.

A TOML file such as ``data/demo_map.toml``::

    unit = "city"
    time = "year"
    outcome = "nqp"
    cohort = "pilot_year"          # or: treated = "smart_city"
    controls = ["gdp_pc", "fin", "fdi", "gov", "infra"]
    mediators = ["human_capital", "sci_tech"]
    threshold = "upgrading"
    regime = "treated"             # optional; default the treatment indicator
    time_effects = true
    simulated = true               # optional provenance flag copied into every output

    [groups]
    region = "region"
    size = "size"
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..errors import ColumnMapError

_KNOWN = {
    "unit", "time", "outcome", "cohort", "treated", "controls", "mediators", "threshold",
    "regime", "groups", "time_effects", "simulated", "description",
}


@dataclass(frozen=True)
class ColumnMap:
    """Roles of columns. ``cohort`` (first treated period) or ``treated`` (absorbing 0/1)."""

    unit: str
    time: str
    outcome: str | None = None
    cohort: str | None = None
    treated: str | None = None
    controls: tuple[str, ...] = ()
    mediators: tuple[str, ...] = ()
    threshold: str | None = None
    regime: str | None = None
    groups: dict[str, str] = field(default_factory=dict)
    time_effects: bool = True
    simulated: bool = False
    description: str = ""

    @property
    def has_treatment(self) -> bool:
        return self.cohort is not None or self.treated is not None

    def used_columns(self) -> list[str]:
        """Every column the map names, in role order, without repeats."""
        cols = [self.unit, self.time, self.outcome, self.cohort, self.treated,
                *self.controls, *self.mediators, self.threshold, self.regime,
                *self.groups.values()]
        out: list[str] = []
        for c in cols:
            if c is not None and c not in out:
                out.append(c)
        return out

    def to_dict(self) -> dict:
        d = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None or v == () or v == {} or v == "":
                continue
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    @classmethod
    def from_dict(cls, raw: dict, source: str = "column map") -> "ColumnMap":
        unknown = sorted(set(raw) - _KNOWN)
        if unknown:
            raise ColumnMapError(
                f"{source}: unknown role(s) {', '.join(unknown)}; known roles are "
                f"{', '.join(sorted(_KNOWN))}"
            )
        for req in ("unit", "time"):
            if not isinstance(raw.get(req), str) or not raw.get(req):
                raise ColumnMapError(f"{source}: role '{req}' must name a column (a string)")
        if raw.get("cohort") and raw.get("treated"):
            raise ColumnMapError(
                f"{source}: give either 'cohort' (first treated period) or 'treated' "
                "(absorbing 0/1 indicator), not both"
            )
        for key in ("outcome", "cohort", "treated", "threshold", "regime"):
            if key in raw and not isinstance(raw[key], str):
                raise ColumnMapError(f"{source}: role '{key}' must be a column name (a string)")
        for key in ("controls", "mediators"):
            v = raw.get(key, [])
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ColumnMapError(f"{source}: role '{key}' must be a list of column names")
            raw = {**raw, key: tuple(v)}
        groups = raw.get("groups", {})
        if isinstance(groups, list):
            groups = {g: g for g in groups}
        if not isinstance(groups, dict) or not all(isinstance(v, str) for v in groups.values()):
            raise ColumnMapError(f"{source}: 'groups' must be a table of name = \"column\"")
        raw = {**raw, "groups": dict(groups)}
        return cls(**{k: v for k, v in raw.items()})


def read_column_map(path: str | Path) -> ColumnMap:
    """Read a column map from TOML."""
    path = Path(path)
    if not path.exists():
        raise ColumnMapError(f"column map not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ColumnMapError(f"{path}: not valid TOML ({exc})") from exc
    return ColumnMap.from_dict(raw, source=str(path))
