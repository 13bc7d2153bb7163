"""The model registry: the one place that lists the Bayesian models.

What to know first: ``MODULES`` below is the only list of model names in the code. Everything
else (the CLI's choices, the pipeline's fit, further-fit and sensitivity stages, the report's
sections, the tests) iterates over :func:`names` / :func:`info`. What the rest of the program needs to know of
a model is declared in ``[model]`` of its ``models/<name>.toml``, read here without importing
PyMC (the report needs it, and the report never fits anything)::

    [model]
    title = "Difference-in-differences (did)"     # the report section's heading
    intro = "Hierarchical two-way DID: ..."        # one paragraph under it
    sensitivity = true                             # refit the key estimands under each prior set
    figures = ["event_time"]                       # extra report figures (report/figures.py)
    headline = "tau"                               # the one estimand calibrations check
    loo_group = "outcome"                          # LOO compares only models of one group
    parallel_trends = true                         # identified by parallel trends (verdicts)
    stages = { key = "module:function" }           # further fits, each a stage (below)

A model's further fits (the threshold model's 0/1/2-threshold comparison: ``compare_thresholds =
"bayes_nqp.bayes.threshold:comparison_stage"``) are not part of its ``estimands()``: each is a
stage of its own, declared in ``stages`` as ``key = "module:function"``.
The function takes the main :class:`~.bayes.fit.Fit` and the panel and returns a result with
``to_json()`` (saved by ``bayes-nqp run`` as ``DIR/<model>/<key>.json``, next to the fit's
``summary.json`` and tied to it by :func:`.contract.fit_identity`) and ``extras()`` (what
``bn.fit`` adds to the Fit's ``extras``, and what the report reads into them); it raises
:class:`~.errors.SectionSkipped` with the reason when it does not apply.

The model's key estimands are declared on its class (``key_estimands``), because some depend on
the data (one indirect effect per mediator). Every other key in ``[model]`` is an option the
model class reads.

Adding a model: a module with a ``BayesModel`` subclass decorated ``@register("<name>")``, a
``models/<name>.toml``, and one line in ``MODULES``. A model living outside this package (a
plugin, a test) is added at run time with :func:`register_model`, or through the environment
variable ``BAYES_NQP_MODELS`` (``name=module[:path/to/spec.toml]``, comma-separated), read when
this module is imported, so that a subprocess (``bayes-nqp run --models toy``) sees it too.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .data import REPO_ROOT
from .errors import ModelError, SpecError

MODELS_DIR = REPO_ROOT / "models"

#: model name -> the module that defines it, in the order the full run fits them.
#: THE registry: one line per model.
MODULES: dict[str, str] = {
    "did": "bayes_nqp.bayes.did",
    "heterogeneity": "bayes_nqp.bayes.heterogeneity",
    "event_study": "bayes_nqp.bayes.event_study",
    "staggered": "bayes_nqp.bayes.staggered",
    "mediation": "bayes_nqp.bayes.mediation",
    "threshold": "bayes_nqp.bayes.threshold",
}
#: model name -> its spec file, for models whose TOML is not models/<name>.toml
SPECS: dict[str, Path] = {}
#: the keys of [model] that describe the model to the program rather than configure it
REGISTRY_KEYS = ("title", "intro", "sensitivity", "figures", "description", "headline", "loo_group",
                 "parallel_trends", "stages")
ENV = "BAYES_NQP_MODELS"


@dataclass(frozen=True)
class ModelInfo:
    """What the program knows of a model without importing it."""

    name: str
    module: str
    spec_path: Path
    title: str
    intro: str = ""
    description: str = ""
    sensitivity: bool = False
    figures: tuple[str, ...] = ()
    headline: str | None = None
    #: models of the same data and likelihood share a group; the report's LOO comparison ranks
    #: only models within one group (None: the model is never ranked against another)
    loo_group: str | None = None
    #: identified by parallel trends: the event study's pre-trend breakdown bears on its claims
    parallel_trends: bool = False
    #: further fits after the main one, each a stage of its own: (key, "module:function"), in order
    stages: tuple[tuple[str, str], ...] = ()


def register_model(name: str, module: str, spec: str | Path | None = None) -> None:
    """Add (or replace) a model at run time: ``module`` defines it with ``@register(name)``;
    ``spec`` is its TOML when it is not ``models/<name>.toml``."""
    MODULES[name] = module
    if spec is not None:
        SPECS[name] = Path(spec)
    _cache.pop(name, None)


def unregister_model(name: str) -> None:
    MODULES.pop(name, None)
    SPECS.pop(name, None)
    _cache.pop(name, None)


def _from_env() -> None:
    for item in filter(None, (s.strip() for s in os.environ.get(ENV, "").split(","))):
        name, sep, rest = item.partition("=")
        if not sep or not rest:
            raise ModelError(f"{ENV}: '{item}' is not name=module[:spec.toml]")
        module, _, spec = rest.partition(":")
        register_model(name.strip(), module.strip(), spec.strip() or None)


def names() -> tuple[str, ...]:
    """The registered models, in run and report order."""
    return tuple(MODULES)


def spec_path(name: str) -> Path:
    return SPECS.get(name, MODELS_DIR / f"{name}.toml")


def canonical(name: str) -> str:
    """A model name as typed (``event-study``) -> the registered name (``event_study``)."""
    key = name.replace("-", "_")
    if key not in MODULES:
        raise ModelError(f"unknown model '{name}'; choose from {', '.join(MODULES)}")
    return key


_cache: dict[str, ModelInfo] = {}


def info(name: str) -> ModelInfo:
    """The registry entry of ``name`` (its [model] declarations read from its spec)."""
    name = canonical(name)
    if name not in _cache:
        p = spec_path(name)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8")) if p.exists() else {}
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{p}: not valid TOML ({exc})") from exc
        m = raw.get("model", {})
        figures = m.get("figures", [])
        if isinstance(figures, str):
            figures = [figures]
        stages = m.get("stages", {})
        if not isinstance(stages, dict) or not all(isinstance(v, str) and ":" in v for v in stages.values()):
            raise SpecError(f'{p}: [model] stages must be a table of key = "module:function"')
        _cache[name] = ModelInfo(name=name, module=MODULES[name], spec_path=p,
                                 title=str(m.get("title") or name), intro=str(m.get("intro", "")),
                                 description=str(m.get("description", "")),
                                 sensitivity=bool(m.get("sensitivity", False)),
                                 figures=tuple(figures),
                                 headline=str(m["headline"]) if m.get("headline") else None,
                                 loo_group=str(m["loo_group"]) if m.get("loo_group") else None,
                                 parallel_trends=bool(m.get("parallel_trends", False)),
                                 stages=tuple(stages.items()))
    return _cache[name]


def infos() -> dict[str, ModelInfo]:
    return {n: info(n) for n in names()}


def headline_models() -> tuple[str, ...]:
    """The models that declare a headline estimand (the one a calibration checks)."""
    return tuple(n for n in names() if info(n).headline)


def sensitivity_models() -> tuple[str, ...]:
    """The models whose key estimands get prior-sensitivity refits."""
    return tuple(n for n in names() if info(n).sensitivity)


def stage_function(target: str):
    """The function a ``stages`` entry names (``"module:function"``), imported."""
    import importlib

    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise SpecError(f"stage function {target!r} cannot be imported: {exc}") from exc


def load_module(name: str):
    """Import the module that registers ``name`` (the model classes self-register on import)."""
    import importlib

    return importlib.import_module(MODULES[canonical(name)])


_from_env()
