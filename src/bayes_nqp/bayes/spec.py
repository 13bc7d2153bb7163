"""Model specs and prior sets: TOML under models/, read once into typed objects.

``models/<model>.toml``::

    [model]            # options the model class reads (likelihood, unit_effects, ...)
    likelihood = "normal"
    [sampler]          # full runs
    draws = 1000
    tune = 1000
    chains = 4
    target_accept = 0.9
    seed = 20250601
    adaptation = "diag"  # nutpie mass-matrix adaptation ("low_rank" for correlated posteriors)
    [quick]            # `--quick` overrides of [sampler]
    draws = 300

``models/priors/<set>.toml`` is a flat table, one entry per prior name, on the *standardised*
scale (outcome and continuous controls standardised to mean 0, sd 1; effects are reported back on
the outcome's original scale)::

    tau = { dist = "Normal", mu = 0.0, sigma = 1.0 }
    sigma = { dist = "HalfNormal", sigma = 1.0 }

A model reads the names it needs; a prior set missing one is an error naming it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..data import REPO_ROOT
from ..errors import SpecError

MODELS_DIR = REPO_ROOT / "models"
PRIORS_DIR = MODELS_DIR / "priors"

#: distributions a prior may name, with the hyperparameters each takes
DISTRIBUTIONS = {
    "Normal": ("mu", "sigma"),
    "StudentT": ("nu", "mu", "sigma"),
    "HalfNormal": ("sigma",),
    "HalfStudentT": ("nu", "sigma"),
    "HalfCauchy": ("beta",),
    "Exponential": ("lam",),
    "Gamma": ("alpha", "beta"),
    "Uniform": ("lower", "upper"),
    # sum-to-zero effects with a fixed scale (the year effects of the two-way models)
    "ZeroSumNormal": ("sigma",),
}


@dataclass(frozen=True)
class PriorSpec:
    """One prior: a PyMC distribution name and its hyperparameters."""

    dist: str
    params: dict[str, float]

    def describe(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.dist}({args})"

    def to_dict(self) -> dict:
        return {"dist": self.dist, **self.params}


@dataclass(frozen=True)
class PriorSet:
    name: str
    priors: dict[str, PriorSpec]
    source: str | None = None

    def __getitem__(self, key: str) -> PriorSpec:
        try:
            return self.priors[key]
        except KeyError:
            raise SpecError(
                f"prior set '{self.name}' has no prior '{key}'"
                f"{f' ({self.source})' if self.source else ''}; it has: {', '.join(sorted(self.priors))}"
            ) from None

    def to_dict(self) -> dict:
        return {"name": self.name, "contents": {k: v.to_dict() for k, v in self.priors.items()}}

    def structure(self) -> tuple:
        """What changes the compiled graph (families), not the hyperparameter values."""
        return tuple(sorted((k, v.dist) for k, v in self.priors.items()))


@dataclass(frozen=True)
class SamplerSettings:
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.9
    seed: int = 20250601
    cores: int | None = None
    #: nutpie's mass-matrix adaptation: "diag", or "low_rank" for posteriors with strong linear
    #: correlations (diagonal plus the leading eigenvectors of the posterior covariance)
    adaptation: str = "diag"

    def override(self, **kw) -> "SamplerSettings":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


@dataclass(frozen=True)
class ModelSpec:
    name: str
    options: dict = field(default_factory=dict)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    quick: SamplerSettings = field(default_factory=SamplerSettings)
    description: str = ""
    source: str | None = None

    def option(self, key, default=None):
        return self.options.get(key, default)

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "options": dict(self.options),
                "sampler": self.sampler.__dict__, "quick": self.quick.__dict__}


def _load_toml(path: Path, what: str) -> dict:
    if not path.exists():
        raise SpecError(f"{what} not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML ({exc})") from exc


def _prior(name: str, raw, source: str) -> PriorSpec:
    if not isinstance(raw, dict) or "dist" not in raw:
        raise SpecError(f"{source}: prior '{name}' must be a table with 'dist' and its parameters")
    dist = raw["dist"]
    if dist not in DISTRIBUTIONS:
        raise SpecError(f"{source}: prior '{name}' has unknown dist '{dist}'; "
                        f"use one of {', '.join(DISTRIBUTIONS)}")
    params = {k: v for k, v in raw.items() if k != "dist"}
    expected = set(DISTRIBUTIONS[dist])
    if set(params) != expected:
        raise SpecError(f"{source}: prior '{name}' ({dist}) needs exactly the parameters "
                        f"{sorted(expected)}, got {sorted(params)}")
    for k, v in params.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise SpecError(f"{source}: prior '{name}': parameter {k} must be a number, got {v!r}")
        if k in ("sigma", "beta", "lam", "alpha", "nu") and v <= 0:
            raise SpecError(f"{source}: prior '{name}': parameter {k} must be positive, got {v}")
    return PriorSpec(dist, {k: float(v) for k, v in params.items()})


def load_prior_set(name_or_path: str | Path | PriorSet = "default") -> PriorSet:
    """A prior set by name (models/priors/<name>.toml) or by path to a TOML file."""
    if isinstance(name_or_path, PriorSet):
        return name_or_path
    p = Path(name_or_path)
    if p.suffix != ".toml":
        p = PRIORS_DIR / f"{name_or_path}.toml"
        if not p.exists():
            known = sorted(x.stem for x in PRIORS_DIR.glob("*.toml"))
            raise SpecError(f"unknown prior set '{name_or_path}'; known: {', '.join(known)} "
                            "(or give a path to a .toml file)")
    raw = _load_toml(p, "prior set")
    raw.pop("description", None)
    return PriorSet(p.stem, {k: _prior(k, v, str(p)) for k, v in raw.items()}, str(p))


def load_spec(model: str, path: str | Path | None = None) -> ModelSpec:
    """The spec of a model: models/<model>.toml (or a given path)."""
    p = Path(path) if path else MODELS_DIR / f"{model}.toml"
    raw = _load_toml(p, f"model spec for '{model}'")
    unknown = set(raw) - {"model", "sampler", "quick"}
    if unknown:
        raise SpecError(f"{p}: unknown table(s) {sorted(unknown)}; use [model], [sampler], [quick]")
    sampler_keys = set(SamplerSettings.__dataclass_fields__)
    for tbl in ("sampler", "quick"):
        bad = set(raw.get(tbl, {})) - sampler_keys
        if bad:
            raise SpecError(f"{p}: [{tbl}] has unknown setting(s) {sorted(bad)}; known: {sorted(sampler_keys)}")
    sampler = SamplerSettings(**raw.get("sampler", {}))
    quick = sampler.override(**raw.get("quick", {}))
    options = dict(raw.get("model", {}))
    description = options.pop("description", "")
    return ModelSpec(model, options, sampler, quick, description, str(p))
