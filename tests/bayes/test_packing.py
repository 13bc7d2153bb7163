"""The packed compilation (bayes/packing.py): the same log density as the model it packs, data
swapped by the original names (shapes may change), a static shape kept, initial values kept."""

import numpy as np
import pymc as pm
import pytest

from bayes_nqp.bayes import packing
from bayes_nqp.bayes.refit import with_data


def toy(y, x, mu0=0.0, initval=None):
    with pm.Model() as m:
        yd = pm.Data("y", y)
        xd = pm.Data("x", x)
        m0 = pm.Data("mu0", np.asarray(mu0))
        counts = pm.Data("counts", np.arange(3, dtype="int64"))
        b = pm.Normal("b", m0, 1.0, initval=initval)
        s = pm.HalfNormal("s", 1.0)
        pm.Normal("obs", b * xd.sum(axis=1) + counts.sum() * 0.0, s, observed=yd)
    return m


def test_the_packed_model_has_the_same_log_density_at_any_point():
    rng = np.random.default_rng(0)
    m = toy(rng.normal(size=20), rng.normal(size=(20, 3)), mu0=0.3)
    new, pk = packing.pack(m)
    assert pk is not None and set(pk.values) == {"y", "x", "mu0", "counts"}
    fg, _ = packing.model_graph(new)  # its only shared tensors are the packed arrays
    assert {v.name for v in packing._tensor_shared(fg)} == {
        "packed__float64", "packed__int32", packing.LAYOUT}  # pm.Data stores ints as int32
    f, g = m.compile_logp(), new.compile_logp()
    for _ in range(5):
        pt_ = {"b": rng.normal(), "s_log__": rng.normal()}
        assert g(pt_) == pytest.approx(f(pt_), rel=1e-12)


def test_packing_keeps_initial_values_and_gives_the_model_its_own_back():
    m = toy(np.zeros(4), np.ones((4, 3)), initval=2.5)
    new, _ = packing.pack(m)
    assert new.initial_point()["b"] == 2.5
    assert m.rvs_to_initial_values[m["b"]] == 2.5


def test_repacking_with_another_shape_and_refusing_a_wrong_ndim():
    m = toy(np.zeros(4), np.ones((4, 3)))
    _, pk = packing.pack(m)
    new = pk.updated({"y": np.arange(6.0), "x": np.ones((6, 3))})
    arr = new.arrays()
    assert arr["packed__float64"].size == 6 + 18 + 1
    # per variable, in the groups' order: start, stop, then its dims
    layout, pos, got = list(arr[packing.LAYOUT]), 0, {}
    for dtype, names in new.groups.items():
        for name in names:
            ndim = new.values[name].ndim
            start, stop, dims = layout[pos], layout[pos + 1], layout[pos + 2:pos + 2 + ndim]
            got[name] = arr["packed__" + dtype][start:stop].reshape(dims)
            pos += 2 + ndim
    assert pos == len(layout)
    for name, value in new.values.items():
        np.testing.assert_array_equal(got[name], value)
    assert got["y"].shape == (6,) and got["x"].shape == (6, 3) and got["counts"].dtype.kind == "i"
    with pytest.raises(ValueError, match="dimension"):
        pk.updated({"x": np.ones(6)})


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_with_data_by_the_original_names_moves_the_posterior():
    """A compiled toy refitted on other data of another length: the posterior of b follows."""
    rng = np.random.default_rng(1)
    x = np.ones((30, 3)) / 3
    m = toy(1.0 + 0.1 * rng.normal(size=30), x)
    compiled = packing.compile_pymc(m)
    import nutpie

    first = nutpie.sample(compiled, draws=300, tune=300, chains=1, seed=1, progress_bar=False)
    moved = with_data(compiled, {"y": -2.0 + 0.1 * rng.normal(size=50), "x": np.ones((50, 3)) / 3,
                                 "unknown": np.zeros(2)})
    second = nutpie.sample(moved, draws=300, tune=300, chains=1, seed=1, progress_bar=False)
    b1 = float(first.posterior["b"].mean())
    b2 = float(second.posterior["b"].mean())
    # sd of b's posterior ≈ 0.1/sqrt(n): both well within 0.1 of the truth
    assert abs(b1 - 1.0) < 0.1 and abs(b2 + 2.0) < 0.1


# ---- the cached C wrappers (bayes/cwrap.py) ------------------------------------------------------

def shapes_toy(rng):
    """Shared data of rank 0, 1 and 2, float and int32, read by the log density and by a
    deterministic (so the expand wrapper reads shared data too)."""
    with pm.Model() as m:
        y = pm.Data("y", rng.normal(size=12))
        x = pm.Data("x", rng.normal(size=(12, 2)))
        scale = pm.Data("scale", np.asarray(1.5))
        idx = pm.Data("idx", (np.arange(12) % 3).astype("int32"))
        b = pm.Normal("b", 0.0, scale, shape=2)
        g = pm.Normal("g", 0.0, 1.0, shape=3)
        s = pm.HalfNormal("s", 1.0)
        mu = pm.Deterministic("mu", (x * b).sum(axis=1) + g[idx])
        pm.Normal("obs", mu, s, observed=y)
    return m


def _call_logp(compiled, x, dim=None):
    import ctypes

    f, ptr = compiled.compiled_logp_func.ctypes, ctypes.POINTER(ctypes.c_double)
    grad, logp = np.zeros(compiled.n_dim), np.zeros(1)
    rc = f(compiled.n_dim if dim is None else dim, x.ctypes.data_as(ptr), grad.ctypes.data_as(ptr),
           logp.ctypes.data_as(ptr), compiled.user_data.ctypes.data)
    return rc, logp[0], grad


def _call_expand(compiled, x, n_expanded=None):
    import ctypes

    f, ptr = compiled.compiled_expand_func.ctypes, ctypes.POINTER(ctypes.c_double)
    out = np.zeros(compiled.n_expanded)
    rc = f(compiled.n_dim, compiled.n_expanded if n_expanded is None else n_expanded,
           x.ctypes.data_as(ptr), out.ctypes.data_as(ptr), compiled.user_data.ctypes.data)
    return rc, out


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_cached_wrappers_compute_what_nutpies_own_compute():
    """cwrap's logp/gradient and expansion equal nutpie's (bit for bit) at random points, with
    nutpie's return codes; after a with_data the wrapper reads the new data of another length."""
    import nutpie
    import pytensor

    from bayes_nqp.bayes import cwrap

    rng = np.random.default_rng(3)
    m = shapes_toy(rng)
    with pytensor.config.change_flags(numba__fastmath=False):
        mine = cwrap.compile_pymc_model(m)
        theirs = nutpie.compile_pymc_model(m)
    assert type(mine) is type(theirs)
    assert mine.compiled_logp_func.__name__.startswith("nutpie_logp_")
    assert mine.n_dim == theirs.n_dim == 6 and mine.n_expanded == theirs.n_expanded
    for _ in range(4):
        x = rng.normal(size=mine.n_dim)
        rc, lp, grad = _call_logp(mine, x)
        rc0, lp0, grad0 = _call_logp(theirs, x)
        assert rc == rc0 == 0 and lp == lp0 and np.array_equal(grad, grad0)
        assert np.isfinite(lp) and np.any(grad != 0)
        rc, out = _call_expand(mine, x)
        rc0, out0 = _call_expand(theirs, x)
        assert rc == rc0 == 0 and np.array_equal(out, out0) and np.any(out[mine.n_dim:] != 0)
    x = rng.normal(size=mine.n_dim)
    assert _call_logp(mine, x, dim=mine.n_dim + 1)[0] == -1
    assert _call_expand(mine, x, n_expanded=mine.n_expanded + 1)[0] == -1
    x[0] = np.nan
    assert _call_logp(mine, x)[0] == _call_logp(theirs, x)[0] == 3
    # data of another length through nutpie's with_data: the shapes are read from the record
    new = {"y": rng.normal(size=20), "x": rng.normal(size=(20, 2)),
           "idx": (np.arange(20) % 3).astype("int32")}
    mine2, theirs2 = mine.with_data(**new), theirs.with_data(**new)
    x = rng.normal(size=mine.n_dim)
    rc, lp, grad = _call_logp(mine2, x)
    rc0, lp0, grad0 = _call_logp(theirs2, x)
    assert rc == rc0 == 0 and lp == lp0 and np.array_equal(grad, grad0)
    assert lp != _call_logp(mine, x)[1]


_SUBPROCESS = """
import sys, numpy as np, nutpie
sys.path.insert(0, {tests!r})
from test_packing import toy
from bayes_nqp.bayes import packing
rng = np.random.default_rng(1)
c = packing.compile_pymc(toy(1.0 + 0.1 * rng.normal(size=30), np.ones((30, 3)) / 3))
idata = nutpie.sample(c, draws=200, tune=200, chains=2, seed=1, progress_bar=False)
np.save({out!r}, idata.posterior["b"].values)
print("HITS", c.compiled_logp_func.cache_hits, c.compiled_expand_func.cache_hits)
"""


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_fresh_process_loads_the_wrappers_from_the_cache_and_draws_the_same(tmp_path):
    """Compiled here (which writes numba's cache entry when missing), the same structure compiled
    in a new process with the same compile directory is a cache hit on both wrappers, and the
    draws for a seed are identical to this process's and to nutpie's own wrappers'."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import nutpie
    import pytensor
    from pytensor.link.numba.cache import NUMBA_CACHE_PATH

    rng = np.random.default_rng(1)
    m = toy(1.0 + 0.1 * rng.normal(size=30), np.ones((30, 3)) / 3)
    here = packing.compile_pymc(m)
    theirs = packing.compile_pymc(m, nutpie_wrappers=True)
    for cf in (here.compiled_logp_func, here.compiled_expand_func):
        assert list(Path(NUMBA_CACHE_PATH).glob(f"*{cf.__name__}*.nbi")), cf.__name__
    out = tmp_path / "b.npy"
    env = dict(os.environ)
    env["PYTENSOR_FLAGS"] = ",".join(
        [f for f in env.get("PYTENSOR_FLAGS", "").split(",") if f and "compiledir" not in f]
        + [f"base_compiledir={pytensor.config.base_compiledir}",
           f"compiledir={pytensor.config.compiledir}"])
    env["PYTHONPATH"] = os.pathsep.join([str(Path(packing.__file__).parents[2]),
                                         env.get("PYTHONPATH", "")])
    code = _SUBPROCESS.format(tests=str(Path(__file__).parent), out=str(out))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "HITS 1 1" in res.stdout
    kw = dict(draws=200, tune=200, chains=2, seed=1, progress_bar=False)
    b_here = nutpie.sample(here, **kw).posterior["b"].values
    b_theirs = nutpie.sample(theirs, **kw).posterior["b"].values
    b_there = np.load(out)
    assert np.array_equal(b_here, b_there) and np.array_equal(b_here, b_theirs)
    assert np.std(b_here) > 0


def test_a_wrapper_around_an_uncacheable_function_is_compiled_without_the_cache():
    """An inner function PyTensor has no cache key for: the wrapper is compiled (not cached) and
    keeps nutpie's return codes: 0, 4 for a non-finite log density, 3 for a non-finite
    gradient, 1 for an exception."""
    import numba
    import pytensor
    from nutpie.compile_pymc import make_user_data

    from bayes_nqp.bayes import cwrap

    @numba.njit
    def inner(x, a):
        if x[0] > 100.0:
            raise ValueError("too far")
        s = a.sum()
        return np.log(x[1]) * s, x * s

    shared = pytensor.shared(np.array([1.0, 2.0]), name="a")
    data = {"k": np.array([1.0, 2.0])}
    data["k"].flags.writeable = False
    user_data = make_user_data({shared: "k"}, data)
    cfunc, cached = cwrap.make_cfunc("logp", inner, 3, 3, user_data, ["k"], data)
    assert not cached and cfunc.cache_hits == 0

    from types import SimpleNamespace

    Compiled = SimpleNamespace(n_dim=3, compiled_logp_func=cfunc, user_data=user_data)  # what _call_logp reads
    rc, lp, grad = _call_logp(Compiled, np.array([1.0, np.e, 2.0]))
    assert rc == 0 and lp == pytest.approx(3.0) and np.allclose(grad, [3.0, 3 * np.e, 6.0])
    assert _call_logp(Compiled, np.array([1.0, 0.0, 2.0]))[0] == 4       # log(0)
    assert _call_logp(Compiled, np.array([-np.inf, 1.0, 2.0]))[0] == 3    # a gradient of -inf
    assert _call_logp(Compiled, np.array([200.0, 1.0, 2.0]))[0] == 1      # the ValueError
    assert _call_logp(Compiled, np.array([1.0, 1.0, 2.0]), dim=2)[0] == -1
