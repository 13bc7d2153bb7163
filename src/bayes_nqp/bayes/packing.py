"""Compile a PyMC model with nutpie, its shared data packed into one array per dtype.

Why: nutpie's numba backend compiles, for every shared variable (every ``pm.Data``: the did
family's likelihood statistics, each prior's hyperparameters, the engine's lifted constants), an
extraction routine inlined into the logp function, and nutpie's wrapper is compiled anew in every
process (it cannot be cached; PyTensor's own fgraph is). With the 24 shared arrays of the did
model on the demo, that was 15 of its 18 s of compilation (measured with a counter on numba's
dispatcher). Packed into one float64 vector, one int64 vector and one int64 layout vector, the
same model compiles in about half the time and samples the same posterior. The wrapper itself is
now :mod:`.cwrap`'s, which numba caches on disk (did's compile in a fresh process with a warm
compile directory: 6.7 s → 2.3 s, ``benchmarks/bench_compile.py``).

How: each shared tensor ``v`` of the graph is replaced by ``flat[start:stop].reshape(dims)``,
where ``start``, ``stop`` and ``dims`` are read from the layout vector — itself shared data — so
the compiled graph depends neither on the values nor on the shapes of the data (PyTensor's disk
cache of compiled graphs serves another panel of the same structure, as with the unpacked
``pm.Data``). A static shape the variable had is kept (``specify_shape``). :func:`with_data`
repacks values given by the original names; the PyMC model itself is not changed (the log-prior,
PPC and LOO keep reading its ``pm.Data``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

LAYOUT = "packed__layout"
PREFIX = "packed__"
_ATTR = "_bayes_nqp_packing"


@dataclass(frozen=True)
class Packing:
    """Where each original shared variable lies: name -> (group dtype, static shape), and the
    current values by name (the layout is rebuilt from them)."""

    groups: dict          # dtype -> [names, in order]
    static: dict          # name -> the variable's static shape (None where a dim is free)
    values: dict          # name -> ndarray (current values)

    def arrays(self) -> dict:
        """The packed arrays for nutpie's ``with_data``: one flat vector per dtype and the layout
        (per variable: start, stop, then its dims)."""
        out, layout = {}, []
        for dtype, names in self.groups.items():
            start, parts = 0, []
            for name in names:
                v = self.values[name]
                parts.append(v.ravel())
                layout += [start, start + v.size, *v.shape]
                start += v.size
            out[PREFIX + dtype] = (np.concatenate(parts) if parts else np.zeros(0)).astype(dtype)
        out[LAYOUT] = np.asarray(layout, dtype=np.int64)
        return out

    def updated(self, values: dict) -> Packing:
        new = dict(self.values)
        for name, value in values.items():
            old = self.values[name]
            value = np.asarray(value, dtype=old.dtype)
            if value.ndim != old.ndim:
                raise ValueError(f"{name}: {value.ndim} dimension(s), the compiled model has {old.ndim}")
            static = self.static[name]
            if any(s is not None and s != n for s, n in zip(static, value.shape)):
                raise ValueError(f"{name}: shape {value.shape}, the compiled model's is {static}")
            new[name] = value
        return Packing(self.groups, self.static, new)


def _tensor_shared(fg):
    from pytensor.compile import SharedVariable
    from pytensor.tensor import TensorType

    return [v for v in fg.inputs if isinstance(v, SharedVariable) and isinstance(v.type, TensorType)]


def model_graph(pm_model):
    """``(fgraph, initial values by name)`` of a PyMC model: ``fgraph_from_model`` refuses a model
    that sets initial values (the threshold model does), so they are set aside while it runs and
    given back to the model; :func:`graph_model` puts them on the model made from the graph."""
    from pymc.model.fgraph import fgraph_from_model

    saved = dict(pm_model.rvs_to_initial_values)
    by_name = {rv.name: iv for rv, iv in saved.items() if iv is not None}
    try:
        for rv in saved:
            pm_model.rvs_to_initial_values[rv] = None
        fg, _ = fgraph_from_model(pm_model, inlined_views=True)
    finally:
        pm_model.rvs_to_initial_values.update(saved)
    return fg, by_name


def graph_model(fg, initial_values: dict):
    """The PyMC model of a graph from :func:`model_graph` (the graph is used up), with the
    initial values the original model set."""
    from pymc.model.fgraph import model_from_fgraph

    new = model_from_fgraph(fg, mutate_fgraph=True)
    for rv in new.free_RVs:
        if rv.name in initial_values:
            new.set_initval(rv, initial_values[rv.name])
    return new


def pack(pm_model):
    """``(model, packing)``: a copy of ``pm_model`` whose shared tensors are slices of packed
    arrays, or ``(pm_model, None)`` when it has fewer than two."""
    import pytensor
    import pytensor.tensor as pt

    fg, initial_values = model_graph(pm_model)
    shared = _tensor_shared(fg)
    if len(shared) < 2:
        return pm_model, None
    groups: dict[str, list[str]] = {}
    values, static, by_name = {}, {}, {}
    for v in shared:
        if v.name in values or not v.name:
            return pm_model, None  # names must be unique to be addressed (nutpie asks the same)
        values[v.name] = np.array(v.get_value(), copy=True)
        static[v.name] = tuple(v.type.shape)
        groups.setdefault(str(v.type.dtype), []).append(v.name)
        by_name[v.name] = v
    packing = Packing(groups, static, values)
    arrays = packing.arrays()
    layout = pytensor.shared(arrays[LAYOUT], name=LAYOUT, shape=(None,))
    replacements, pos = [], 0
    for dtype, names in groups.items():
        flat = pytensor.shared(arrays[PREFIX + dtype], name=PREFIX + dtype, shape=(None,))
        for name in names:
            v, ndim = by_name[name], values[name].ndim
            piece = flat[layout[pos]:layout[pos + 1]]
            dims = [layout[pos + 2 + j] for j in range(ndim)]
            piece = pt.reshape(piece, dims, ndim=ndim) if ndim else piece[0]
            if any(s is not None for s in v.type.shape):
                piece = pt.specify_shape(piece, v.type.shape)
            replacements.append((v, piece))
            pos += 2 + ndim
    fg.replace_all(replacements, import_missing=True)
    return graph_model(fg, initial_values), packing


def compile_pymc(pm_model, *, nutpie_wrappers: bool = False):
    """``nutpie.compile_pymc_model`` of :func:`pack`'s model; the packing travels with the
    compiled model (:func:`with_data` reads it).

    The C wrappers nuts-rs calls are :mod:`.cwrap`'s, cached on disk beside PyTensor's numba
    cache (nutpie's own are compiled anew in every process); ``nutpie_wrappers=True`` compiles
    nutpie's instead (the same draws for a seed; kept for comparison), and so does a model whose
    user-data record :mod:`.cwrap` does not recognise, or a nutpie without the internals it
    calls (written against nutpie 0.16.11).

    Numba's fast-math flags are off (PyTensor's ``numba__fastmath``): with them, a graph compiled
    in this process and the same graph loaded from PyTensor's disk cache gave different draws for
    the same seed (LLVM reassociates and contracts differently once the graph is inlined into
    nutpie's wrapper), so that a fresh machine did not reproduce a warm one. Measured on a
    placebo refit of did on the demo: 0.009807 fresh vs 0.008807 cached with fast-math;
    0.011127 both ways without."""
    import nutpie
    import pytensor

    from . import cwrap

    packed, packing = pack(pm_model)
    with pytensor.config.change_flags(numba__fastmath=False):
        if nutpie_wrappers:
            compiled = nutpie.compile_pymc_model(packed)
        else:
            try:
                compiled = cwrap.compile_pymc_model(packed)
            except (cwrap.Unsupported, ImportError) as exc:  # another nutpie's internals
                log.warning("nutpie's own C wrappers compiled (%s)", exc)
                compiled = nutpie.compile_pymc_model(packed)
    if packing is not None:
        object.__setattr__(compiled, _ATTR, packing)
    return compiled


def with_data(compiled, values: dict):
    """``compiled.with_data`` by the original shared variables' names: the values the compiled
    functions read (nutpie keeps only those; other names are left out). The packing travels on
    to the returned model."""
    packing = getattr(compiled, _ATTR, None)
    known = {var.name for var in compiled.shared_var_keys}
    updates = {k: v for k, v in values.items() if k in known}
    mine = {k: v for k, v in values.items() if packing is not None and k in packing.values}
    if mine:
        packing = packing.updated(mine)
        updates.update({k: v for k, v in packing.arrays().items() if k in known})
    if not updates:
        return compiled
    out = compiled.with_data(**updates)
    if packing is not None:
        object.__setattr__(out, _ATTR, packing)
    return out
