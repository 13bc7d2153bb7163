"""One refit path: a compiled model sampled again with other values of its ``pm.Data`` — other
priors' hyperparameters (prior-sensitivity refits) or other data (the engine's cache) — without
compiling.

A prior's hyperparameters are ``pm.Data`` (:func:`.priors.prior_rv`), so a prior set whose
families are those the model was built with (:func:`structure`) needs no new compilation:
:func:`with_priors` swaps its values into the compiled model (nutpie ``with_data``, through
:func:`with_data`) and into the PyMC model (its log-prior, PPC and LOO read them). A set that
changes a family changes the graph: compile anew.
"""

from __future__ import annotations

from ..errors import SpecError
from .packing import with_data  # the one data swap (by the model's own names; packed arrays rebuilt)
from .priors import hyper_values
from .spec import PriorSet


def structure(priors: PriorSet, used: dict[str, str]) -> tuple:
    """The distribution families of the priors a model uses (``used``: rv name -> prior name in
    the set): what a compiled graph depends on; equal structures differ only by values."""
    return tuple(sorted((rv, priors[name].dist) for rv, name in used.items()))


def with_priors(model, pm_model, compiled, priors: PriorSet):
    """``model`` (a built :class:`~.base.BayesModel`), its PyMC model and its nutpie compilation
    under the prior set ``priors``: returns the compiled model with the set's hyperparameters
    (None when ``compiled`` is None: only the PyMC model and ``model.priors`` are set, e.g. to
    put a model back as it was built). Raises SpecError when a family differs (compile anew)."""
    import pymc as pm

    built = {rv: d for rv, d in structure(model.priors, model.used_priors)}
    new = {rv: d for rv, d in structure(priors, model.used_priors)}
    if built != new:
        changed = sorted(rv for rv in new if new[rv] != built.get(rv))
        raise SpecError(f"prior set '{priors.name}' changes the family of {', '.join(changed)}: "
                        "the model must be compiled again")
    values = hyper_values(priors, model.used_priors)
    pm.set_data(values, model=pm_model)
    model.priors = priors
    return None if compiled is None else with_data(compiled, values)
