"""Benchmark: the event_study model on the demo panel (287 cities × 12 years, SIMULATED):
wall time (building, compiling, sampling and post-processing; no replication/LOO/PPC) and bulk
ESS of every sampled scalar, 4 chains × 1000 draws by default.

    python benchmarks/bench_event_study.py [--draws 1000] [--chains 4] [--label after]
                                           [--options '{"effect": "common"}']

Appends {label: result} to benchmarks/results/event_study.json. The machine is shared (2 cores,
other work running): timings are indicative only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "event_study.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--label", default="current")
    ap.add_argument("--options", default="{}")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    import arviz_stats as azs

    import bayes_nqp as bn
    from bayes_nqp.bayes.spec import load_spec

    panel = bn.demo_panel()
    spec = load_spec("event_study")
    spec = replace(spec, options={**spec.options, **json.loads(a.options)})
    t0 = time.perf_counter()
    fit = bn.fit("event_study", panel, spec=spec, draws=a.draws, tune=a.draws, chains=a.chains, seed=1,
                 replication=False, loo=False, ppc=False, psense=False)
    seconds = time.perf_counter() - t0
    post = fit.idata["posterior"].to_dataset()
    sampled = [v for v in fit.idata["posterior"].data_vars
               if v not in ("alpha", "tau_unit_z") and {"chain", "draw"} <= set(post[v].dims)]
    ess = azs.ess(post[sampled].astype(float), method="bulk")
    flat = {f"{v}[{i}]": float(x) for v in sampled for i, x in enumerate(np.atleast_1d(ess[v].to_numpy()).ravel())}
    worst = min(flat, key=flat.get)
    att = fit.params["att_post"]
    res = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": "shared 2-core development machine (other work running)",
           "draws": a.draws, "chains": a.chains, "options": spec.options, "seconds": seconds,
           "ess_bulk_min": flat[worst], "ess_bulk_min_param": worst, "n_scalars": len(flat),
           "att_post_mean": att["mean"], "att_post_sd": att["sd"], "passed": fit.passed}
    path = Path(a.out)
    out = json.loads(path.read_text()) if path.exists() else {}
    out[a.label] = res
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
