"""Benchmark: the nutpie compilation of a model in a fresh process, with nutpie's own C wrappers
(compiled anew in every process) vs bayes/cwrap.py's (cached on disk by numba).

    python benchmarks/bench_compile.py [--model did] [--runs 4] [--cold-runs 2]

Each measurement is one new Python process that builds the model on the demo panel, imports
nutpie, and times ``packing.compile_pymc`` alone (``nutpie_wrappers=True`` for nutpie's). Warm:
the runs alternate in one compile directory that both have filled already (PyTensor's graphs,
and cwrap's wrappers, on disk). Cold: each run in its own empty compile directory. The same
process also checks that both give the same draws for a seed (2 chains x 200 draws).

Writes benchmarks/results/compile.json. The machine may be shared: the load average is recorded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "compile.json"

CHILD = """
import json, sys, time
import numpy as np
import nutpie
from bayes_nqp.bayes import packing
from bayes_nqp.bayes.fit import make_model
from bayes_nqp.data.panel import demo_panel
pm_model = make_model({model!r}, demo_panel()).build()
t0 = time.perf_counter()
c = packing.compile_pymc(pm_model, nutpie_wrappers={nutpie!r})
secs = time.perf_counter() - t0
idata = nutpie.sample(c, draws=200, tune=200, chains=2, seed=1, progress_bar=False)
post = idata.posterior
np.savez({draws!r}, **{{v: post[v].values for v in post.data_vars}})
print("RESULT", json.dumps({{"seconds": round(secs, 3),
                            "cache_hits": getattr(c.compiled_logp_func, "cache_hits", 0)}}))
"""


def child(model: str, nutpie: bool, compiledir: Path, draws: Path) -> dict:
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "PYTENSOR_FLAGS": f"base_compiledir={compiledir},compiledir={compiledir / 'c'}"}
    code = CHILD.format(model=model, nutpie=nutpie, draws=str(draws))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"child failed ({p.returncode}):\n{p.stderr[-4000:]}")
    line = next(ln for ln in p.stdout.splitlines() if ln.startswith("RESULT "))
    return {**json.loads(line[len("RESULT "):]), "load_average": round(os.getloadavg()[0], 2)}


def same_draws(a: Path, b: Path) -> bool:
    import numpy as np

    x, y = np.load(a), np.load(b)
    return set(x.files) == set(y.files) and all(np.array_equal(x[k], y[k]) for k in x.files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="did")
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--cold-runs", type=int, default=2)
    args = ap.parse_args()
    load0 = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench-compile-"))
    res = {"nutpie_cold": [], "cached_cold": [], "nutpie_warm": [], "cached_warm": []}
    for i in range(args.cold_runs):
        res["nutpie_cold"].append(child(args.model, True, tmp / f"cold_n{i}", tmp / "n.npz"))
        res["cached_cold"].append(child(args.model, False, tmp / f"cold_c{i}", tmp / "c_cold.npz"))
    warm = tmp / "warm"
    child(args.model, False, warm, tmp / "warmup.npz")  # fills the directory
    for _ in range(args.runs):
        res["nutpie_warm"].append(child(args.model, True, warm, tmp / "n.npz"))
        res["cached_warm"].append(child(args.model, False, warm, tmp / "c_warm.npz"))
    identical = {"cached_cold_vs_nutpie": same_draws(tmp / "c_cold.npz", tmp / "n.npz"),
                 "cached_warm_vs_nutpie": same_draws(tmp / "c_warm.npz", tmp / "n.npz")}
    machine = " ".join((f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()} "
                        f"{platform.release()}, Python {platform.python_version()}").split())
    summary = {k: [r["seconds"] for r in v] for k, v in res.items()}
    out = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine,
           "model": args.model,
           "load_average_start": [round(x, 2) for x in load0],
           "load_average_end": [round(x, 2) for x in os.getloadavg()],
           "command": f"python benchmarks/bench_compile.py --model {args.model} --runs {args.runs} "
                      f"--cold-runs {args.cold_runs}",
           "seconds": summary, "runs": res, "same_draws": identical}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
