"""Placebo-law assignment (bayes_nqp.data.placebo)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_nqp.data.placebo import assign_placebo
from bayes_nqp.errors import DataError


def frame(n_units=20, n_periods=10):
    u = np.repeat(np.arange(n_units), n_periods)
    t = np.tile(np.arange(2000, 2000 + n_periods), n_units)
    real = ((u < 6) & (t >= 2005)).astype(int)
    return pd.DataFrame({"u": u, "t": t, "y": np.random.default_rng(0).normal(size=len(u)), "real": real})


def test_never_pool_drops_treated_units_and_assigns_an_absorbing_placebo_to_half():
    p = assign_placebo(frame(), unit="u", time="t", treated="real", rng=np.random.default_rng(1))
    assert p.dropped_units == list(range(6))
    assert set(p.frame["u"]) == set(range(6, 20)) and len(p.units) == 7
    for unit, g in p.frame.groupby("u"):
        d = g.sort_values("t")[p.column].to_numpy()
        assert np.all(np.diff(d) >= 0)                      # absorbing
        if unit in p.years:
            assert d.sum() > 0 and d[0] == 0 and d[-1] == 1  # a pre and a post period
            assert g.loc[g[p.column] == 1, "t"].min() == p.years[unit]
        else:
            assert d.sum() == 0
    np.testing.assert_array_equal(p.frame["y"], frame().query("u >= 6")["y"])  # real outcome kept


def test_the_same_seed_gives_the_same_placebo_and_the_all_pool_keeps_every_unit():
    a = assign_placebo(frame(), unit="u", time="t", rng=np.random.default_rng(3), pool="all")
    b = assign_placebo(frame(), unit="u", time="t", rng=np.random.default_rng(3), pool="all")
    assert a.years == b.years and len(a.frame) == 200 and "real" in a.frame


def test_never_pool_without_the_real_treatment_is_an_error():
    with pytest.raises(DataError, match="treated"):
        assign_placebo(frame(), unit="u", time="t", rng=np.random.default_rng(0))
