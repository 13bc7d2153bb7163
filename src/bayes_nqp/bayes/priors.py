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


#: families on the whole real line: only these take a model's own sampling ``transform``
REAL_LINE = ("Normal", "StudentT")


def prior_rv(name: str, spec: PriorSpec, *, rv_name: str | None = None, **kw):
    """Create ``rv_name`` (default ``name``) ~ spec inside the current model context.

    Other keywords (``dims``, ``shape``, ``initval``, ``transform``) go to the distribution; a
    ``transform`` is dropped for a bounded family, which keeps its own default transform.
    """
    dist = getattr(pm, spec.dist)
    hyper = {p: pm.Data(hyper_name(rv_name or name, p), np.asarray(v, dtype=float))
             for p, v in spec.params.items()}
    if spec.dist not in REAL_LINE:
        kw.pop("transform", None)
    return dist(rv_name or name, **hyper, **kw)


def hyper_values(priors: PriorSet, used: dict[str, str]) -> dict[str, np.ndarray]:
    """The pm.Data values for a prior set: ``used`` maps rv name -> prior name in the set."""
    out = {}
    for rv, prior_name in used.items():
        spec = priors[prior_name]
        for p, v in spec.params.items():
            out[hyper_name(rv, p)] = np.asarray(v, dtype=float)
    return out
