"""The shared within transformations (bayes/algebra.py) against pyfixest's demeaner, on balanced
and unbalanced panels, and the symbolic form of W against the numeric one."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_nqp.bayes.algebra import FixedEffects, WithinTransform


def _panel(drop: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    unit, time = np.repeat(np.arange(30), 6), np.tile(np.arange(6), 30)
    keep = rng.random(unit.size) >= drop
    unit, time = unit[keep], time[keep]
    return unit, time, rng.normal(size=(unit.size, 3))


def _pyfixest(unit, time, X, time_effects=True):
    from pyfixest.estimation import demean

    f = np.c_[unit, time] if time_effects else unit[:, None]
    out, ok = demean(X, f.astype(np.uint64), np.ones(unit.size), tol=1e-12, maxiter=100_000)
    assert ok
    return out


@pytest.mark.parametrize("drop", [0.0, 0.15])
@pytest.mark.parametrize("time_effects", [True, False])
def test_both_within_forms_equal_pyfixest_demeaning(drop, time_effects):
    unit, time, X = _panel(drop)
    ref = _pyfixest(unit, time, X, time_effects)
    np.testing.assert_allclose(WithinTransform(unit, time, time_effects=time_effects)(X), ref, atol=1e-8)
    np.testing.assert_allclose(FixedEffects(unit, time, time_effects=time_effects).residual(X), ref,
                               atol=1e-8)


def test_fixed_effects_fitted_on_some_rows_apply_to_the_others():
    unit, time, X = _panel(0.0, seed=1)
    rows = np.flatnonzero(time < 5)  # the last period held out, as an imputation would
    fe = FixedEffects(unit, time, rows=rows)
    y = 1.0 + 0.5 * unit + 0.2 * time  # exactly additive: the effects recover it everywhere
    coef = fe.fit(y[rows])
    held = time == 4
    np.testing.assert_allclose(fe.fitted(coef, unit[held], time[held])[:, 0], y[held], atol=1e-8)


def test_the_symbolic_within_transform_equals_the_numeric_one():
    import pytensor
    import pytensor.tensor as pt

    unit, time, X = _panel(0.15, seed=2)
    W = WithinTransform(unit, time, time_effects=True)
    v = pt.vector("v")
    f = pytensor.function([v], W.tensor(v))
    np.testing.assert_allclose(f(X[:, 0]), W(X[:, 0]), atol=1e-10)
