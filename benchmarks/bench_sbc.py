"""Benchmark: simulation-based calibration (SBC) of every Bayesian model on the demo's design
reduced to about 60 cities.

    python benchmarks/bench_sbc.py [--models did,heterogeneity,...] [--n 100] [--units 60]
        [--draws 500 --tune 500 --chains 2 --thin 100] [--workers 1|2|auto]

The panel: the demo's cities sampled within each adoption cohort (never-treated included) in the
demo's shares, ``--units`` in all (60 → 61 cities × 12 years), every column kept; written to
``OUT/panel/sbc_panel.csv`` with the demo's column map, so that
``bayes-nqp calibrate sbc --model MODEL --data OUT/panel/sbc_panel.csv --map data/demo_map.toml``
reproduces a row. SBC simulates on that panel's design (units, periods, treatment timing,
controls, mediators' and threshold variable as observed) from each model's own ``simulate``.

For each model: ``bn.calibrate_sbc`` with N replicates (its figures and summary under
``OUT/calibration/sbc/<model>/``), then a row of ``benchmarks/results/sbc.json``: n, the
per-estimand uniformity p-values, passed, wall time, the settings, date, load average before and
after, the command. Rows of models not run this time are kept. ``--workers auto`` first times a
small SBC of did (``--measure-n`` replicates) on 1 and on 2 workers and uses the faster.

The staggered row is labelled ``model_version`` (``--staggered-note``): the model as of this
branch's base, before that day's rewrite of ``bayes/staggered.py`` on another branch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "sbc.json"
MODELS = ("did", "heterogeneity", "event_study", "mediation", "threshold", "staggered")


def reduced_demo(out: Path, units: int = 60, seed: int = 0) -> Path:
    """The demo panel's rows of ``units`` cities drawn within each adoption cohort (the demo's
    cohort shares, at least one city each), written as CSV; returns the path."""
    import tomllib

    cmap = tomllib.loads((ROOT / "data" / "demo_map.toml").read_text(encoding="utf-8"))
    raw = pd.read_csv(ROOT / "data" / "demo_panel.csv")
    cohort = raw.groupby(cmap["unit"])[cmap["cohort"]].first().fillna(0)
    rng = np.random.default_rng(seed)
    keep = []
    for _, cities in cohort.groupby(cohort):
        k = max(1, int(round(units * len(cities) / cohort.size)))
        keep += list(rng.choice(cities.index.to_numpy(), k, replace=False))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sbc_panel.csv"
    raw[raw[cmap["unit"]].isin(keep)].to_csv(path, index=False)
    return path


def _rel(p: Path) -> str:
    p = Path(p).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_model(bn, model: str, panel, args, workers: int, out: Path) -> dict:
    load0 = _load()
    t0 = time.perf_counter()
    res = bn.calibrate_sbc(model, panel, n=args.n, seed=args.seed, thin_to=args.thin, draws=args.draws,
                           tune=args.tune, chains=args.chains, workers=workers, out=out)
    wall = time.perf_counter() - t0
    s = res.summary
    row = {
        "n": s["n"], "n_requested": s["n_requested"], "failed": s["failed"], "passed": s["passed"],
        "pvalues": {k: e["pvalue_uniform"] for k, e in s["estimands"].items()},
        "bonferroni_cut": s["test"]["bonferroni_cut"], "alpha": s["test"]["alpha"],
        "wall_s": round(wall, 1), "engine": s["engine"],
        "gates_passed_share": None,
        "settings": {"draws": args.draws, "tune": args.tune, "chains": args.chains, "thin_to": args.thin,
                     "seed": args.seed, "priors": "default", "workers": workers},
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_before": load0, "load_average_after": _load(),
        "summary": _rel(out / "calibration" / "sbc" / model / "summary.json"),
    }
    tasks = [json.loads(f.read_text()) for f in (out / "calibration" / "sbc" / model / "tasks").glob("*.json")]
    gates = [t["diagnostics"]["passed"] for t in tasks if t.get("status") == "ok" and "diagnostics" in t]
    if gates:
        row["gates_passed_share"] = round(float(np.mean(gates)), 3)
    if model == "staggered" and args.staggered_note:
        row["model_version"] = args.staggered_note
    return row


def measure_workers(bn, panel, args, out: Path) -> dict:
    """Wall time of a small did SBC on 1 and on 2 workers (fresh folders, same seeds)."""
    times = {}
    for w in (1, 2):
        dest = out / f"workers_{w}"
        shutil.rmtree(dest, ignore_errors=True)
        t0 = time.perf_counter()
        bn.calibrate_sbc("did", panel, n=args.measure_n, seed=99, thin_to=args.thin, draws=args.draws,
                         tune=args.tune, chains=args.chains, workers=w, out=dest, figures=False)
        times[w] = round(time.perf_counter() - t0, 1)
    return {"n": args.measure_n, "wall_s": {str(k): v for k, v in times.items()},
            "load_average": _load(), "chosen": min(times, key=times.get)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--units", type=int, default=60)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--thin", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", default="auto", help="1, 2 or auto (measure did on both first)")
    ap.add_argument("--measure-n", type=int, default=30)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sbc"))
    ap.add_argument("--results", default=str(RESULTS), help="the JSON file of the rows")
    ap.add_argument("--staggered-note", default="the staggered model before 2026-12-03's rewrite "
                    "(branch stag): bayes/staggered.py as on main at 82a12b9")
    args = ap.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    import bayes_nqp as bn

    out = Path(args.out)
    path = reduced_demo(out / "panel", args.units)
    panel = bn.load_panel(path, ROOT / "data" / "demo_map.toml")
    results = Path(args.results)
    doc = json.loads(results.read_text()) if results.exists() else {}
    doc.update({"what": "SBC of every Bayesian model (bn.calibrate_sbc) on the demo's design reduced "
                        f"to {panel.n_units} cities × {len(panel.times)} periods",
                "panel": {"path": _rel(path), "units": panel.n_units,
                          "periods": len(panel.times), "rows": panel.n_obs},
                "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
                           f"Python {platform.python_version()}"})
    command = "nice -n 10 python benchmarks/bench_sbc.py " + " ".join(sys.argv[1:])
    doc.setdefault("models", {})
    if args.workers == "auto":
        doc["workers_measured"] = {**measure_workers(bn, panel, args, out / "measure"), "command": command}
        workers = doc["workers_measured"]["chosen"]
    else:
        workers = int(args.workers)
    results.write_text(json.dumps(doc, indent=1))
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        row = run_model(bn, model, panel, args, workers, out)
        row["command"] = command
        doc["models"][model] = row
        results.write_text(json.dumps(doc, indent=1))  # after every model: a long run is readable
        print(f"{model}: n={row['n']} passed={row['passed']} wall={row['wall_s']} s "
              f"min p={min(row['pvalues'].values(), default=None)}", flush=True)


if __name__ == "__main__":
    main()
