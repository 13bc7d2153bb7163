"""nutpie's numba compilation of a PyMC model, with its C wrappers cached on disk.

Why: nutpie (0.16) builds the two C callbacks nuts-rs calls — ``logp(dim, x, grad, logp,
user_data)`` and ``expand(dim, n_expanded, x, out, user_data)`` — as fresh ``numba.cfunc`` closures
over the shared data, whose fields in the user-data record are named by random uuids, so numba
can never cache them: every process types and lowers the whole graph again (about 6 of the 11 s
of compiling did on the demo with a warm PyTensor cache). PyTensor caches the inner graph
function on disk, but not this wrapper. With these wrappers, did's compile in a fresh process
with a warm compile directory took 2.3–2.5 s instead of 6.6–6.8 s (``benchmarks/bench_compile.py``,
2026-12-03, load average 3.4–5.5 on 2 cores); the draws for a seed are the same bit for bit.

How: :func:`compile_pymc_model` does what ``nutpie.compile_pymc_model`` does for the numba backend
(its own ``_make_functions``, ``make_user_data`` and ``CompiledPyMCModel``, so ``with_data``,
``nutpie.sample`` and ``update_user_data`` work unchanged), except that each wrapper is generated
as source text which depends only on the structure: ``n_dim``, ``n_expanded``, and for each
shared array its dtype, its rank and the byte offsets of its data pointer, size and shape in
nutpie's record (read as a ``uint64`` vector by offset rather than by field name). The text is
compiled by PyTensor's ``compile_numba_function_src`` with the cache key

    key = sha256(VERSION, kind, wrapper source, PyTensor's cache key of the inner jitted graph
                 function, numba__fastmath, numba's version)

and by ``numba.cfunc(sig, cache=True)``; PyTensor's cache locator sends numba to
``<base_compiledir>/numba`` under that key. The wrapper's name carries the key, so that two
wrappers never share a symbol name (numba issue 10486). Where the inner function has no
PyTensor key (an Op PyTensor cannot cache), the wrapper is compiled without the cache.

The wrappers are nutpie's: the same return codes (logp: -1 a wrong dimension, 3 a non-finite
gradient, 4 a non-finite log density, 1 an exception, 0 success; expand: -1, -2 an exception, 0)
and the same types passed to the inner function (the point as a writable C array, each shared
array C-contiguous and read-only), so it runs the very specialization nutpie's wrapper runs and
the draws for a seed are the same bit for bit.
"""

from __future__ import annotations

import hashlib
import logging
import warnings

import numpy as np

log = logging.getLogger(__name__)

VERSION = "1"  # bump when the generated source or its globals change meaning
_WORD = 8       # nutpie's record holds only uintp / uint fields


def _readonly():
    """numba intrinsic: the same array typed read-only (what nutpie's extraction passes)."""
    from numba.core import types
    from numba.core.imputils import impl_ret_borrowed
    from numba.extending import intrinsic

    @intrinsic
    def as_readonly(typingctx, arr):
        if not isinstance(arr, types.Array):
            return None
        ro = arr.copy(readonly=True)

        def codegen(context, builder, sig, args):
            val = context.cast(builder, args[0], sig.args[0], sig.return_type)
            return impl_ret_borrowed(context, builder, sig.return_type, val)

        return ro(arr), codegen

    return as_readonly


_AS_READONLY = None


class Unsupported(TypeError):
    """nutpie's user-data record is not laid out as this module expects (8-byte fields)."""


def _field_words(user_data, key: str, ndim: int) -> tuple[int, int, list[int]]:
    """Word offsets (8-byte units) of the data pointer, the size and the shape entries of the
    shared array ``key`` in nutpie's user-data record."""
    shared_dt, base = user_data.dtype.fields["shared"][:2]

    def where(section: str) -> tuple[np.dtype, int]:
        dt, off = shared_dt.fields[section][:2]
        fdt, foff = dt.fields[key][:2]
        return fdt, base + off + foff

    data_dt, data_off = where("data")
    size_dt, size_off = where("size")
    shape_dt, shape_off = where("shape")
    for dt in (data_dt, size_dt, shape_dt.base if shape_dt.subdtype else shape_dt):
        if dt.itemsize != _WORD:
            raise Unsupported(f"unexpected field {dt} in nutpie's user data")
    for off in (data_off, size_off, shape_off):
        if off % _WORD:
            raise Unsupported("unaligned field in nutpie's user data")
    return (data_off // _WORD, size_off // _WORD,
            [shape_off // _WORD + i for i in range(ndim)])


def _extraction_lines(user_data, keys, shared_data) -> tuple[list[str], list[str]]:
    """Source lines that view each shared array from the record (its dtype, rank and offsets
    written into the text), and the argument names."""
    lines, args = [], []
    for i, key in enumerate(keys):
        value = shared_data[key]
        ndim, dtype = value.ndim, np.dtype(value.dtype)
        d, s, shape = _field_words(user_data, key, ndim)
        dims = "".join(f"int(u[{w}]), " for w in shape)
        lines.append(f"a{i} = as_readonly(numba.carray(address_as_void_pointer(u[{d}]), "
                     f"int(u[{s}]), dtype_{dtype.str[1:]}).reshape(({dims})))")
        args.append(f"a{i}")
    return lines, args


_LOGP = """\
def {name}(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_dim},))
        logp = numba.carray(logp_, ())
        u = numba.carray(user_data_, ({n_words},), np.uint64)
{extract}
        logp_val, grad = inner(x{args})
        logp[()] = logp_val
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:  # noqa: BLE001
        return 1
    return 0
"""

_EXPAND = """\
def {name}(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    try:
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_expanded},))
        u = numba.carray(user_data_, ({n_words},), np.uint64)
{extract}
        (values,) = inner(x{args})
        out[...] = values
    except Exception:  # noqa: BLE001
        return -2
    return 0
"""


def wrapper_source(kind: str, n_dim: int, n_expanded: int, user_data, keys, shared_data,
                   name: str = "{name}") -> str:
    """The C wrapper's source (``kind``: "logp" or "expand"), its function named ``name``."""
    lines, args = _extraction_lines(user_data, keys, shared_data)
    n_words = user_data.dtype.itemsize // _WORD
    if user_data.dtype.itemsize % _WORD:
        raise Unsupported("nutpie's user data is not a whole number of words")
    extract = "\n".join(" " * 8 + line for line in lines) or " " * 8 + "pass"
    template = _LOGP if kind == "logp" else _EXPAND
    return template.format(name=name, n_dim=n_dim, n_expanded=n_expanded, n_words=max(n_words, 1),
                           extract=extract, args="".join(", " + a for a in args))


def make_cfunc(kind: str, inner, n_dim: int, n_expanded: int, user_data, keys, shared_data):
    """``(cfunc, cached)``: the C callback for ``inner`` (a PyTensor numba dispatcher), compiled
    with numba's disk cache when PyTensor has a cache key for ``inner``."""
    import numba
    import pytensor
    from nutpie.compile_pymc import address_as_void_pointer
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    global _AS_READONLY
    if _AS_READONLY is None:
        _AS_READONLY = _readonly()

    template = wrapper_source(kind, n_dim, n_expanded, user_data, keys, shared_data)
    inner_key = CACHED_SRC_FUNCTIONS.get(getattr(inner, "py_func", None))
    fastmath = int(bool(pytensor.config.numba__fastmath))
    cacheable = inner_key is not None and bool(pytensor.config.numba__cache)
    key = hashlib.sha256("\n".join(
        [VERSION, kind, template, str(inner_key), f"fastmath{fastmath}", numba.__version__]
    ).encode()).hexdigest()
    name = f"nutpie_{kind}_{key[:24]}"
    src = template.replace("{name}", name, 1)
    env = {"__name__": __name__, "numba": numba, "np": np, "inner": inner,
           "address_as_void_pointer": address_as_void_pointer, "as_readonly": _AS_READONLY}
    env |= {f"dtype_{np.dtype(v.dtype).str[1:]}": np.dtype(v.dtype)
            for v in (shared_data[k] for k in keys)}
    fn = compile_numba_function_src(src, name, env, cache_key=key if cacheable else None)
    if kind == "logp":
        sig = numba.types.int64(numba.types.uint64, numba.types.CPointer(numba.types.double),
                                numba.types.CPointer(numba.types.double),
                                numba.types.CPointer(numba.types.double), numba.types.voidptr)
    else:
        sig = numba.types.int64(numba.types.uint64, numba.types.uint64,
                                numba.types.CPointer(numba.types.double),
                                numba.types.CPointer(numba.types.double), numba.types.voidptr)
    if not cacheable:
        log.info("%s wrapper compiled without the disk cache (no PyTensor cache key)", kind)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cannot cache compiled function",
                                category=numba.NumbaWarning)
        cfunc = numba.cfunc(sig, cache=cacheable)(fn)  # compiled (or loaded) here
    return cfunc, cacheable


def compile_pymc_model(model):
    """``nutpie.compile_pymc_model(model)`` (numba backend, nutpie's defaults: support-point
    initialisation jittered over all free variables), its wrappers from :func:`make_cfunc`.
    Returns a ``nutpie.compile_pymc.CompiledPyMCModel``."""
    from uuid import uuid4

    from nutpie.compile_pymc import (
        CompiledPyMCModel,
        _make_functions,
        _prepare_dims_and_coords,
        _wrap_with_lock,
        make_user_data,
    )
    from pymc.initial_point import make_initial_point_fn

    pymc_initial_point_fn = _wrap_with_lock(make_initial_point_fn(
        model=model, overrides=None, default_strategy="support_point",
        jitter_rvs=set(model.free_RVs), return_transformed=True))
    (n_dim, n_expanded, logp_fn_pt, expand_fn_pt, initial_point_fn, shape_info,
     reparameterized_names) = _make_functions(
        model, mode="NUMBA", compute_grad=True, join_expanded=True,
        pymc_initial_point_fn=pymc_initial_point_fn, var_names=None)

    shared_data, shared_var_keys = {}, {}
    for val in [*logp_fn_pt.get_shared(), *expand_fn_pt.get_shared()]:
        if val in shared_var_keys:
            continue
        key = uuid4().hex  # nutpie's naming: with_data and update_user_data look keys up
        shared_data[key] = np.array(val.get_value(), order="C", copy=True)
        shared_var_keys[val] = key
    for val in shared_data.values():
        val.flags.writeable = False
    user_data = make_user_data(shared_var_keys, shared_data)

    logp_keys = [shared_var_keys[v] for v in logp_fn_pt.get_shared()]
    expand_keys = [shared_var_keys[v] for v in expand_fn_pt.get_shared()]
    logp_c, _ = make_cfunc("logp", logp_fn_pt.vm.jit_fn, n_dim, n_expanded, user_data,
                           logp_keys, shared_data)
    expand_c, _ = make_cfunc("expand", expand_fn_pt.vm.jit_fn, n_dim, n_expanded, user_data,
                             expand_keys, shared_data)

    dims, coords = _prepare_dims_and_coords(model, shape_info, reparameterized_names)
    return CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info)},
        compiled_logp_func=logp_c,
        compiled_expand_func=expand_c,
        initial_point_func=initial_point_fn,
        shared_data=shared_data,
        shared_var_keys=shared_var_keys,
        user_data=user_data,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=logp_fn_pt,
        expand_func=expand_fn_pt,
        reparameterized_names=reparameterized_names,
    )
