"""The mean of the unit-specific effects of the fully interacted TWFE regression
(bayes_nqp.frequentist.unit_effects), against a dense least-squares fit."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_nqp.frequentist.unit_effects import mean_unit_effect


def test_mean_unit_effect_equals_dense_least_squares_with_unit_and_year_dummies(make_panel):
    p = make_panel(controls=False, seed=5)
    df = p.df
    u, t, D, y = (df[c].to_numpy() for c in ("unit_idx", "time_idx", "D", "y"))
    share = np.bincount(u, weights=D) / np.bincount(u)
    treated = np.flatnonzero((share > 0) & (share < 1))
    X = np.column_stack([np.eye(p.n_units)[u], np.eye(p.n_periods)[t][:, 1:],
                         D[:, None] * (u[:, None] == treated[None, :])])
    coef = np.linalg.lstsq(X, y, rcond=None)[0][-len(treated):]
    got = mean_unit_effect(p, controls=False)
    assert got["estimate"] == pytest.approx(coef.mean(), abs=1e-8)
    assert got["se"] == pytest.approx(coef.std(ddof=1) / np.sqrt(len(coef)), rel=1e-6)
    assert got["n_treated_units"] == len(treated)
    assert got["ci95"][0] < got["estimate"] < got["ci95"][1]


def test_mean_unit_effect_with_controls_equals_dense_least_squares(make_panel):
    """With controls and unbalanced rows: the cell-effect computation (no N x units design)
    gives the dense interacted regression's unit effects."""
    p = make_panel(seed=7)
    df = p.df
    u, t, D, y = (df[c].to_numpy() for c in ("unit_idx", "time_idx", "D", "y"))
    share = np.bincount(u, weights=D) / np.bincount(u)
    treated = np.flatnonzero((share > 0) & (share < 1))
    X = np.column_stack([np.eye(p.n_units)[u], np.eye(p.n_periods)[t][:, 1:],
                         D[:, None] * (u[:, None] == treated[None, :]), df[p.controls].to_numpy(float)])
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    tau = coef[p.n_units + p.n_periods - 1:p.n_units + p.n_periods - 1 + len(treated)]
    got = mean_unit_effect(p, controls=True)
    assert got["estimate"] == pytest.approx(tau.mean(), abs=1e-8)
    assert got["se"] == pytest.approx(tau.std(ddof=1) / np.sqrt(len(tau)), rel=1e-6)
    assert list(got["unit_effects"].values()) == pytest.approx(list(tau), abs=1e-7)
