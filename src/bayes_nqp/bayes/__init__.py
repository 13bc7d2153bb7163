"""Bayesian models in PyMC, sampled with nutpie, diagnosed with ArviZ.

One module per model (listed in :mod:`bayes_nqp.registry`), each registering its class with
``@register(name)``; specs and prior sets live in models/*.toml.
"""

from __future__ import annotations

from .. import registry
from .base import MODELS, BayesModel, register
from .fit import Fit, fit, load_fit, make_model
from .spec import ModelSpec, PriorSet, load_prior_set, load_spec



def __getattr__(attr):
    if attr == "ORDER":  # the registered models, in the order the full run fits them
        return registry.names()
    raise AttributeError(attr)


def _load_models() -> None:
    """Import every registered model's module (each registers its class on import)."""
    for name in registry.names():
        module = registry.MODULES[name]
        try:
            registry.load_module(name)
        except ModuleNotFoundError as exc:  # a model not written yet is simply absent
            if exc.name != module:
                raise


__all__ = ["MODELS", "BayesModel", "register", "Fit", "fit", "load_fit", "make_model",
           "ModelSpec", "PriorSet", "load_prior_set", "load_spec", "ORDER"]
