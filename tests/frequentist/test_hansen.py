"""Hansen (1999) threshold regression: the fast search against brute force, Hansen's published
estimates on his data (tests/data/hansen1999.csv), the bootstrap, and the replication section."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_nqp.data import panel_from_frame
from bayes_nqp.errors import ModelError, SectionSkipped
from bayes_nqp.frequentist.hansen import LR_CRIT_95, ssr_path, threshold_regression

DATA = Path(__file__).resolve().parents[1] / "data" / "hansen1999.csv"
CONTROLS = ["q1", "q2", "q3", "d1", "qd1"]


@pytest.fixture(scope="module")
def hansen():
    return pd.read_csv(DATA)


@pytest.fixture(scope="module")
def single(hansen):
    d = hansen
    return threshold_regression(d["i"], d[CONTROLS], d["c1"], d["d1"], d["id"], d["year"],
                                n_thresholds=1, n_boot=50, seed=1)


def test_critical_value():
    assert LR_CRIT_95 == pytest.approx(7.35, abs=0.005)


def test_hansen_single_threshold(single):
    assert single.thresholds[0] == pytest.approx(0.0157, abs=5e-4)
    lo, hi = single.threshold_ci95[0]
    assert lo <= single.thresholds[0] <= hi
    assert single.n_obs == 7910 and single.n_units == 565
    assert single.pvalues[0] < 0.05  # Hansen reports p ≈ 0.00
    curve = single.lr_curves[0]
    assert curve["lr"].min() == 0 and curve["grid"][curve["lr"].argmin()] == single.thresholds[0]


def test_hansen_double_threshold(hansen):
    d = hansen
    fit = threshold_regression(d["i"], d[CONTROLS], d["c1"], d["d1"], d["id"], d["year"],
                               n_thresholds=2, n_boot=0)
    assert fit.thresholds[0] == pytest.approx(0.0157, abs=5e-4)
    assert 0.53 <= fit.thresholds[1] <= 0.545
    assert len(fit.regime_coefs) == 3 and len(fit.f_stats) == 2
    assert all(np.isnan(fit.pvalues))


@pytest.mark.parametrize("time_effects", [False, True])
def test_coefs_match_pyfixest(hansen, single, time_effects):
    pf = pytest.importorskip("pyfixest")
    d = hansen.copy()
    fit = single
    if time_effects:
        fit = threshold_regression(d["i"], d[CONTROLS], d["c1"], d["d1"], d["id"], d["year"],
                                   time_effects=True, n_boot=0)
    g = fit.thresholds[0]
    d["c1_low"] = d["c1"] * (d["d1"] <= g)
    d["c1_high"] = d["c1"] * (d["d1"] > g)
    fe = "id + year" if time_effects else "id"
    ref = pf.feols(f"i ~ q1+q2+q3+d1+qd1+c1_low+c1_high | {fe}", data=d, vcov={"CRV1": "id"})
    ours = np.r_[[fit.coefs[c] for c in CONTROLS], fit.regime_coefs]
    np.testing.assert_allclose(ours, ref.coef().to_numpy(), rtol=0, atol=1e-8)
    ours_se = np.r_[[fit.coef_se[c] for c in CONTROLS], fit.regime_se]
    np.testing.assert_allclose(ours_se, ref.se().to_numpy(), rtol=1e-6)
    assert fit.ssr == pytest.approx(float(np.sum(ref.resid() ** 2)), rel=1e-9)


def _small_panel(seed, N=40, T=6, ties=True):
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(N), T)
    time = np.tile(np.arange(T), N) + 2000
    q = rng.uniform(0, 1, N * T)
    if ties:
        q = np.round(q, 2)  # many tied values: splits only at the last of each tie
    X = rng.normal(size=(N * T, 2))
    r = rng.normal(size=N * T) + 1
    y = (rng.normal(size=N)[unit] + 0.2 * (time - 2000) + X @ [0.5, -0.3]
         + np.where(q <= 0.4, 0.2, 1.0) * r + rng.normal(size=N * T))
    # rows shuffled: nothing may rely on the input being sorted by unit and time
    p = rng.permutation(N * T)
    return y[p], X[p], r[p], q[p], unit[p], time[p]


def _brute_ssr(y, X, r, q, unit, time, cuts, time_effects):
    """OLS with explicit unit (and year) dummies and the regime regressor split at ``cuts``."""
    reg = np.searchsorted(np.sort(cuts), q, side="left")
    splits = np.stack([r * (reg == j) for j in range(len(cuts) + 1)], axis=1)
    D = pd.get_dummies(unit).to_numpy(float)
    cols = [D, X, splits]
    if time_effects:
        cols.append(pd.get_dummies(time).to_numpy(float)[:, 1:])
    Z = np.hstack(cols)
    beta, *_ = np.linalg.lstsq(Z, y, rcond=None)
    e = y - Z @ beta
    return float(e @ e)


@pytest.mark.parametrize("time_effects", [False, True])
@pytest.mark.parametrize("fixed", [(), (0.62,)])
def test_fast_ssr_equals_brute_force(time_effects, fixed):
    y, X, r, q, unit, time = _small_panel(3)
    grid, ssr = ssr_path(y, X, r, q, unit, time, time_effects=time_effects, fixed=fixed, trim=0.05)
    assert len(grid) > 20 and np.all(np.diff(grid) > 0)  # one point per distinct value
    for k in np.linspace(0, len(grid) - 1, 7).round().astype(int):
        brute = _brute_ssr(y, X, r, q, unit, time, [grid[k], *fixed], time_effects)
        assert ssr[k] == pytest.approx(brute, rel=1e-8)


def test_grid_points_and_min_regime_size():
    y, X, r, q, unit, time = _small_panel(4, ties=False)
    grid, _ = ssr_path(y, X, r, q, unit, time, trim=0.05, grid=30)
    assert 20 <= len(grid) <= 30 and np.isin(grid, q).all()
    c = float(np.sort(q)[120])
    grid, _ = ssr_path(y, X, r, q, unit, time, trim=0.05, fixed=(c,))
    n_min = int(0.05 * len(q))
    between = np.array([np.sum((q > min(g, c)) & (q <= max(g, c))) for g in grid])
    assert between.min() >= n_min


def test_bootstrap_no_threshold_and_reproducible():
    rng = np.random.default_rng(7)
    N, T = 120, 6
    unit = np.repeat(np.arange(N), T)
    q = rng.uniform(size=N * T)
    x = rng.normal(size=N * T)
    r = rng.normal(size=N * T)
    y = rng.normal(size=N)[unit] + 0.5 * x + 0.7 * r + rng.normal(size=N * T)
    a = threshold_regression(y, x, r, q, unit, n_boot=100, seed=11)
    b = threshold_regression(y, x, r, q, unit, n_boot=100, seed=11)
    assert a.pvalues[0] > 0.1
    assert a.pvalues == b.pvalues


def test_unbalanced_raises(hansen):
    d = hansen.iloc[1:]
    with pytest.raises(ModelError, match="balanced"):
        threshold_regression(d["i"], d[CONTROLS], d["c1"], d["d1"], d["id"], d["year"], n_boot=0)
    with pytest.raises(ModelError, match="balanced"):
        threshold_regression(d["i"], d[CONTROLS], d["c1"], d["d1"], d["id"], None, n_boot=0)


# ---- the replication section -------------------------------------------------------------------

def _synthetic_frame(seed=5, N=120, T=10, gamma=0.5):
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(N), T)
    t = np.tile(np.arange(2011, 2011 + T), N)
    start = rng.choice([2013, 2015, 2017, 9999], size=N)  # 9999: never treated
    d = (t >= start[unit]).astype(int)
    q = rng.uniform(0, 1, N * T)
    x = rng.normal(size=N * T)
    y = (rng.normal(size=N)[unit] + 0.1 * (t - 2011) + 0.5 * x
         + np.where(q <= gamma, 0.5, 2.5) * d + 0.5 * rng.normal(size=N * T))
    return pd.DataFrame({"id": unit, "t": t, "y": y, "d": d, "q": q, "x": x})


CMAP = {"unit": "id", "time": "t", "outcome": "y", "treated": "d", "threshold": "q", "controls": ["x"]}


def test_section_recovers_threshold():
    from bayes_nqp.frequentist.threshold import run

    panel = panel_from_frame(_synthetic_frame(), {**CMAP, "simulated": True})
    res = run(panel, max_thresholds=2, n_boot=49)
    s = res.summary["threshold"]
    for key in ("thresholds", "threshold_ci95", "f_stats", "pvalues", "regime_coefs", "regime_se",
                "n_thresholds_selected", "model", "lr_curve", "n_boot", "trim"):
        assert key in s
    assert s["pvalues"][0] < 0.05 and s["n_thresholds_selected"] >= 1
    assert abs(s["thresholds"][0] - 0.5) < 0.03
    assert s["regime_coefs"][0] == pytest.approx(0.5, abs=0.3)
    assert s["regime_coefs"][-1] == pytest.approx(2.5, abs=0.3)
    assert len(s["lr_curve"]["grid"]) <= 400 and min(s["lr_curve"]["lr"]) == 0
    assert list(res.tables) == ["threshold_tests", "threshold_coefs"]
    assert len(res.tables["threshold_tests"]) == 2
    fig = res.figures["threshold_lr"]
    assert "SIMULATED DATA" in fig._suptitle.get_text()


def test_section_skips_without_threshold():
    from bayes_nqp.frequentist import run_sections
    from bayes_nqp.frequentist.threshold import run

    cmap = {k: v for k, v in CMAP.items() if k != "threshold"}
    panel = panel_from_frame(_synthetic_frame(N=30, T=4), cmap)
    with pytest.raises(SectionSkipped, match="threshold"):
        run(panel)
    out = run_sections(panel, "threshold")
    assert isinstance(out["threshold"], str) and "threshold" in out["threshold"]
