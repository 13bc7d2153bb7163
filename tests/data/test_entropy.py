"""The entropy-weight index against a hand-computed example, and its errors."""

import math

import numpy as np
import pandas as pd
import pytest

from bayes_nqp.data.entropy import apply_entropy, entropy_index, entropy_weights
from bayes_nqp.errors import DataError


@pytest.fixture
def small():
    # a: positive, b: negative, c: positive
    return pd.DataFrame({"a": [1.0, 2.0, 4.0], "b": [10.0, 30.0, 20.0], "c": [5.0, 6.0, 7.0]})


def test_hand_computed_example(small):
    # normalised by hand: a (x-1)/3, b (30-x)/20, c (x-5)/2
    xa, xb, xc = [0.0, 1 / 3, 1.0], [1.0, 0.0, 0.5], [0.0, 0.5, 1.0]
    # proportions: a [0, 1/4, 3/4], b [2/3, 0, 1/3], c [0, 1/3, 2/3]; 0·ln 0 = 0
    k = 1 / math.log(3)
    e_a = -k * (0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    e_b = -k * (2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    e_c = e_b
    d = [1 - e_a, 1 - e_b, 1 - e_c]
    w = [x / sum(d) for x in d]
    expected_index = [w[0] * xa[i] + w[1] * xb[i] + w[2] * xc[i] for i in range(3)]

    index, weights = entropy_index(small, positive=["a", "c"], negative=["b"])
    assert weights["a"] == pytest.approx(w[0], abs=1e-12)
    assert weights["b"] == pytest.approx(w[1], abs=1e-12)
    assert weights["c"] == pytest.approx(w[2], abs=1e-12)
    assert weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(index.to_numpy(), expected_index, atol=1e-12)
    assert list(index.index) == list(small.index)


def test_shift_adds_to_index_and_keeps_weights_close(small):
    i0, w0 = entropy_index(small, positive=["a", "c"], negative=["b"])
    i1, w1 = entropy_index(small, positive=["a", "c"], negative=["b"], shift=1e-4)
    assert np.allclose(w0, w1, atol=1e-2)
    assert (i1 >= 1e-4 - 1e-15).all() and (i1 <= 1 + 1e-4 + 1e-12).all()


def test_fixed_map_is_linear(small):
    ew = entropy_weights(small, positive=["a", "c"], negative=["b"])
    moved = small.assign(a=small["a"] + 3.0, b=small["b"] - 2.0)
    diff = apply_entropy(moved, ew) - apply_entropy(small, ew)
    slopes = ew.slopes()
    assert np.allclose(diff, 3.0 * slopes["a"] - 2.0 * slopes["b"])
    assert slopes["b"] < 0 < slopes["a"]


def test_constant_indicator_is_a_data_error(small):
    with pytest.raises(DataError, match="constant"):
        entropy_index(small.assign(c=1.0), positive=["a", "c"], negative=["b"])


def test_unknown_column_is_a_data_error(small):
    with pytest.raises(DataError, match="not in the data"):
        entropy_index(small, positive=["a", "zzz"], negative=["b"])


def test_missing_value_is_a_data_error(small):
    with pytest.raises(DataError, match="missing"):
        entropy_index(small.assign(a=[1.0, np.nan, 4.0]), positive=["a"], negative=["b"])


def test_column_in_both_lists_is_a_data_error(small):
    with pytest.raises(DataError, match="both"):
        entropy_index(small, positive=["a", "b"], negative=["b"])


def test_no_indicator_is_a_data_error(small):
    with pytest.raises(DataError):
        entropy_index(small)
