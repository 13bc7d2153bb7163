"""Turn a PriorSpec into a PyMC variable whose hyperparameters are ``pm.Data``.

Hyperparameters as data let a compiled model be refitted under another prior set of the same
families without recompiling (prior sensitivity): only the data values change.
"""

from __future__ import annotations

import numpy as np
import pymc as pm

from .spec import PriorSet, PriorSpec


def hyper_name(var: str, param: str) -> str:
    return f"prior__{var}__{param}"


def prior_rv(name: str, spec: PriorSpec, *, dims=None, shape=None, rv_name: str | None = None):
    """Create ``rv_name`` (default ``name``) ~ spec inside the current model context."""
    dist = getattr(pm, spec.dist)
    hyper = {p: pm.Data(hyper_name(rv_name or name, p), np.asarray(v, dtype=float))
             for p, v in spec.params.items()}
    kw = {}
    if dims is not None:
        kw["dims"] = dims
    if shape is not None:
        kw["shape"] = shape
    return dist(rv_name or name, **hyper, **kw)


def hyper_values(priors: PriorSet, used: dict[str, str]) -> dict[str, np.ndarray]:
    """The pm.Data values for a prior set: ``used`` maps rv name -> prior name in the set."""
    out = {}
    for rv, prior_name in used.items():
        spec = priors[prior_name]
        for p, v in spec.params.items():
            out[hyper_name(rv, p)] = np.asarray(v, dtype=float)
    return out
