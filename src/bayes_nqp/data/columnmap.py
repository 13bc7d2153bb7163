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

    def __post_init__(self):
        # a map built in Python (not read from TOML) gets the same checks on its value types
        for key in ("unit", "time"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ColumnMapError(f"column map: role '{key}' must name a column (a string)")
        for key in ("outcome", "cohort", "treated", "threshold", "regime"):
            v = getattr(self, key)
            if v is not None and (not isinstance(v, str) or not v):
                raise ColumnMapError(f"column map: role '{key}' must be a column name (a string), got {v!r}")
        for key in ("controls", "mediators"):
            v = getattr(self, key)
            if isinstance(v, list):
                object.__setattr__(self, key, v := tuple(v))
            if not isinstance(v, tuple) or not all(isinstance(x, str) and x for x in v):
                raise ColumnMapError(f"column map: role '{key}' must be a list of column names, got {v!r}")
        for key in ("time_effects", "simulated"):
            v = getattr(self, key)
            if not isinstance(v, bool):
                raise ColumnMapError(
                    f"column map: '{key}' must be true or false (a TOML boolean, unquoted), got {v!r}")
        if not isinstance(self.description, str):
            raise ColumnMapError(f"column map: 'description' must be a string, got {self.description!r}")
        if not isinstance(self.groups, dict) or not all(
                isinstance(k, str) and k and isinstance(v, str) and v for k, v in self.groups.items()):
            raise ColumnMapError("column map: 'groups' must be a table of name = \"column\"")

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
        if not isinstance(raw, dict):
            raise ColumnMapError(f"{source}: a column map is a table of roles, got {type(raw).__name__}")
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
        for key in ("time_effects", "simulated"):
            if key in raw and not isinstance(raw[key], bool):
                raise ColumnMapError(f"{source}: '{key}' must be true or false (a TOML boolean, "
                                     f"unquoted), got {raw[key]!r}")
        try:
            return cls(**{k: v for k, v in raw.items()})
        except ColumnMapError as exc:
            raise ColumnMapError(str(exc).replace("column map:", f"{source}:", 1)) from None


def read_column_map(path: str | Path) -> ColumnMap:
    """Read a column map from TOML."""
    if not isinstance(path, (str, Path)):
        raise ColumnMapError(f"a column map is a path to a TOML file, a dict or a ColumnMap, "
                             f"got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise ColumnMapError(f"column map not found: {path}")
    if path.is_dir():
        raise ColumnMapError(f"{path} is a folder; --map needs a TOML file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ColumnMapError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the "
                             "map as UTF-8") from None
    except OSError as exc:
        raise ColumnMapError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ColumnMapError(f"{path}: not valid TOML ({exc})") from exc
    return ColumnMap.from_dict(raw, source=str(path))
