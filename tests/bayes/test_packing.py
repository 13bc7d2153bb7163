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
