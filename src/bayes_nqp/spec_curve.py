r"""The multiverse of specifications (``bn.multiverse``, ``bayes-nqp multiverse``): the treatment
effect over a grid of defensible choices.

Each specification is one choice along each of four dimensions:

``estimator``
    ``twfe`` (pyfixest ``y ~ D + controls | unit + time``, unit-clustered CRV1),
    ``sun_abraham`` (diff-diff, never-treated controls), ``cs_never`` / ``cs_notyet``
    (Callaway–Sant'Anna, never- or not-yet-treated controls), ``bayes_did`` (the did model's
    ``tau``), ``bayes_staggered`` (the staggered model's ``att``).
``controls``
    ``none``, ``all`` (the column map's controls) and ``-<control>``: all but one (only with at
    least two controls).
``sample``
    ``all``; ``-<group>=<level>``: the units of one level of a group variable dropped;
    ``-cohort=<g>``: one adoption cohort dropped; ``window``: the balanced window, the periods from
    ``WINDOW`` before the first adoption to ``WINDOW`` after the last, units observed in all.
``priors``
    a prior set by name (Bayesian estimators only; ``null`` for the frequentist ones).

The grid is the full product of the chosen options (the frequentist estimators once, the Bayesian
ones once per prior set); :func:`grid` restricts any dimension. Every specification is one task
on the many-fits engine (:mod:`.engine`; results per task, resume, retry, Dask), with the panel
shipped once per worker and the Bayesian refits reusing one compilation per model structure.

Each specification gives ``estimate`` and ``ci95``: the point estimate and 95% confidence
interval of the frequentist estimators, the posterior mean and 95% HDI of the Bayesian ones.
Specifications that cannot be estimated (Callaway–Sant'Anna with never-treated controls on a
sample without never-treated units) are recorded with their reason and left out of the shares.

Writes ``DIR/multiverse/summary.json``::

    specs: [{estimator, controls, sample, priors, estimate, ci95, seconds, excludes_zero}]
    share_positive                  # share of specs whose interval lies above zero
    share_negative
    share_interval_excludes_zero
    share_estimate_positive
    influence: [{dimension, choice, n, mean_estimate, shift}]   # shift: mean − overall mean
    dimensions: {dimension: range of the mean estimate over its choices}
    failed: [{estimator, controls, sample, priors, error}]

with ``figures/spec_curve.png`` (the estimates with intervals sorted; beneath, the matrix of
choices) and ``influence.csv`` / ``influence.md`` (which choices move the estimate most).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .engine import RunResult, Task, digest, run_tasks, task_key
from .errors import ModelError
from .results import SIMULATED_NOTICE, SavesSummary, jsonable

log = logging.getLogger(__name__)

FREQUENTIST = ("twfe", "sun_abraham", "cs_never", "cs_notyet")
BAYESIAN = ("bayes_did", "bayes_staggered")
ESTIMATORS = FREQUENTIST + BAYESIAN
LABELS = {"twfe": "TWFE", "sun_abraham": "Sun–Abraham", "cs_never": "C–S (never-treated)",
          "cs_notyet": "C–S (not-yet-treated)", "bayes_did": "Bayesian did",
          "bayes_staggered": "Bayesian staggered"}
#: the kinds of control choices and of samples :func:`grid` knows
CONTROL_KINDS = ("none", "all", "leave_one_out")
SAMPLE_KINDS = ("all", "groups", "cohorts", "window")
DEFAULT_PRIORS = ("default", "weak", "skeptical")
#: periods kept before the first and after the last adoption in the balanced window
WINDOW = 3
DEFAULT_SAMPLER = {"draws": 300, "tune": 300, "chains": 2}
DIMENSIONS = ("estimator", "controls", "sample", "priors")


# ---- the grid ----------------------------------------------------------------------------------

def control_choices(panel, kinds=CONTROL_KINDS) -> list[str]:
    ctrl = panel.controls
    out = []
    if "none" in kinds:
        out.append("none")
    if "all" in kinds and ctrl:
        out.append("all")
    if "leave_one_out" in kinds and len(ctrl) >= 2:
        out += [f"-{c}" for c in ctrl]
    return out


def sample_choices(panel, kinds=SAMPLE_KINDS) -> list[str]:
    out = []
    if "all" in kinds:
        out.append("all")
    if "groups" in kinds:
        for g, col in panel.groups.items():
            out += [f"-{g}={lv}" for lv in sorted(panel.df[col].astype(str).unique())]
    if "cohorts" in kinds and len(panel.cohorts) >= 2:
        out += [f"-cohort={_label(c)}" for c in panel.cohorts]
    if "window" in kinds and panel.cohorts:
        out.append("window")
    return out


def _label(v) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else f"{v:g}"


def _csv(kinds, allowed, what):
    if kinds is None:
        return tuple(allowed)
    kinds = tuple(k.strip() for k in (kinds.split(",") if isinstance(kinds, str) else kinds) if k.strip())
    bad = [k for k in kinds if k not in allowed]
    if bad:
        raise ModelError(f"multiverse: unknown {what} {bad}; choose from {', '.join(allowed)}")
    return kinds


def grid(panel, estimators=None, controls=None, samples=None, priors=None) -> list[dict]:
    """The specifications: the product of the choices (``estimators`` from :data:`ESTIMATORS`,
    ``controls`` kinds from :data:`CONTROL_KINDS`, ``samples`` kinds from :data:`SAMPLE_KINDS`,
    ``priors`` prior-set names for the Bayesian estimators). Each a comma list or a sequence;
    None: all."""
    est = _csv(estimators, ESTIMATORS, "estimator(s)")
    ctrl = control_choices(panel, _csv(controls, CONTROL_KINDS, "control choice(s)"))
    samp = sample_choices(panel, _csv(samples, SAMPLE_KINDS, "sample choice(s)"))
    pri = tuple(priors.split(",")) if isinstance(priors, str) else tuple(priors or DEFAULT_PRIORS)
    if not (est and ctrl and samp):
        raise ModelError("multiverse: the grid is empty (no estimator, control or sample choice left; "
                         "a panel without controls has only controls = 'none')")
    specs = []
    for e in est:
        for c in ctrl:
            for s in samp:
                for p in (pri if e in BAYESIAN else (None,)):
                    specs.append({"estimator": e, "controls": c, "sample": s, "priors": p})
    return specs


# ---- one specification's panel --------------------------------------------------------------------

def spec_panel(panel, controls: str, sample: str):
    """The panel of one specification: its controls and its sample."""
    from .data.panel import Panel

    ctrl = list(panel.controls)
    if controls == "none":
        ctrl = []
    elif controls.startswith("-"):
        ctrl = [c for c in ctrl if c != controls[1:]]
    elif controls != "all":
        raise ModelError(f"multiverse: unknown control choice '{controls}'")
    df = panel.df
    if sample == "all":
        keep = np.ones(len(df), bool)
    elif sample == "window":
        first, last = min(panel.cohorts), max(panel.cohorts)
        times = panel.times
        i0 = max(0, int(np.searchsorted(times, first)) - WINDOW)
        i1 = min(len(times) - 1, int(np.searchsorted(times, last)) + WINDOW)
        period = df["time"].between(times[i0], times[i1])
        full = df[period].groupby("unit")["time"].nunique() == (i1 - i0 + 1)
        keep = period.to_numpy() & df["unit"].map(full).fillna(False).to_numpy(bool)
    elif sample.startswith("-cohort="):
        c = float(sample.split("=", 1)[1])
        keep = ~(df["cohort"] == c).to_numpy()
    elif sample.startswith("-") and "=" in sample:
        g, lv = sample[1:].split("=", 1)
        if g not in panel.groups:
            raise ModelError(f"multiverse: no group '{g}' in the column map")
        keep = (df[panel.groups[g]].astype(str) != lv).to_numpy()
    else:
        raise ModelError(f"multiverse: unknown sample choice '{sample}'")
    sub = panel.subset(keep) if not keep.all() else panel
    cmap = replace(panel.cmap, controls=tuple(ctrl))
    return Panel(sub.df, cmap, panel.report, panel.source, panel.sha256)


# ---- one specification (an engine task) ------------------------------------------------------------

def _frequentist(p, estimator: str) -> tuple[float, list[float]]:
    if estimator == "twfe":
        from .frequentist._fe import fe_part, feols, terms

        f = feols(p.df, "y", terms(p, ("D",), controls=True), fe_part(p))
        ci = f.confint().loc["D"]
        return float(f.coef()["D"]), [float(ci.iloc[0]), float(ci.iloc[1])]
    from .frequentist.event_study import callaway_santanna, sun_abraham

    cov = list(p.controls) or None
    if estimator == "sun_abraham":
        res, _ = sun_abraham(p, covariates=cov)
    else:
        group = "never_treated" if estimator == "cs_never" else "not_yet_treated"
        res, _ = callaway_santanna(p, covariates=cov, control_group=group)
    o = res["overall"]
    return float(o["estimate"]), [float(v) for v in o["ci95"]]


def spec_task(panel, *, estimator: str, controls: str, sample: str, priors, sampler: dict,
              seed: int, spec=None) -> dict:
    """One specification: its estimate and 95% interval (an engine task)."""
    t0 = time.perf_counter()
    p = spec_panel(panel, controls, sample)
    if p.n_obs == 0:
        raise ModelError(f"multiverse: sample '{sample}' leaves no observation")
    out = {"estimator": estimator, "controls": controls, "sample": sample, "priors": priors,
           "n_obs": p.n_obs, "n_units": p.n_units}
    if estimator in FREQUENTIST:
        est, ci = _frequentist(p, estimator)
        out["interval"] = "95% confidence interval"
    else:
        from .bayes.fit import make_model
        from .calibration import _diag, fit_once

        model, name = ("did", "tau") if estimator == "bayes_did" else ("staggered", "att")
        m = make_model(model, p, priors, spec)
        fit = fit_once(m, m.build(), sampler, seed, model)
        e = fit.params[name]
        est, ci = float(e["mean"]), [float(v) for v in e["hdi95"]]
        out["interval"] = "95% HDI"
        out["diagnostics"] = _diag(fit)
    if not (np.isfinite(est) and np.all(np.isfinite(ci))):
        raise ModelError(f"multiverse: {estimator} gave no finite estimate on this specification")
    out.update({"status": "ok", "estimate": est, "ci95": ci,
                "excludes_zero": bool(ci[0] > 0 or ci[1] < 0),
                "spec_seconds": time.perf_counter() - t0})
    return out


# ---- the summary -------------------------------------------------------------------------------------

def influence(specs: list[dict]) -> tuple[pd.DataFrame, dict]:
    """Which choices move the estimate most: per dimension and choice, the mean estimate of the
    specifications making that choice and its shift from the mean of all (sorted by |shift|),
    and per dimension the range of those means."""
    df = pd.DataFrame(specs)
    if df.empty:
        return pd.DataFrame(columns=["dimension", "choice", "n", "mean_estimate", "shift"]), {}
    overall = float(df["estimate"].mean())
    rows, ranges = [], {}
    for dim in DIMENSIONS:
        col = df[dim].fillna("—").astype(str)
        means = df.groupby(col)["estimate"].agg(["mean", "size"])
        if len(means) < 2:
            continue
        ranges[dim] = float(means["mean"].max() - means["mean"].min())
        for choice, r in means.iterrows():
            rows.append({"dimension": dim, "choice": choice, "n": int(r["size"]),
                         "mean_estimate": float(r["mean"]), "shift": float(r["mean"] - overall)})
    tbl = pd.DataFrame(rows)
    if not tbl.empty:
        tbl = tbl.reindex(tbl["shift"].abs().sort_values(ascending=False).index).reset_index(drop=True)
    return tbl, ranges


def curve_figure(specs: list[dict], simulated: bool):
    """The specification curve: estimates with 95% intervals sorted (filled where the interval
    excludes zero), and beneath them the matrix of choices (one row per choice, grouped by
    dimension)."""
    import matplotlib.pyplot as plt

    from .results import title_figure

    order = sorted(range(len(specs)), key=lambda i: specs[i]["estimate"])
    s = [specs[i] for i in order]
    x = np.arange(len(s))
    est = np.array([r["estimate"] for r in s])
    lo = np.array([r["ci95"][0] for r in s])
    hi = np.array([r["ci95"][1] for r in s])
    rows = []  # (dimension, choice)
    for dim in DIMENSIONS:
        for c in dict.fromkeys(str(r[dim]) for r in s if r[dim] is not None):
            rows.append((dim, c))
    h = 2.0 + 0.16 * len(rows)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(7, 0.06 * len(s) + 5), 3.2 + h), sharex=True,
                                   gridspec_kw={"height_ratios": [3.2, h]})
    excl = np.array([r["excludes_zero"] for r in s])
    ax1.vlines(x, lo, hi, color=np.where(excl, "C3", "0.6"), lw=1)
    ax1.scatter(x, est, s=10, color=np.where(excl, "C3", "0.2"), zorder=3)
    ax1.axhline(0, color="0.3", lw=0.8, ls="--")
    ax1.set(ylabel="treatment effect (95% interval)")
    ax1.set_title(f"{len(s)} specifications; red: interval excludes zero", fontsize=9)
    for j, (dim, c) in enumerate(rows):
        used = [k for k, r in enumerate(s) if str(r[dim]) == c]
        ax2.scatter(used, [j] * len(used), s=6, marker="s", color=f"C{DIMENSIONS.index(dim)}")
    ax2.set_yticks(range(len(rows)))
    ax2.set_yticklabels([f"{d}: {LABELS.get(c, c)}" for d, c in rows], fontsize=6)
    ax2.invert_yaxis()
    ax2.set(xlabel="specification (sorted by estimate)")
    title_figure(fig, "Specification curve: the treatment effect across the multiverse", simulated)
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    return fig


@dataclass
class MultiverseResult(SavesSummary):
    summary: dict
    run: RunResult
    table: pd.DataFrame
    figures: dict = field(default_factory=dict)

    def _save_more(self, out: Path) -> None:
        from .results import save_table

        save_table(self.table, out / "influence", simulated=bool(self.summary.get("notice")))


def _share(flags) -> float | None:
    flags = list(flags)
    return float(np.mean(flags)) if flags else None


def multiverse(panel, *, estimators=None, controls=None, samples=None, priors=None, spec=None,
               draws=None, tune=None, chains=None, seed: int = 0, workers: int | None = None,
               scheduler: str | None = None, out: str | Path = "reports", progress=None,
               on_cluster=None, figures: bool = True) -> MultiverseResult:
    """The multiverse of ``panel`` (module docstring) on the engine (``workers``/``scheduler`` as
    in :func:`.engine.run_tasks`). Writes ``out/multiverse/summary.json`` (and the figure and the
    influence table) and returns a :class:`MultiverseResult`."""
    specs = grid(panel, estimators, controls, samples, priors)
    sampler = {"draws": draws or DEFAULT_SAMPLER["draws"], "tune": tune or DEFAULT_SAMPLER["tune"],
               "chains": chains or DEFAULT_SAMPLER["chains"]}
    dest = Path(out) / "multiverse"
    fn = "bayes_nqp.spec_curve:spec_task"
    shared_digest = digest(panel.df)
    tasks = []
    for sp in specs:
        kw = {**sp, "sampler": sampler if sp["estimator"] in BAYESIAN else {},
              "seed": int(seed), "spec": None if spec is None else str(spec)}
        tasks.append(Task(task_key(fn, kw, shared_digest), fn, kw))
    run = run_tasks(tasks, dest, shared=panel, workers=workers, scheduler=scheduler,
                    progress=progress, on_cluster=on_cluster)
    ok, failed = [], []
    by_key = {r.get("key"): r for r in run.results}
    for t in tasks:
        r = by_key.get(t.key)
        base = {k: t.kwargs[k] for k in DIMENSIONS}
        if r is not None and r.get("status") == "ok":
            ok.append({**base, "estimate": r["estimate"], "ci95": r["ci95"], "seconds": r["seconds"],
                       "excludes_zero": r["excludes_zero"], "interval": r["interval"],
                       "n_obs": r["n_obs"], "n_units": r["n_units"],
                       **({"diagnostics": r["diagnostics"]} if "diagnostics" in r else {})})
        else:
            err = (r or {}).get("error", "not run")
            failed.append({**base, "error": err.splitlines()[0] if err else ""})
    tbl, ranges = influence(ok)
    summary = {
        "kind": "multiverse", "n_specs": len(specs), "n": len(ok), "specs": ok, "failed": failed,
        "share_positive": _share(s["ci95"][0] > 0 for s in ok),
        "share_negative": _share(s["ci95"][1] < 0 for s in ok),
        "share_interval_excludes_zero": _share(s["excludes_zero"] for s in ok),
        "share_estimate_positive": _share(s["estimate"] > 0 for s in ok),
        "estimate_range": [min(s["estimate"] for s in ok), max(s["estimate"] for s in ok)] if ok else None,
        "influence": tbl.to_dict("records"), "dimensions": ranges,
        "choices": {"estimators": list(dict.fromkeys(s["estimator"] for s in specs)),
                    "controls": list(dict.fromkeys(s["controls"] for s in specs)),
                    "samples": list(dict.fromkeys(s["sample"] for s in specs)),
                    "priors": [p for p in dict.fromkeys(s["priors"] for s in specs) if p is not None]},
        "window_periods": WINDOW, "sampler": sampler, "seed": seed, "data": panel.data_block(),
        "engine": {"engine": run.engine, "workers": run.workers, "done": run.done,
                   "reused": run.reused, "failed": run.failed, "seconds": run.seconds},
    }
    if panel.simulated:
        summary["notice"] = SIMULATED_NOTICE
    figs = {}
    if figures and ok:
        try:
            figs["spec_curve"] = curve_figure(ok, panel.simulated)
        except Exception as exc:  # a figure that fails is logged, not fatal
            log.warning("multiverse: the specification curve failed: %s", exc)
    res = MultiverseResult(jsonable(summary), run, tbl, figs)
    res.save(dest)
    return res
