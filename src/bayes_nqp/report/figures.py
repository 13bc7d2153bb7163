"""Figures the report makes from saved results (posterior.nc, estimands.nc, summary.json).

Convergence plots are ArviZ's (``arviz_plots.plot_rank``, ``plot_trace_dist``, ``plot_ppc_dist``,
matplotlib backend); the posterior-versus-frequentist plots are plain matplotlib. Every function
returns a Figure or None when the saved results do not hold what it needs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from .. import estimands as E
from ..contract import CI, FitSummary, HDI
from ..results import title_figure

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
    flat = E.read_flat(p)
    keep = [n for n in names if n in flat][:MAX_TRACE] or list(flat)[:MAX_TRACE]
    if not keep:
        return None
    out = xr.Dataset({n: (E.SAMPLE_DIMS, flat[n]) for n in keep})
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


def event_time_plot(summary: dict, title: str, simulated: bool, twfe: dict | None = None):
    """Estimands indexed by event time (``beta[e=k]``, ``att[e=k]``) with their frequentist
    counterparts, and the replication's TWFE event study (``twfe``: its summary entry
    {"<e>": {estimate, ci95}}) alongside: the event-study picture."""
    series: dict[str, list] = {}
    params = summary.get("params", {})
    for name, ix in E.select(summary, dim="event_time"):
        series.setdefault(ix["stem"], []).append((float(ix["coord"]), name, params[name]))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(11, 4))  # room for the legend at the right
    drawn: list[float] = []   # the frequentist estimates already drawn (each estimator once)
    gaps: set[float] = set()
    for base, pts in series.items():
        pts.sort()
        x = np.array([p[0] for p in pts])
        mean = np.array([p[2]["mean"] for p in pts])
        lo = np.array([p[2][HDI][0] for p in pts])
        hi = np.array([p[2][HDI][1] for p in pts])
        # a missing event time inside the window (the reference period) is a gap, not a line
        missing = [float(k) for k in range(int(x.min()), int(x.max()) + 1) if float(k) not in set(x)]
        gaps.update(missing)
        if missing:
            xs = np.sort(np.r_[x, missing])
            idx = {v: i for i, v in enumerate(x)}
            mean, lo, hi = (np.array([arr[idx[v]] if v in idx else np.nan for v in xs]) for arr in (mean, lo, hi))
            x = xs
        ax.fill_between(x, lo, hi, alpha=0.25, label=f"{base}: 95% HDI")
        ax.plot(x, mean, "o-", label=f"{base}: posterior mean")
        fx, fy, flo, fhi, src = [], [], [], [], None
        for xe, name, _ in pts:
            f = (summary.get("comparison", {}).get(name) or {}).get("frequentist")
            if f and f.get("estimate") is not None:
                fx.append(xe + 0.12)
                fy.append(f["estimate"])
                ci = f.get(CI) or [f["estimate"], f["estimate"]]
                flo.append(ci[0])
                fhi.append(ci[1])
                src = src or f.get("source")
        if fx:
            drawn += list(fy)
            fy, flo, fhi = map(np.asarray, (fy, flo, fhi))
            ax.errorbar(fx, fy, yerr=[fy - flo, fhi - fy], fmt="s", ms=4, color="0.3", capsize=2,
                        label=f"frequentist ({src or 'replication'}), 95% CI")
    pts = []
    for k, e in (twfe or {}).items():
        try:
            pts.append((float(k), e["estimate"], *(e.get(CI) or [e["estimate"]] * 2)))
        except (TypeError, ValueError, KeyError):
            continue  # "pretrend_pvalue" and other non-event-time keys
    # the TWFE event study is drawn once: not again when it is the counterpart drawn above
    if pts and drawn and all(any(abs(p[1] - d) <= 1e-12 * max(1.0, abs(d)) for d in drawn)
                             for p in pts if p[0] not in gaps):
        pts = []
    if pts:
        pts.sort()
        x, y, lo, hi = (np.array(v, dtype=float) for v in zip(*pts))
        ax.errorbar(x - 0.12, y, yerr=[y - lo, hi - y], fmt="D", ms=3.5, color="C3", capsize=2,
                    alpha=0.8, label="TWFE event study (replication), 95% CI")
    ax.axhline(0, color="0.5", lw=0.8, ls="--")
    ax.axvline(-0.5, color="0.7", lw=0.8, ls=":")
    if gaps:
        g = sorted(gaps)
        ax.plot(g, [0.0] * len(g), "o", mfc="white", mec="0.2", ms=7, zorder=5,
                label="reference period (e = " + ", ".join(f"{v:g}" for v in g) + "): fixed at 0, not estimated")
    ax.set_xlabel("event time (periods since adoption)")
    ax.set_ylabel("effect (outcome scale)")
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over data
    ax.set_title(title + (f"\n{SIM_TAG}" if simulated else ""), fontsize=10)
    fig.tight_layout()
    return fig


#: estimands (their stems) not on the outcome's scale (kept off the forest plot's outcome axis)
OFF_SCALE = frozenset({"breakdown_M", "n_thresholds", "rho_breakdown", "prop_mediated", "gamma", "a", "b"})


def forest_plot(summary: dict, title: str, simulated: bool, names: list[str] | None = None):
    """Posterior mean and 95% HDI of each estimand, with the frequentist estimate and CI where the
    replication has one (heterogeneity: group effects and their contrasts)."""
    params = summary.get("params", {})
    # only effects on the outcome's scale share its axis: not the unitless or other-scale
    # quantities (shares, threshold locations, breakdown values, counts)
    by_time = {n for n, _ in E.select(summary, dim="event_time")}
    names = [n for n in (names or list(params)) if n in params and n not in by_time
             and E.stem_of(summary, n) not in OFF_SCALE]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(names) + 1.2))
    y = np.arange(len(names))[::-1]
    for yi, n in zip(y, names):
        e = params[n]
        ax.plot(e[HDI], [yi, yi], color="C0", lw=2.2)
        ax.plot(e["mean"], yi, "o", color="C0")
        f = (summary.get("comparison", {}).get(n) or {}).get("frequentist")
        if f and f.get("estimate") is not None:
            ci = f.get(CI) or [f["estimate"], f["estimate"]]
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
    draws = {n: x.ravel() for n, x in _estimand_draws(model_dir, "gamma").items()}
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



# ---- the models' own figures, drawn from a saved fit (summary.json, estimands.nc) --------------
# Each maker takes (model_dir, summary, replication, model name, simulated) and returns a Figure
# or None; the models' specs name the ones they want (``figures = [...]`` in [model]).

def _params(s: dict) -> dict:
    return s.get("params") or {}


def _extras(s: dict) -> dict:
    return FitSummary.from_json(s).extras


def _counterpart(s: dict, name: str) -> dict | None:
    return ((s.get("comparison") or {}).get(name) or {}).get("frequentist")


def _event_time(model_dir: Path, summary: dict, replication: dict | None, name: str, simulated: bool):
    return event_time_plot(summary, f"{name}: effects by event time", simulated,
                           (replication or {}).get("event_study"))


def _threshold_lr(model_dir: Path, summary: dict, replication: dict | None, name: str, simulated: bool):
    return threshold_plot(model_dir, replication, "threshold location", simulated)


def heterogeneity_groups(model_dir, s: dict, replication, name: str, simulated: bool):
    """A forest plot per group variable (posterior mean + 95% HDI next to the split-sample TWFE
    95% CI) and the contrasts, with P(effect > 0)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    groups = _extras(s).get("groups", {})
    if not groups:
        return None
    params = _params(s)
    contrasts = E.select(s, stem="contrast")
    heights = [max(2, len(groups[g])) for g in groups] + [max(2, len(contrasts))]
    fig = Figure(figsize=(8, 1.6 + 0.55 * sum(heights)))
    axes = fig.subplots(len(heights), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)

    def interval(ax, k, mean, lo, hi, p_pos, color):
        ax.plot([lo, hi], [k, k], color=color, lw=2.5)
        ax.plot(mean, k, "o", color=color)
        ax.annotate(f"P(>0) = {p_pos:.2f}", (hi, k), xytext=(5, -3), textcoords="offset points",
                    fontsize=8)

    for ax, g in zip(axes[:, 0], groups):
        rows = groups[g]
        for k, row in enumerate(rows.values()):
            interval(ax, k, row["mean"], *row[HDI], row["p_positive"], "C0")
            f = row.get("frequentist")
            if f and f.get(CI):
                # just below the Bayesian interval (the axis is inverted)
                ax.plot(f[CI], [k + 0.3, k + 0.3], color="C1", lw=1.2)
                ax.plot(f["estimate"], k + 0.3, "s", mfc="white", color="C1")
        ax.set_yticks(range(len(rows)), [f"{lv} (n={r['n_units']})" for lv, r in rows.items()])
        ax.set_title(f"effect by {g}", fontsize=10, loc="left")
    ax = axes[-1, 0]
    for k, (c, _) in enumerate(contrasts):
        e = params[c]
        interval(ax, k, e["mean"], *e[HDI], e["p_positive"], "C2")
    ax.set_yticks(range(len(contrasts)), [f"{ix.get('group')}:{ix['coord']}" for _, ix in contrasts])
    ax.set_title("contrasts between levels", fontsize=10, loc="left")
    ax.set_xlabel("effect on the outcome (original scale)")
    for ax in axes[:, 0]:
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_ylim(ax.get_ylim()[0] - 0.2, ax.get_ylim()[1] + 0.2)
        ax.invert_yaxis()
        lo, hi = ax.get_xlim()
        ax.set_xlim(lo, hi + 0.18 * (hi - lo))  # room for the P(>0) labels
    handles = [Line2D([], [], color="C0", marker="o", lw=2.5, label="Bayesian, partially pooled: mean, 95% HDI"),
               Line2D([], [], color="C1", marker="s", mfc="white", lw=1.2, label="split-sample TWFE: estimate, 95% CI"),
               Line2D([], [], color="C2", marker="o", lw=2.5, label="contrast: mean, 95% HDI")]
    title_figure(fig, "Heterogeneous effects: partial pooling vs split-sample TWFE", simulated)
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def event_study_effects(model_dir, s: dict, replication, name: str, simulated: bool):
    """The Bayesian event study next to the TWFE one, with the pre-trend band."""
    from matplotlib.figure import Figure

    ex = _extras(s)
    info = ex.get("event_study", {})
    params = _params(s)
    rows = [{"e": -1, "mean": 0.0, "lo": 0.0, "hi": 0.0}]
    beta = E.select(s, var="beta")
    for n, ix in beta:
        p = params[n]
        rows.append({"e": ix["coord"], "mean": p["mean"], "lo": p[HDI][0], "hi": p[HDI][1]})
    t = pd.DataFrame(rows).sort_values("e")
    fig = Figure(figsize=(8, 4.8))
    ax = fig.add_subplot(111)
    ax.errorbar(t["e"] - 0.12, t["mean"], yerr=[t["mean"] - t["lo"], t["hi"] - t["mean"]],
                fmt="o", ms=4, capsize=2, lw=1, color="#6a3d9a",
                label=f"Bayesian ({info.get('prior')} prior): mean, 95% HDI")
    comp = s.get("comparison") or {}
    freq = [(int(ix["coord"]), comp[n]["frequentist"]) for n, ix in beta
            if n in comp and comp[n].get("frequentist", {}).get(CI)]
    if freq:
        fe = np.array([e for e, _ in freq], dtype=float)
        est = np.array([f["estimate"] for _, f in freq])
        ci = np.array([f[CI] for _, f in freq])
        ax.errorbar(fe + 0.12, est, yerr=[est - ci[:, 0], ci[:, 1] - est], fmt="s", ms=3.5,
                    capsize=2, lw=1, color="#1f77b4", label="TWFE event study, 95% CI")
    pt_ = ex.get("pretrend", {})
    if pt_.get("prob_all_within") is not None:
        d = pt_["delta"]
        ax.fill_between([-info.get("leads", 1) - 0.5, -1.5], -d, d, color="0.85", zorder=0,
                        label=f"±δ; P(all pre-period |β| ≤ δ) = {pt_['prob_all_within']:.2f}")
    ax.axhline(0, color="black", lw=0.8)
    ax.axvline(-0.5, color="0.4", lw=0.8, ls="--")
    ax.set_xlabel("event time (periods since first treatment; reference −1, end points binned)")
    ax.set_ylabel("effect on outcome")
    ax.legend(fontsize=8, loc="upper left")
    title_figure(fig, "Bayesian event study", simulated)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def event_study_sensitivity(model_dir, s: dict, replication, name: str, simulated: bool):
    """The interval of att_post under relative-magnitude restrictions on parallel trends."""
    from matplotlib.figure import Figure

    sens = _extras(s).get("sensitivity", {})
    if not sens.get("grid"):
        return None
    g = pd.DataFrame([{"M": r["M"], "lo": r[CI][0], "hi": r[CI][1]} for r in sens["grid"]])
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot(111)
    ax.fill_between(g["M"], g["lo"], g["hi"], color="#cab2d6", alpha=0.7,
                    label="95% interval of att_post under the restriction")
    ax.plot(g["M"], g["lo"], color="#6a3d9a", lw=1)
    ax.plot(g["M"], g["hi"], color="#6a3d9a", lw=1)
    ax.axhline(0, color="black", lw=0.8)
    bm = sens.get("breakdown_M")
    if bm is not None and np.isfinite(bm):
        ax.axvline(bm, color="#d62728", ls="--", lw=1.2, label=f"breakdown M = {bm:.2f}")
    ax.set_xlabel("M: post-period deviation ≤ M × largest pre-period deviation")
    ax.set_ylabel("att_post")
    ax.legend(fontsize=8)
    title_figure(fig, "Sensitivity to parallel-trend violations (relative magnitudes)", simulated)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def staggered_att(model_dir, s: dict, replication, name: str, simulated: bool):
    """ATT by event time (with Callaway–Sant'Anna and the TWFE event study) and by cohort."""
    from matplotlib.figure import Figure

    rep = replication or {}
    params = _params(s)
    twfe = _extras(s).get("twfe") or {}
    fig = Figure(figsize=(12, 4.8))
    ax1, ax2 = fig.add_subplot(121), fig.add_subplot(122)

    def _bayes(dim):
        return [(str(ix["coord"]), params[n]) for n, ix in E.select(s, stem="att", dim=dim)]

    ev = _bayes("event_time")
    x = np.array([float(k) for k, _ in ev])
    m = np.array([v["mean"] for _, v in ev])
    hdi = np.array([v[HDI] for _, v in ev]).reshape(-1, 2)
    ax1.errorbar(x - 0.15, m, yerr=[m - hdi[:, 0], hdi[:, 1] - m], fmt="o", ms=4, capsize=2,
                 lw=1, color="#6a3d9a", label="Bayesian staggered ATT: mean, 95% HDI")
    for key, label, col, off, mk in (("callaway_santanna", "Callaway–Sant'Anna", "#2ca02c", 0.0, "^"),
                                     ("event_study", "TWFE event study", "#1f77b4", 0.15, "s")):
        src = rep.get(key) or {}
        src = src.get("event_time", src) if key == "callaway_santanna" else src
        pts = [(float(k), v) for k, v in src.items()
               if isinstance(v, dict) and v.get(CI) and float(k) >= 0]
        if pts:
            xe = np.array([p[0] for p in pts])
            est = np.array([p[1]["estimate"] for p in pts])
            ci = np.array([p[1][CI] for p in pts])
            ax1.errorbar(xe + off, est, yerr=[est - ci[:, 0], ci[:, 1] - est], fmt=mk, ms=3.5,
                         capsize=2, lw=1, color=col, label=f"{label}, 95% CI")
    ax1.axhline(0, color="black", lw=0.8)
    ax1.set_xlabel("event time (periods since first treatment)")
    ax1.set_ylabel("ATT on outcome")
    ax1.set_title("by event time", fontsize=10)

    co = _bayes("cohort")
    xs = np.arange(len(co))
    m = np.array([v["mean"] for _, v in co])
    hdi = np.array([v[HDI] for _, v in co]).reshape(-1, 2)
    ax2.errorbar(xs, m, yerr=[m - hdi[:, 0], hdi[:, 1] - m], fmt="o", ms=4, capsize=2, lw=1,
                 color="#6a3d9a", label="Bayesian staggered ATT: mean, 95% HDI")
    ax2.set_xticks(xs, [k for k, _ in co])
    att = params.get("att")
    if att:
        ax2.axhline(att["mean"], color="#6a3d9a", lw=1, ls=":", label=f"Bayesian att {att['mean']:.4g}")
    if twfe.get("estimate") is not None:
        ax2.axhline(twfe["estimate"], color="#1f77b4", lw=1, ls="--",
                    label=f"TWFE DID {twfe['estimate']:.4g}")
    cs = (rep.get("callaway_santanna") or {}).get("overall") or {}
    if cs.get("estimate") is not None:
        ax2.axhline(cs["estimate"], color="#2ca02c", lw=1, ls="-.",
                    label=f"Callaway–Sant'Anna overall {cs['estimate']:.4g}")
    ax2.axhline(0, color="black", lw=0.8)
    ax2.set_xlabel("cohort (first treated period)")
    ax2.set_title("by cohort", fontsize=10)
    for ax in (ax1, ax2):
        ax.legend(fontsize=7.5)
    title_figure(fig, "Staggered ATT (Bayesian extended TWFE)", simulated)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def _mediators(s: dict) -> list[str]:
    return [str(ix["coord"]) for _, ix in E.select(s, var="indirect")]


def mediation_decomposition(model_dir, s: dict, replication, name: str, simulated: bool):
    """Direct, indirect (per mediator) and total effects: posterior next to the stepwise ones."""
    from matplotlib.figure import Figure

    params = _params(s)
    names = ["direct", *(n for n, _ in E.select(s, var="indirect")), "total"]
    fig = Figure(figsize=(7, 0.6 * len(names) + 1.6))
    ax = fig.subplots()
    for i, n in enumerate(names):
        p = params.get(n)
        if p:
            ax.plot(p[HDI], [i, i], color="C0", lw=2.5)
            ax.plot(p["mean"], i, "o", color="C0", label="posterior mean, 95% HDI")
        f = _counterpart(s, n)
        if f and f.get("estimate") is not None:
            if f.get(CI):
                ax.plot(f[CI], [i - 0.25, i - 0.25], color="C1", lw=1.5)
            ax.plot(f["estimate"], i - 0.25, "s", color="C1", ms=5, label="stepwise estimate, 95% CI")
    ax.axvline(0, color="0.5", lw=0.8, ls=":")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("effect on the outcome (original units)")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))  # one legend entry per series, not per row
    ax.legend(list(uniq.values()), list(uniq.keys()), fontsize=8, loc="best")
    title_figure(fig, "Mediation decomposition: Bayesian joint model vs stepwise", simulated)
    fig.tight_layout()
    return fig


def mediation_rho_sensitivity(model_dir, s: dict, replication, name: str, simulated: bool):
    """Each indirect effect as a function of the mediator–outcome error correlation ρ."""
    from matplotlib.figure import Figure

    sens = _extras(s).get("rho_sensitivity") or {}
    meds = [m for m in _mediators(s) if m in sens]
    if not meds:
        return None
    fig = Figure(figsize=(4.2 * len(meds) + 0.6, 3.6))
    axes = fig.subplots(1, len(meds), squeeze=False)[0]
    for ax, med in zip(axes, meds):
        r = sens[med]
        rho = np.asarray(r["rho"], dtype=float)
        ax.fill_between(rho, np.asarray(r[f"{CI}_lo"], float), np.asarray(r[f"{CI}_hi"], float),
                        color="C0", alpha=0.25, label="95% interval")
        ax.plot(rho, np.asarray(r["mean"], float), color="C0", label="posterior mean")
        ax.axhline(0, color="0.4", lw=0.8)
        bd = r.get("breakdown")
        if bd is not None and np.isfinite(bd):
            ax.axvline(bd, color="C3", ls="--", lw=1, label=f"breakdown ρ = {bd:.3f}")
        ax.set_xlabel("ρ = corr(mediator error, outcome error)")
        ax.set_title(f"indirect effect via {med}", fontsize=10)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("indirect effect (outcome units)")
    title_figure(fig, "Sensitivity of the indirect effect to mediator–outcome confounding", simulated)
    fig.tight_layout()
    return fig


def threshold_gamma(model_dir, s: dict, replication, name: str, simulated: bool):
    """The posterior of γ (as the grid's masses, or a histogram of draws) with Hansen's LR curve."""
    from matplotlib.figure import Figure

    from ..frequentist.hansen import LR_CRIT_95

    ex = _extras(s)
    n_thr = int(ex.get("n_thresholds_fitted") or 0)
    if not n_thr:
        return None
    fig = Figure(figsize=(7.5, 4))
    ax = fig.subplots()
    q = ex.get("threshold_variable")
    gp = ex.get("gamma_posterior")
    if gp:
        grid = np.asarray(gp["grid"], dtype=float)
        edges = (np.r_[grid[0], (grid[1:] + grid[:-1]) / 2, grid[-1]] if grid.size > 1
                 else np.r_[grid, grid + 1])
        width = np.diff(edges)
        for k, m in enumerate(gp["mass"]):
            # bars as wide as the prior cells, as high as the density: the area is the mass
            ax.bar(edges[:-1], np.asarray(m, dtype=float) / width, width=width, align="edge",
                   color=f"C{k}", alpha=0.6, label=f"posterior of γ{k + 1}")
    else:
        draws = list(_estimand_draws(Path(model_dir), "gamma").values()) if model_dir else []
        for k, g in enumerate(draws[:n_thr]):
            if g is not None:
                ax.hist(np.asarray(g).ravel(), bins=60, density=True, color=f"C{k}", alpha=0.6,
                        label=f"posterior of γ{k + 1}")
    ax.set_xlabel(f"γ ({q})")
    ax.set_ylabel("posterior density")
    rep = (replication or {}).get("threshold") or {}
    lr = rep.get("lr_curve")
    handles, labels = ax.get_legend_handles_labels()
    if lr and len(lr.get("grid") if lr.get("grid") is not None else []):
        ax2 = ax.twinx()
        ax2.plot(lr["grid"], lr["lr"], color="0.25", lw=1, label="Hansen LR(γ)")
        crit = rep.get("lr_critical", LR_CRIT_95)
        ax2.axhline(crit, color="C3", ls="--", lw=1, label=f"LR 95% critical value {crit:.2f}")
        ax2.set_ylabel("LR statistic (replication)")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=8, loc="upper right")
    title_figure(fig, f"Threshold in {q}: posterior of γ vs the Hansen LR curve", simulated)
    fig.tight_layout()
    return fig


def _estimand_draws(model_dir: Path, var: str) -> dict:
    """The saved draws of the estimand variable ``var`` (all its coordinates), by flat name."""
    p = Path(model_dir) / "estimands.nc"
    if not p.exists():
        return {}
    ds = E.read(p)
    return E.flatten(ds[[var]]) if var in ds.data_vars else {}


#: the figures a model's spec may ask the report for (``figures = [...]`` in its [model]):
#: name -> (caption, maker(model_dir, summary, replication, model name, simulated) -> Figure)
REPORT_FIGURES = {
    "groups": ("Group effects, partially pooled, against the split-sample TWFE; the contrasts",
               heterogeneity_groups),
    "effects": ("The Bayesian event study against the TWFE event study, with the pre-trend band",
                event_study_effects),
    "sensitivity": ("The post-period effect under parallel-trend violations of relative magnitude M",
                    event_study_sensitivity),
    "att": ("ATT by event time and by cohort, with Callaway–Sant'Anna and TWFE", staggered_att),
    "event_time": ("Posterior by event time against the frequentist estimates and the TWFE event study",
                   _event_time),
    "decomposition": ("Direct, indirect and total effects: joint Bayesian model vs stepwise",
                      mediation_decomposition),
    "rho_sensitivity": ("Indirect effects under mediator–outcome confounding (ρ)",
                        mediation_rho_sensitivity),
    "gamma": ("Posterior of the threshold location(s) against Hansen's LR curve", threshold_gamma),
    "lr": ("Posterior of the threshold against Hansen's LR curve", _threshold_lr),
}


def model_figures(model_dir, summary: dict, replication: dict | None, names) -> dict:
    """name -> Figure (None where there is nothing to draw) for the report figures ``names``."""
    name = summary.get("model", "")
    sim = bool((summary.get("data") or {}).get("simulated"))
    return {f: REPORT_FIGURES[f][1](model_dir, summary, replication, name, sim) for f in names}
