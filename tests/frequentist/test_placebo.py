"""Placebo section: the FWL shortcut equals pyfixest, null centring, power, reproducibility."""

from __future__ import annotations

import numpy as np
import pyfixest as pf

from bayes_nqp.frequentist.placebo import placebo, placebo_draws


def _refit(p, seed, k):
    """The first ``k`` placebo coefficients recomputed with pyfixest (same permutations)."""
    rng = np.random.default_rng(seed)
    df = p.df.copy()
    cohort = df.groupby("unit_idx")["cohort"].first().to_numpy()
    out = []
    for _ in range(k):
        g = rng.permutation(cohort)[df["unit_idx"]]
        df["Dp"] = (np.isfinite(g) & (df["time"] >= np.nan_to_num(g, nan=np.inf))).astype(float)
        out.append(pf.feols("y ~ Dp + x1 + x2 | unit + time", data=df).coef()["Dp"])
    return np.array(out)


def test_placebo_draws_equal_pyfixest_refits(panel):
    draws, _ = placebo_draws(panel, draws=3, seed=5)
    np.testing.assert_allclose(draws, _refit(panel, 5, 3), rtol=0, atol=1e-9)


def test_placebo_draws_equal_pyfixest_refits_on_unbalanced_panel(make_panel):
    p = make_panel(seed=12, drop_frac=0.1)
    draws, _ = placebo_draws(p, draws=2, seed=6)
    np.testing.assert_allclose(draws, _refit(p, 6, 2), rtol=0, atol=1e-9)


def test_placebo_mean_near_zero(panel):
    s = placebo(panel, draws=200, seed=1).summary["placebo"]
    assert abs(s["mean"]) < 3 * 2 * s["sd"] / np.sqrt(s["draws"])


def test_placebo_p_value_small_for_real_effect(panel):
    s = placebo(panel, draws=200, seed=1).summary["placebo"]
    assert s["p_value"] < 0.01 and s["actual"] > 0.5


def test_placebo_p_value_not_small_without_effect(make_panel):
    s = placebo(make_panel(effect=0.0, seed=13), draws=200, seed=1).summary["placebo"]
    assert s["p_value"] > 0.05


def test_same_seed_same_draws(panel):
    a, _ = placebo_draws(panel, draws=50, seed=9)
    b, _ = placebo_draws(panel, draws=50, seed=9)
    c, _ = placebo_draws(panel, draws=50, seed=10)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_placebo_figure_marks_simulated_data(panel):
    res = placebo(panel, draws=20, seed=2)
    assert res.summary["placebo"]["draws"] == 20
    assert "SIMULATED DATA" in res.figures["placebo"]._suptitle.get_text()


def test_placebo_skipped_with_reason_without_treatment(make_panel):
    from bayes_nqp.data.panel import panel_from_frame
    from bayes_nqp.frequentist import replicate

    raw = make_panel(seed=5).df[["unit", "time", "y"]]
    bare = panel_from_frame(raw, {"unit": "unit", "time": "time", "outcome": "y"})
    assert "treatment" in replicate("placebo", bare)["skipped"]["placebo"]


def test_demo_placebo_rejects(demo):
    s = placebo(demo, draws=100, seed=1).summary["placebo"]
    assert s["p_value"] < 0.05


def test_chunking_by_cells_leaves_the_draws_unchanged(panel, monkeypatch):
    """Large panels demean fewer draws per call (memory); the draws are the same."""
    from bayes_nqp.frequentist import placebo as mod

    whole, _ = placebo_draws(panel, draws=7, seed=3)
    monkeypatch.setattr(mod, "CELLS", 2 * len(panel.df))  # 2 draws per call
    chunked, _ = placebo_draws(panel, draws=7, seed=3)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12)
