"""Benchmark: prior sensitivity of the did model on the demo panel, three prior sets (default,
weak, skeptical), reusing one compilation versus compiling for every set.

    python benchmarks/bench_sensitivity.py [--quick]

Both paths do the same work after sampling (estimands and convergence diagnostics; no LOO, PPC or
power-scaling) with the same sampler settings (the spec's [sampler], or [quick]), so the
difference is the compilations saved. Writes benchmarks/results/sensitivity.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from pathlib import Path

import bayes_nqp as bn
from bayes_nqp.bayes.fit import compile_model, finish, make_model, sample
from bayes_nqp.bayes.sensitivity import sensitivity
from bayes_nqp.results import write_json

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "sensitivity.json"
SETS = ("default", "weak", "skeptical")


def recompile_each(panel, quick: bool) -> tuple[float, dict]:
    t0 = time.perf_counter()
    means = {}
    for name in SETS:
        m = make_model("did", panel, priors=name)
        settings = m.spec.quick if quick else m.spec.sampler
        pm_model, compiled = compile_model(m)
        idata = sample(compiled, settings)
        f = finish(m, pm_model, idata, settings, seconds0=time.perf_counter(), loo=False, ppc=False,
                   psense=False, figures=False)
        means[name] = f.params["tau"]["mean"]
    return time.perf_counter() - t0, means


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the spec's [quick] sampler settings")
    args = ap.parse_args()
    panel = bn.demo_panel()
    # warm-up: the first compilation in a process pays numba's start-up; neither path should
    compile_model(make_model("did", panel))
    t0 = time.perf_counter()
    res = sensitivity("did", panel, prior_sets=SETS, quick=args.quick)
    reuse = time.perf_counter() - t0
    recompile, means = recompile_each(panel, args.quick)
    reuse_means = {k: f.params["tau"]["mean"] for k, f in res.fits.items()}
    settings = res.fits["default"].sampler.__dict__
    machine = " ".join((f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, "
                        f"{platform.system()} {platform.release()}, Python {platform.python_version()}").split())
    write_json(OUT, {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine, "load_average": [round(x, 2) for x in os.getloadavg()],
        "model": "did", "panel": "demo (287 cities × 12 years)", "prior_sets": list(SETS),
        "sampler": settings,
        "reuse": {"seconds": round(reuse, 2), "compilations": res.compilations},
        "recompile_each": {"seconds": round(recompile, 2), "compilations": len(SETS)},
        "speedup": round(recompile / reuse, 2),
        "tau_mean": {"reuse": reuse_means, "recompile_each": means},
    })
    print(f"did, 3 prior sets: reuse {reuse:.1f} s ({res.compilations} compilation), "
          f"recompile each {recompile:.1f} s (3 compilations): {recompile / reuse:.1f}× ; "
          f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
