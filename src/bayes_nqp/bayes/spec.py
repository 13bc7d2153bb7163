"""Model specs and prior sets: TOML under models/, read once into typed objects.

``models/<model>.toml``::

    [model]            # what the program knows of the model (title, intro, sensitivity, figures:
    title = "..."      # see registry.py), and the options the model class reads (likelihood, ...)
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
    [[compare]]        # where the replication holds an estimand's counterpart (compare.py)
    param = "tau"
    estimate = "did.estimate"

``models/priors/<set>.toml`` is a flat table, one entry per prior name, on the *standardised*
scale (outcome and continuous controls standardised to mean 0, sd 1; effects are reported back on
the outcome's original scale)::

    tau = { dist = "Normal", mu = 0.0, sigma = 1.0 }
    sigma = { dist = "HalfNormal", sigma = 1.0 }

A model reads the names it needs; a prior set missing one is an error naming it.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import SpecError
from ..registry import MODELS_DIR
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


#: nutpie's mass-matrix adaptations
ADAPTATIONS = ("diag", "low_rank")


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

    def __post_init__(self):
        """Refuse values the sampler would choke on (or crash with) before anything compiles."""
        def whole(name, lo, hi=None):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise SpecError(f"sampler setting {name} must be a whole number, got {v!r}")
            if v < lo or (hi is not None and v > hi):
                rng = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
                raise SpecError(f"sampler setting {name} must be {rng}, got {v}")

        whole("draws", 1)
        whole("tune", 0)
        whole("chains", 1, 256)
        whole("seed", 0, 2**63 - 1)
        if self.cores is not None:
            whole("cores", 1)
        ta = self.target_accept
        if isinstance(ta, bool) or not isinstance(ta, (int, float)) or not 0 < ta < 1:
            raise SpecError(f"sampler setting target_accept must be a number strictly between 0 "
                            f"and 1, got {ta!r}")
        if self.adaptation not in ADAPTATIONS:
            raise SpecError(f"sampler setting adaptation must be one of {', '.join(ADAPTATIONS)}, "
                            f"got {self.adaptation!r}")

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
    #: the [[compare]] entries: where the replication holds each estimand's counterpart
    compare: tuple = ()

    def option(self, key, default=None):
        return self.options.get(key, default)

    def choice(self, key: str, default, allowed, model: str | None = None):
        """The option ``key`` (``default`` when the spec does not set it); SpecError naming the
        model, the choices and the spec file unless it is one of ``allowed``."""
        value = self.options.get(key, default)
        if value not in allowed:
            where = f" ({self.source})" if self.source else ""
            raise SpecError(f"{model or self.name}: {key} '{value}' is not one of "
                            f"{', '.join(allowed)}{where}")
        return value

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "options": dict(self.options),
                "sampler": self.sampler.__dict__, "quick": self.quick.__dict__}


def _load_toml(path: Path, what: str) -> dict:
    if not path.exists():
        raise SpecError(f"{what} not found: {path}")
    if path.is_dir():
        raise SpecError(f"{what}: {path} is a folder, not a TOML file")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot be read ({exc.strerror or exc})") from None
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
        if not math.isfinite(v):
            raise SpecError(f"{source}: prior '{name}': parameter {k} must be finite, got {v}")
        if k in ("sigma", "beta", "lam", "alpha", "nu") and v <= 0:
            raise SpecError(f"{source}: prior '{name}': parameter {k} must be positive, got {v}")
    if dist == "Uniform" and not params["lower"] < params["upper"]:
        raise SpecError(f"{source}: prior '{name}' (Uniform) needs lower < upper, got "
                        f"{params['lower']} and {params['upper']}")
    return PriorSpec(dist, {k: float(v) for k, v in params.items()})


def load_prior_set(name_or_path: str | Path | PriorSet = "default") -> PriorSet:
    """A prior set by name (models/priors/<name>.toml) or by path to a TOML file."""
    if isinstance(name_or_path, PriorSet):
        return name_or_path
    if not isinstance(name_or_path, (str, Path)):
        raise SpecError(f"a prior set is a name, a path to a .toml file or a PriorSet, got "
                        f"{type(name_or_path).__name__}")
    p = Path(name_or_path)
    if p.suffix != ".toml":
        p = PRIORS_DIR / f"{name_or_path}.toml"
        if not p.exists():
            known = sorted(x.stem for x in PRIORS_DIR.glob("*.toml"))
            raise SpecError(f"unknown prior set '{name_or_path}'; known: {', '.join(known)} "
                            "(or give a path to a .toml file)")
    raw = _load_toml(p, "prior set")
    raw.pop("description", None)
    if not raw:
        raise SpecError(f"{p}: the prior set is empty")
    return PriorSet(p.stem, {k: _prior(k, v, str(p)) for k, v in raw.items()}, str(p))


def load_spec(model: str, path: str | Path | None = None) -> ModelSpec:
    """The spec of a model: models/<model>.toml (or a given path)."""
    from .. import registry

    p = Path(path) if path else registry.spec_path(model)
    raw = _load_toml(p, f"model spec for '{model}'")
    unknown = set(raw) - {"model", "sampler", "quick", "compare"}
    if unknown:
        raise SpecError(f"{p}: unknown table(s) {sorted(unknown)}; use [model], [sampler], [quick], "
                        "[[compare]]")
    sampler_keys = set(SamplerSettings.__dataclass_fields__)
    for tbl in ("sampler", "quick"):
        bad = set(raw.get(tbl, {})) - sampler_keys
        if bad:
            raise SpecError(f"{p}: [{tbl}] has unknown setting(s) {sorted(bad)}; known: {sorted(sampler_keys)}")
    try:
        sampler = SamplerSettings(**raw.get("sampler", {}))
        quick = sampler.override(**raw.get("quick", {}))
    except SpecError as exc:
        raise SpecError(f"{p}: {exc}") from None
    options = dict(raw.get("model", {}))
    description = options.pop("description", "")
    for key in registry.REGISTRY_KEYS:  # declarations for the registry, not options
        options.pop(key, None)
    compare = raw.get("compare", [])
    if not isinstance(compare, list) or not all(isinstance(c, dict) and {"param", "estimate"} <= set(c)
                                                   for c in compare):
        raise SpecError(f"{p}: every [[compare]] entry needs 'param' and 'estimate' (see bayes_nqp/compare.py)")
    return ModelSpec(model, options, sampler, quick, description, str(p), tuple(compare))
