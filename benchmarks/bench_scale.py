"""Benchmark (not a timed test): how the Bayesian did's cost grows with the panel, against pyfixest
on the same panel (issue 10).

    python benchmarks/bench_scale.py [--sizes 287x12,2870x12,28700x12,100000x10]
                                     [--draws 1000] [--tune 1000] [--chains 4]
                                     [--models did,heterogeneity,event_study] [--out FILE]

For each size: ``bayes-nqp simulate --units N --periods T`` writes a SIMULATED panel (a synthetic
frame beyond 287 units) with a **homogeneous-in-time** effect (no ramp, no threshold jump, no
region/size multipliers) but **unit-varying effects** (``effect_sd`` = 0.3) and AR(1) unit errors
(ρ = 0.5), so that the did model's estimand (the mean of the unit effects) has one exact truth:
the mean over treated units of their effect (the ``att`` of demo_truth.json up to the weighting of
the unit factors, reported as ``truth``). Then, each in its own subprocess (peak RSS of that
process alone, ``resource.getrusage``), reading the panel's CSV like a user:

* pyfixest ``feols("nqp ~ treated + controls | city + year", vcov={"CRV1": "city"})``: wall time
  (read + fit, first call);
* ``bayes_nqp.fit("did", ...)`` with the default spec: wall time including building, compiling,
  sampling and post-processing (α_i, τ_i), LOO and PPC (power-scaling off), min bulk ESS over the
  free parameters, τ's 95% interval and whether it covers the truth, peak RSS.

Writes benchmarks/results/scale.json with the ratio did / pyfixest per size and the growth
exponent of each wall time in rows (least-squares slope of log time on log rows).
Goals (issue 10): did at 1M rows within 30× pyfixest's time, bulk ESS ≥ 400, τ covered, ≤ 4 GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "scale.json"
WORK = Path(os.environ.get("BENCH_SCALE_DIR", "/tmp/bench_scale"))
SIM = dict(ramp_start=1.0, jump=0.0, region_mult={"east": 1.0, "central": 1.0, "west": 1.0},
           size_mult={"large": 1.0, "medium": 1.0, "small": 1.0}, effect_sd=0.3, rho_y=0.5)


def simulate(units: int, periods: int, seed: int) -> Path:
    from dataclasses import replace

    from bayes_nqp.data.simulate import DemoParams, write_demo

    folder = WORK / f"{units}x{periods}"
    if not (folder / "demo_panel.csv").exists():
        write_demo(folder, seed, units, periods, replace(DemoParams(), **SIM))
    return folder


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_s() -> float:
    """User + system CPU seconds of this process (and its threads): less load-dependent than
    wall time on a shared machine."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_pyfixest(folder: Path) -> dict:
    import pandas as pd
    import pyfixest as pf

    t0 = time.perf_counter()
    df = pd.read_csv(folder / "demo_panel.csv")
    ctrl = " + ".join(("gdp_pc", "fin", "fdi", "gov", "infra"))
    fit = pf.feols(f"nqp ~ treated + {ctrl} | city + year", data=df, vcov={"CRV1": "city"})
    coef, se = float(fit.coef()["treated"]), float(fit.se()["treated"])
    return {"seconds": time.perf_counter() - t0, "coef": coef, "se": se, "peak_rss_mb": _rss_mb(),
            "cpu_seconds": _cpu_s()}


def child_did(folder: Path, draws: int, tune: int, chains: int, seed: int, model: str = "did") -> dict:
    """One Bayesian fit (did, or heterogeneity / event_study / staggered for their growth
    exponents) with its default spec; the coverage of the truth's att by did's τ and staggered's
    att (the other models' estimands have no one truth here)."""
    import numpy as np

    import bayes_nqp as bn
    from bayes_nqp.data.panel import load_panel

    import importlib

    F = importlib.import_module("bayes_nqp.bayes.fit")  # the module (bayes.fit is also a function)

    stages: dict[str, float] = {}

    cpu: dict[str, float] = {}

    def timed(name, fn):  # wall and CPU seconds (CPU: less dependent on a shared machine's load)
        def run(*a, **kw):
            t, c = time.perf_counter(), _cpu_s()
            try:
                return fn(*a, **kw)
            finally:
                stages[name] = stages.get(name, 0.0) + time.perf_counter() - t
                cpu[name] = cpu.get(name, 0.0) + _cpu_s() - c
        return run

    t0 = time.perf_counter()
    panel = load_panel(folder / "demo_panel.csv", folder / "demo_map.toml")
    t_read = time.perf_counter() - t0
    # bn.fit's steps (fit.fit), each timed: build + statistics + compile, sampling, and the
    # post-processing stages within finish
    m = timed("make_model", F.make_model)(model, panel, "default")
    settings = m.spec.sampler.override(draws=draws, tune=tune, chains=chains, seed=seed)
    for name in ("postprocess", "log_likelihood", "posterior_predictive"):
        setattr(m, name, timed(name, getattr(m, name)))
    F.loo_summary = timed("psis_loo", F.loo_summary)
    pm_model = timed("build", m.build)()
    m.build = lambda: pm_model
    pm_model, compiled = timed("compile", F.compile_model)(m)
    idata = timed("sample", F.sample)(compiled, settings)
    f = timed("finish", F.finish)(m, pm_model, idata, settings, replication=None, seconds0=t0, psense=False)
    seconds = time.perf_counter() - t0
    out = {"seconds": seconds, "read_seconds": t_read, "rows": len(panel.df),
           "stages": {k: round(v, 2) for k, v in stages.items()},
           "stages_cpu": {k: round(v, 2) for k, v in cpu.items()},
           "ess_bulk_min": f.diag.get("ess_bulk_min"), "ess_bulk_worst": f.diag.get("ess_bulk_worst"),
           "rhat_max": f.diag.get("rhat_max"), "passed": f.passed,
           "loo": (f.diag.get("loo") or {}).get("elpd") if isinstance(f.diag.get("loo"), dict) else None,
           "ppc": "error" not in (f.diag.get("ppc") or {}),
           "peak_rss_mb": _rss_mb(), "cpu_seconds": _cpu_s()}
    headline = {"did": "tau", "staggered": "att"}.get(model)  # estimands whose truth is the att
    if headline is not None:
        truth = json.loads((folder / "demo_truth.json").read_text())
        tau = np.asarray(f.draws[headline]).ravel()
        lo, hi = (float(x) for x in np.quantile(tau, [0.025, 0.975]))
        out |= {"tau_mean": float(tau.mean()), "tau_sd": float(tau.std()), "tau_ci95": [lo, hi],
                "truth_att": truth["att"], "covers_truth": bool(lo <= truth["att"] <= hi)}
    return out


def run_child(kind: str, folder: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--folder", str(folder), "--draws", str(args.draws),
           "--tune", str(args.tune), "--chains", str(args.chains), "--seed", str(args.seed)]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    if res.returncode:
        return {"error": res.stderr[-2000:], "returncode": res.returncode}
    return json.loads(res.stdout.strip().splitlines()[-1])


def slope(rows, secs) -> float | None:
    import numpy as np

    pts = [(r, s) for r, s in zip(rows, secs) if s]
    if len(pts) < 2:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="287x12,2870x12,28700x12,100000x10")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--models", default="did",
                    help="Bayesian models fitted at each size (did first: its ratio to pyfixest)")
    ap.add_argument("--child")
    ap.add_argument("--folder")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    if args.child:
        folder = Path(args.folder)
        out = (child_pyfixest(folder) if args.child == "pyfixest"
               else child_did(folder, args.draws, args.tune, args.chains, args.seed, args.child))
        print(json.dumps(out))
        return
    rows_all, results = [], []
    models = args.models.split(",")

    def write() -> None:  # after every size: a long run that is stopped keeps what it measured
        doc = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
               "load_average": [round(x, 2) for x in os.getloadavg()],
               "python": platform.python_version(),
               "settings": {"draws": args.draws, "tune": args.tune, "chains": args.chains, "seed": args.seed,
                            "simulation": SIM},
               "results": results,
               # of wall time, and of the process's CPU seconds (less dependent on a shared machine's load)
               "growth_exponent": {
                   f"{m}{suffix}": slope([r["rows"] for r in results if m in r],
                                         [r[m].get(key) for r in results if m in r])
                   for m in ["pyfixest", *models] for suffix, key in (("", "seconds"), ("_cpu", "cpu_seconds"))},
               "goals": {"ratio_at_1M_rows_max": 30, "ess_bulk_min": 400, "peak_rss_mb_max": 4096}}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")

    for size in args.sizes.split(","):
        units, periods = (int(x) for x in size.split("x"))
        t0 = time.perf_counter()
        folder = simulate(units, periods, 20250601)
        sim_s = time.perf_counter() - t0
        pfx = run_child("pyfixest", folder, args)
        fits = {m: run_child(m, folder, args) for m in models}
        did = fits.get("did", {})
        rows = units * periods
        entry = {"units": units, "periods": periods, "rows": rows, "simulate_seconds": sim_s,
                 "pyfixest": pfx, **fits,
                 "ratio_did_pyfixest": (did["seconds"] / pfx["seconds"]
                                        if "seconds" in did and "seconds" in pfx else None)}
        results.append(entry)
        rows_all.append(rows)
        print(json.dumps({k: entry[k] for k in ("units", "periods", "ratio_did_pyfixest")}
                         | {"did_s": did.get("seconds"), "pyfixest_s": pfx.get("seconds"),
                            "ess": did.get("ess_bulk_min"), "rss_mb": did.get("peak_rss_mb"),
                            "covers": did.get("covers_truth")}), flush=True)
        write()


if __name__ == "__main__":
    main()
