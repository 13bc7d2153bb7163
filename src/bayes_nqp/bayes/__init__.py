"""Bayesian models in PyMC, sampled with nutpie, diagnosed with ArviZ.

One module per model (did, heterogeneity, event_study, staggered, mediation, threshold), each
registering its class with ``@register(name)``; specs and prior sets live in models/*.toml.
"""

from __future__ import annotations

import importlib

from .base import MODELS, BayesModel, register
from .fit import Fit, fit, load_fit, make_model
from .spec import ModelSpec, PriorSet, load_prior_set, load_spec

#: the models in the order the full run fits them
ORDER = ("did", "heterogeneity", "event_study", "staggered", "mediation", "threshold")


def _load_models() -> None:
    for name in ORDER:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:  # a model not written yet is simply absent
            if exc.name != f"{__name__}.{name}":
                raise


__all__ = ["MODELS", "BayesModel", "register", "Fit", "fit", "load_fit", "make_model",
           "ModelSpec", "PriorSet", "load_prior_set", "load_spec", "ORDER"]
