"""Matplotlib figures of the replication sections. Figures from a simulated panel say so.

Figures are built with the object API on a non-interactive canvas (no pyplot state), so
library code never opens a window; ``results.save_figure`` writes and closes them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..results import title_figure

COLORS = {"TWFE": "#1f77b4", "Sun-Abraham": "#d62728", "Callaway-Sant'Anna": "#2ca02c"}


def event_study_figure(curves: dict[str, pd.DataFrame], panel, pretrend_p=None) -> Figure:
    """Coefficients by event time with 95% CIs, one offset series per estimator."""
    fig = Figure(figsize=(8, 4.8))
    ax = fig.add_subplot(111)
    n = len(curves)
    width = 0.22
    for k, (label, tab) in enumerate(curves.items()):
        t = tab[tab["event_time"] != "overall"].copy()
        if t.empty:
            continue
        x = t["event_time"].astype(float).to_numpy() + (k - (n - 1) / 2) * width
        est = t["estimate"].astype(float).to_numpy()
        lo = t["ci95_lo"].astype(float).to_numpy()
        hi = t["ci95_hi"].astype(float).to_numpy()
        ax.errorbar(x, est, yerr=[est - lo, hi - est], fmt="o", ms=4, capsize=2, lw=1,
                    color=COLORS.get(label), label=label)
    ax.axhline(0, color="black", lw=0.8)
    ax.axvline(-0.5, color="0.4", lw=0.8, ls="--")
    ax.set_xlabel("event time (periods since first treatment; TWFE reference −1, ends binned)")
    ax.set_ylabel("effect on outcome (95% CI)")
    if pretrend_p is not None:
        ax.text(0.01, 0.98, f"TWFE pre-trend F-test p = {pretrend_p:.3f}", transform=ax.transAxes,
                va="top", fontsize=8)
    ax.legend(fontsize=8, loc="lower right")
    title_figure(fig, "Event study: TWFE, Sun–Abraham, Callaway–Sant'Anna", panel.simulated)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def placebo_figure(draws: np.ndarray, actual: float, p_value: float, panel) -> Figure:
    """Histogram of placebo TWFE coefficients with the actual estimate marked."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot(111)
    ax.hist(draws, bins=40, color="0.7", edgecolor="white")
    ax.axvline(actual, color="#d62728", lw=1.5, label=f"actual estimate {actual:.3f}")
    ax.axvline(0, color="black", lw=0.8, ls="--")
    ax.set_xlabel("TWFE coefficient under randomly reassigned pilot cities and years")
    ax.set_ylabel("placebo draws")
    ax.legend(fontsize=8, title=f"{len(draws)} draws, permutation p = {p_value:.3f}",
              title_fontsize=8)
    title_figure(fig, "Placebo test", panel.simulated)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def heterogeneity_figure(table: pd.DataFrame, panel) -> Figure:
    """Split-sample estimates with 95% CIs, one row per group level."""
    fig = Figure(figsize=(7, 0.45 * len(table) + 1.6))
    ax = fig.add_subplot(111)
    y = np.arange(len(table))[::-1]
    est = table["estimate"].to_numpy(float)
    ax.errorbar(est, y, xerr=[est - table["ci95_lo"].to_numpy(float),
                              table["ci95_hi"].to_numpy(float) - est],
                fmt="o", color="#1f77b4", capsize=2)
    ax.set_yticks(y, [f"{g}: {lv}" for g, lv in zip(table["group"], table["level"])])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("split-sample TWFE effect (95% CI)")
    title_figure(fig, "Heterogeneity", panel.simulated)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig
