"""Benchmark: the single-threshold Hansen (1999) fit with 300 bootstrap replications of its F test,
on Hansen's data (tests/data/hansen1999.csv: 7,910 obs, 565 firms, exhaustive grid).

    python benchmarks/bench_hansen.py [--n-boot 300] [--repeat 3]

Prints the seconds and writes benchmarks/results/hansen.json {date, machine, n_boot, seconds}
(seconds: the best of ``repeat`` runs, so that a busy machine's noise stays out).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from pathlib import Path

import pandas as pd

from bayes_nqp.frequentist.hansen import threshold_regression
from bayes_nqp.results import write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "hansen1999.csv"
OUT = ROOT / "benchmarks" / "results" / "hansen.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-boot", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    d = pd.read_csv(DATA)
    inputs = (d["i"], d[["q1", "q2", "q3", "d1", "qd1"]], d["c1"], d["d1"], d["id"], d["year"])
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        fit = threshold_regression(*inputs, n_thresholds=1, n_boot=args.n_boot, seed=0)
        times.append(time.perf_counter() - t0)
    seconds = min(times)
    machine = f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, " \
              f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    write_json(OUT, {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "machine": " ".join(machine.split()), "n_boot": args.n_boot,
                     "seconds": round(seconds, 3)})
    print(f"hansen: single threshold + {args.n_boot} bootstrap replications: {seconds:.2f} s "
          f"(γ̂ = {fit.thresholds[0]:g}, F = {fit.f_stats[0]:.2f}, p = {fit.pvalues[0]:.3f}); "
          f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
