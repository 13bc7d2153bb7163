"""Replication section "threshold": Hansen's (1999) fixed-effect panel threshold regression.

    y_it = μ_i [+ λ_t] + X_it·β + θ_1·r_it·1(q_it ≤ γ_1) + … + θ_{m+1}·r_it·1(q_it > γ_m) + e_it

with r the regime regressor (the treatment unless the map names one), q the threshold variable.
What to know first: the number of thresholds is chosen by the bootstrap F tests of m−1 against m
thresholds, m = 1..max_thresholds: the largest m with p < 0.05. The thresholds and slopes reported
are those of that model, and of the single-threshold model when no test rejects (``model`` says
which). The search itself is hansen.py.

Every F test gets the same ``n_boot`` (300) replications: the vectorised search makes the three
tests on the 287×12 demo panel take about a second, so nothing is gained by thinning the second
and third.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ModelError, SectionSkipped
from ..results import estimate, jsonable, title_figure
from .base import SectionResult, section
from .hansen import LR_CRIT_95, MAX_THRESHOLDS, NoSplitError, threshold_regression

#: the LR curve stored in summary.json is thinned to this many points (the figure keeps them all)
LR_POINTS = 400


@section("threshold")
def run(panel, n_thresholds=None, max_thresholds=3, n_boot=300, trim=0.01, seed=0) -> SectionResult:
    """Fit 1..max_thresholds thresholds sequentially, test each, report the selected model.

    ``n_thresholds`` fixes the number of thresholds instead (tests 1..n_thresholds are still run).
    Skips (SectionSkipped) without outcome, threshold, regime or balance; a model that cannot be
    fitted on this data (collinear controls, say) is skipped with the reason too.
    """
    panel.require("outcome", "threshold", "regime", "balanced", what="the threshold regression")
    if n_thresholds is not None and n_thresholds not in range(1, MAX_THRESHOLDS + 1):
        raise ModelError(f"n_thresholds must be 1, 2 or 3, got {n_thresholds}")
    if not 1 <= max_thresholds <= MAX_THRESHOLDS:
        raise ModelError(f"max_thresholds must be 1, 2 or 3, got {max_thresholds}")
    df = panel.df
    args = (df["y"], df[panel.controls], df[panel.regime], df[panel.threshold],
            df["unit_idx"], df["time_idx"])
    kw = dict(time_effects=panel.time_effects, trim=trim, seed=seed, control_names=panel.controls)

    m_test = n_thresholds or max_thresholds
    notes = []
    while True:
        try:
            tests = threshold_regression(*args, n_thresholds=m_test, n_boot=n_boot, **kw)
            break
        except NoSplitError as exc:
            # a short panel may leave no room for a third regime of ⌊trim·n⌋ observations
            if n_thresholds is not None or m_test == 1:
                raise SectionSkipped(f"the threshold regression cannot be fitted: {exc}") from exc
            notes.append(f"{m_test} thresholds do not fit the trimming (trim={trim:g}); tested up to "
                         f"{m_test - 1}")
            m_test -= 1
        except ModelError as exc:
            raise SectionSkipped(f"the threshold regression cannot be fitted: {exc}") from exc

    # Hansen's sequential procedure: test 0 vs 1, and go on to m+1 only while the m-th test rejects
    n_selected = 0
    for p in tests.pvalues:
        if p >= 0.05:
            break
        n_selected += 1
    if n_thresholds is not None:
        m_rep = n_thresholds
        why = f"{n_thresholds} threshold(s), as asked"
    elif n_selected:
        m_rep = n_selected
        why = f"{n_selected} threshold(s): sequential F tests (m−1 vs m) reject at 5% up to m"
    else:
        m_rep = 1
        why = "no F test has p < 0.05; the single-threshold model is shown so that an estimate exists"
    # the search is deterministic, so a refit without bootstrap gives the same m-threshold model
    fit = tests if m_rep == m_test else threshold_regression(*args, n_thresholds=m_rep, n_boot=0, **kw)

    q, r = panel.threshold, panel.regime
    labels = _regime_labels(fit.thresholds, q)
    lr = fit.lr_curves[0]
    keep = _thin(np.asarray(lr["lr"]), LR_POINTS)
    summary = {
        "thresholds": fit.thresholds,
        "threshold_ci95": fit.threshold_ci95,
        "f_stats": tests.f_stats,
        "pvalues": tests.pvalues,
        "regime_coefs": fit.regime_coefs,
        "regime_se": fit.regime_se,
        "n_thresholds_selected": n_selected,
        "model": {"n_thresholds": m_rep, "reason": why},
        "regimes": {lab: estimate(b, s) for lab, b, s in zip(labels, fit.regime_coefs, fit.regime_se)},
        "controls": {k: estimate(fit.coefs[k], fit.coef_se[k]) for k in fit.coefs},
        "lr_curve": {"grid": np.asarray(lr["grid"])[keep], "lr": np.asarray(lr["lr"])[keep]},
        "lr_critical": LR_CRIT_95,
        "n_boot": tests.n_boot,
        "trim": trim,
        "threshold_variable": q,
        "regime_variable": r,
        "time_effects": fit.time_effects,
        "se": "cluster-robust by unit (CRV1)",
        "n_obs": fit.n_obs,
        "n_units": fit.n_units,
    }
    if notes:
        summary["notes"] = notes

    test_table = pd.DataFrame([{
        "m": st["m"], "test": f"{st['m'] - 1} vs {st['m']} threshold(s)", "F": st["f_stat"],
        "p": st["pvalue"], "n_boot": tests.n_boot, "threshold": st["threshold"],
        "ci95_lo": st["ci95"][0], "ci95_hi": st["ci95"][1]} for st in tests.stages])
    z = stats.norm.ppf(0.975)
    coef_rows = [(f"{r} · 1({lab})", b, s) for lab, b, s in
                 zip(labels, fit.regime_coefs, fit.regime_se)]
    coef_rows += [(k, fit.coefs[k], fit.coef_se[k]) for k in fit.coefs]
    coef_table = pd.DataFrame([{
        "term": t, "estimate": b, "se": s, "ci95_lo": b - z * s, "ci95_hi": b + z * s,
        "pvalue": 2 * stats.norm.sf(abs(b / s)) if s > 0 else np.nan} for t, b, s in coef_rows])

    return SectionResult(
        summary={"threshold": jsonable(summary)},
        tables={"threshold_tests": test_table, "threshold_coefs": coef_table},
        figures={"threshold_lr": _figure(fit, q, panel.simulated)},
    )


def _regime_labels(thresholds: list[float], q: str) -> list[str]:
    cuts = [f"{g:.4g}" for g in thresholds]
    out = [f"{q} ≤ {cuts[0]}"]
    out += [f"{a} < {q} ≤ {b}" for a, b in zip(cuts[:-1], cuts[1:])]
    out.append(f"{q} > {cuts[-1]}")
    return out


def _thin(lr: np.ndarray, n: int) -> np.ndarray:
    """≤ n evenly spaced indices, the minimum (γ̂, LR = 0) always among them."""
    if lr.size <= n:
        return np.arange(lr.size)
    return np.unique(np.r_[np.linspace(0, lr.size - 1, n - 1).round().astype(int), lr.argmin()])


def _figure(fit, q: str, simulated: bool):
    from matplotlib.figure import Figure  # no pyplot: no backend or global state touched

    m = len(fit.thresholds)
    fig = Figure(figsize=(4.2 * m + 0.8, 3.6))
    axes = fig.subplots(1, m, squeeze=False)[0]
    for k, ax in enumerate(axes):
        cur = fit.lr_curves[k]
        ax.plot(cur["grid"], cur["lr"], lw=1, color="C0")
        ax.axhline(LR_CRIT_95, color="C3", ls="--", lw=1, label=f"95% critical value {LR_CRIT_95:.2f}")
        ax.axvline(fit.thresholds[k], color="0.3", ls=":", lw=1,
                   label=f"γ̂{k + 1} = {fit.thresholds[k]:.4g}")
        ax.set_xlabel(f"γ ({q})")
        ax.set_ylabel("LR(γ)" if k == 0 else "")
        ax.set_title(f"threshold {k + 1} of {m}", fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
    title = "Hansen threshold regression: likelihood-ratio statistic"
    title_figure(fig, title, simulated)
    fig.tight_layout()
    return fig
