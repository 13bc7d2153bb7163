"""Figures the report makes from saved results (posterior.nc, estimands.nc, summary.json).

Convergence plots are ArviZ's (``arviz_plots.plot_rank``, ``plot_trace_dist``, ``plot_ppc_dist``,
matplotlib backend); the posterior-versus-frequentist plots are plain matplotlib. Every function
returns a Figure or None when the saved results do not hold what it needs.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from ..paths import nc_unname

log = logging.getLogger(__name__)

#: estimands shown in the rank and trace plots of one model
MAX_TRACE = 6
SIM_TAG = "SIMULATED DATA (demo panel)"


def _figure_of(pc):
    fig = pc.viz["figure"]
    return fig.item() if hasattr(fig, "item") else fig


def _estimands(model_dir: Path, names: list[str]) -> xr.Dataset | None:
    p = model_dir / "estimands.nc"
    if not p.exists():
        return None
    with xr.open_dataset(p, engine="netcdf4") as ds:
        ds = ds.rename({k: nc_unname(k) for k in ds.data_vars if nc_unname(k) != k})
        keep = [n for n in names if n in ds.data_vars][:MAX_TRACE] or list(ds.data_vars)[:MAX_TRACE]
        if not keep:
            return None
        out = ds[keep].load()
    return out.assign_coords(chain=np.arange(out.sizes["chain"]), draw=np.arange(out.sizes["draw"]))


def _grid_size(n: int, cols: int, row_height: float) -> dict:
    """A figure size with room for the titles (ArviZ's default packs wrapped rows too tight)."""
    rows = -(-n // cols)
    return {"figsize": (3.7 * min(n, cols), row_height * rows), "figsize_units": "inches"}


def rank_plot(model_dir: Path, names: list[str], title: str):
    """Fractional-rank Δ-ECDF plot of the key estimands, one line per chain."""
    import arviz_plots as azp

    ds = _estimands(model_dir, names)
    if ds is None or ds.sizes["chain"] < 2:
        return None
    pc = azp.plot_rank(xr.DataTree.from_dict({"posterior": ds}), backend="matplotlib", col_wrap=3,
                       figure_kwargs=_grid_size(len(ds.data_vars), 3, 2.9))
    fig = _figure_of(pc)
    fig.subplots_adjust(hspace=0.8, top=0.86)
    fig.suptitle(title, fontsize=10)
    return fig


def trace_plot(model_dir: Path, names: list[str], title: str):
    """Marginal densities and traces of the key estimands, per chain."""
    import arviz_plots as azp

    ds = _estimands(model_dir, names)
    if ds is None:
        return None
    pc = azp.plot_trace_dist(xr.DataTree.from_dict({"posterior": ds}), backend="matplotlib")
    fig = _figure_of(pc)
    fig.suptitle(title, fontsize=10)
    return fig


def ppc_plot(model_dir: Path, title: str):
    """Posterior predictive densities against the observed outcome (standardised scale)."""
    import arviz_plots as azp

    p = model_dir / "posterior.nc"
    if not p.exists():
        return None
    dt = xr.open_datatree(p, engine="netcdf4")
    try:
        if "posterior_predictive" not in dt.children or "observed_data" not in dt.children:
            return None
        small = xr.DataTree.from_dict({"posterior_predictive": dt["posterior_predictive"].to_dataset().load(),
                                       "observed_data": dt["observed_data"].to_dataset().load()})
    finally:
        dt.close()
    pc = azp.plot_ppc_dist(small, num_samples=50, backend="matplotlib")
    fig = _figure_of(pc)
    fig.suptitle(title, fontsize=10)
    return fig


_EVENT = re.compile(r"^(?P<base>[A-Za-z_]+)\[e=(?P<e>-?\d+(?:\.\d+)?)\]$")


def event_time_plot(summary: dict, title: str, simulated: bool, twfe: dict | None = None):
    """Estimands indexed by event time (``beta[e=k]``, ``att[e=k]``) with their frequentist
    counterparts, and the replication's TWFE event study (``twfe``: its summary entry
    {"<e>": {estimate, ci95}}) alongside: the event-study picture."""
    series: dict[str, list] = {}
    for name, e in summary.get("params", {}).items():
        m = _EVENT.match(name)
        if m:
            series.setdefault(m["base"], []).append((float(m["e"]), name, e))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for base, pts in series.items():
        pts.sort()
        x = np.array([p[0] for p in pts])
        mean = np.array([p[2]["mean"] for p in pts])
        lo = np.array([p[2]["hdi95"][0] for p in pts])
        hi = np.array([p[2]["hdi95"][1] for p in pts])
        ax.fill_between(x, lo, hi, alpha=0.25, label=f"{base}: 95% HDI")
        ax.plot(x, mean, "o-", label=f"{base}: posterior mean")
        fx, fy, flo, fhi, src = [], [], [], [], None
        for xe, name, _ in pts:
            f = (summary.get("comparison", {}).get(name) or {}).get("frequentist")
            if f and f.get("estimate") is not None:
                fx.append(xe + 0.12)
                fy.append(f["estimate"])
                ci = f.get("ci95") or [f["estimate"], f["estimate"]]
                flo.append(ci[0])
                fhi.append(ci[1])
                src = src or f.get("source")
        if fx:
            fy, flo, fhi = map(np.asarray, (fy, flo, fhi))
            ax.errorbar(fx, fy, yerr=[fy - flo, fhi - fy], fmt="s", ms=4, color="0.3", capsize=2,
                        label=f"frequentist ({src or 'replication'}), 95% CI")
    pts = []
    for k, e in (twfe or {}).items():
        try:
            pts.append((float(k), e["estimate"], *(e.get("ci95") or [e["estimate"]] * 2)))
        except (TypeError, ValueError, KeyError):
            continue  # "pretrend_pvalue" and other non-event-time keys
    if pts:
        pts.sort()
        x, y, lo, hi = (np.array(v, dtype=float) for v in zip(*pts))
        ax.errorbar(x - 0.12, y, yerr=[y - lo, hi - y], fmt="D", ms=3.5, color="C3", capsize=2,
                    alpha=0.8, label="TWFE event study (replication), 95% CI")
    ax.axhline(0, color="0.5", lw=0.8, ls="--")
    ax.axvline(-0.5, color="0.7", lw=0.8, ls=":")
    ax.set_xlabel("event time (periods since adoption)")
    ax.set_ylabel("effect (outcome scale)")
    ax.legend(fontsize=8)
    ax.set_title(title + (f"\n{SIM_TAG}" if simulated else ""), fontsize=10)
    fig.tight_layout()
    return fig


def forest_plot(summary: dict, title: str, simulated: bool, names: list[str] | None = None):
    """Posterior mean and 95% HDI of each estimand, with the frequentist estimate and CI where the
    replication has one (heterogeneity: group effects and their contrasts)."""
    params = summary.get("params", {})
    names = [n for n in (names or list(params)) if n in params and not _EVENT.match(n)]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(names) + 1.2))
    y = np.arange(len(names))[::-1]
    for yi, n in zip(y, names):
        e = params[n]
        ax.plot(e["hdi95"], [yi, yi], color="C0", lw=2.2)
        ax.plot(e["mean"], yi, "o", color="C0")
        f = (summary.get("comparison", {}).get(n) or {}).get("frequentist")
        if f and f.get("estimate") is not None:
            ci = f.get("ci95") or [f["estimate"], f["estimate"]]
            ax.plot(ci, [yi - 0.25, yi - 0.25], color="0.45", lw=1.2)
            ax.plot(f["estimate"], yi - 0.25, "s", color="0.45", ms=4)
    ax.set_yticks(y, names, fontsize=8)
    ax.axvline(0, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel("outcome scale — blue: posterior mean, 95% HDI; grey: frequentist, 95% CI")
    ax.set_title(title + (f"\n{SIM_TAG}" if simulated else ""), fontsize=10)
    fig.tight_layout()
    return fig


def threshold_plot(model_dir: Path, replication: dict | None, title: str, simulated: bool):
    """The posterior of the threshold location(s) against Hansen's likelihood-ratio curve."""
    draws = {}
    p = model_dir / "estimands.nc"
    if p.exists():
        with xr.open_dataset(p, engine="netcdf4") as ds:
            for n in ds.data_vars:
                if str(n).startswith("gamma["):
                    draws[str(n)] = ds[n].to_numpy().ravel()
    thr = (replication or {}).get("threshold") or {}
    curve = thr.get("lr_curve") or {}
    if not draws and not curve:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for k, (n, x) in enumerate(sorted(draws.items())):
        x = x[np.isfinite(x)]
        if x.size:
            ax.hist(x, bins=40, density=True, alpha=0.45, color=f"C{k}", label=f"posterior of {n}")
    ax.set_xlabel(thr.get("threshold_variable") or "threshold variable")
    ax.set_ylabel("posterior density")
    if curve.get("grid") and curve.get("lr"):
        ax2 = ax.twinx()
        ax2.plot(curve["grid"], curve["lr"], color="0.25", lw=1, label="Hansen LR(γ)")
        crit = thr.get("lr_critical")
        if crit:
            ax2.axhline(crit, color="C3", lw=0.8, ls="--", label=f"LR 95% critical value ({crit:.2f})")
        for g in thr.get("thresholds") or []:
            ax2.axvline(g, color="0.25", lw=0.8, ls=":")
        ax2.set_ylabel("likelihood ratio (frequentist)")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    else:
        ax.legend(fontsize=8)
    ax.set_title(title + (f"\n{SIM_TAG}" if simulated else ""), fontsize=10)
    fig.tight_layout()
    return fig


def close(fig) -> None:
    plt.close(fig)
