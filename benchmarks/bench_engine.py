"""Benchmark: the many-fits engine on `calibrate placebo --model did --n 32` (demo panel, placebo
laws on its 27 never-treated cities, the calibration's default sampler: 2 chains × 400 draws).

    python benchmarks/bench_engine.py [--n 32]

Measured in one run, each configuration as the user runs it (the `bayes-nqp` command, wall time
including Python start-up, cluster start-up and each worker's one compilation):

* ``workers_1``: ``--workers 1`` (in-process, one task after another);
* ``local_cluster_2``: ``--workers 2`` (an embedded LocalCluster of 2 processes);
* ``scheduler_2_cold`` / ``scheduler_2_warm``: ``--scheduler ADDRESS`` on a ``dask scheduler``
  with 2 ``dask worker`` processes started here on localhost; the first run compiles on each
  worker, the second (other seeds) finds the compiled model in the workers' caches, as a
  long-lived cluster would;
* ``in_process_warm``: the library's ``workers=1`` path with the model already compiled;
* ``overhead``: 4×N no-op tasks carrying the same shared panel through the scheduler: the
  engine's per-task cost (scheduling, data shipping, writing the result file), as a share of the
  median warm task time of the real run.

Writes benchmarks/results/engine.json. The machine may be shared: the load average is recorded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "engine.json"


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def cli(args, out: Path) -> dict:
    exe = shutil.which("bayes-nqp") or str(Path(sys.executable).with_name("bayes-nqp"))
    t0 = time.perf_counter()
    p = subprocess.run([exe, "calibrate", "placebo", "--model", "did", "--out", str(out), *args],
                       env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"calibrate failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    s = json.loads((out / "calibration/placebo/did/summary.json").read_text())
    tasks = [json.loads(f.read_text()) for f in (out / "calibration/placebo/did/tasks").glob("*.json")]
    secs = np.array([t["seconds"] for t in tasks])
    warm = np.array([t["seconds"] for t in tasks if not t.get("compiled")])
    return {"wall_s": round(wall, 2), "engine_s": round(s["engine"]["seconds"], 2),
            "tasks": len(tasks), "compilations": int(sum(t.get("compiled", 0) for t in tasks)),
            "task_seconds_sum": round(float(secs.sum()), 2),
            "first_task_s_max": round(float(secs.max()), 2),
            "warm_task_s_median": round(float(np.median(warm)), 3) if len(warm) else None,
            "false_positive_rate": s["false_positive_rate"], "args": args}


def start_cluster(d: Path):
    exe = str(Path(sys.executable).with_name("dask"))
    sfile = d / "scheduler.json"
    kw = dict(env=_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([exe, "scheduler", "--scheduler-file", str(sfile), "--port", "0",
                               "--dashboard-address", ":0", "--no-show"], **kw)]
    while not (sfile.exists() and sfile.stat().st_size):
        time.sleep(0.2)
    procs += [subprocess.Popen([exe, "worker", "--scheduler-file", str(sfile), "--nworkers", "1",
                                "--nthreads", "1", "--no-dashboard", "--name", f"w{k}"], **kw)
              for k in range(2)]
    address = json.loads(sfile.read_text())["address"]
    from distributed import Client

    with Client(address) as c:
        c.wait_for_workers(2, timeout=120)
    return address, procs


def stop(procs):
    for p in procs[::-1]:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        p.wait(timeout=30)


def overhead(address, n_tasks: int, d: Path) -> dict:
    import bayes_nqp as bn
    from bayes_nqp.engine import Task, run_tasks, task_key

    panel = bn.demo_panel()
    tasks = [Task(task_key("bayes_nqp.engine:noop", {"i": i}), "bayes_nqp.engine:noop", {"i": i})
             for i in range(n_tasks)]
    run_tasks(tasks[:2], d / "warmup", shared=panel, scheduler=address)  # connect, import
    t0 = time.perf_counter()
    res = run_tasks(tasks, d / "noop", shared=panel, scheduler=address)
    wall = time.perf_counter() - t0
    return {"tasks": n_tasks, "wall_s": round(wall, 3), "per_task_s": round(wall / n_tasks, 4),
            "per_task_s_per_worker": round(2 * wall / n_tasks, 4), "done": res.done}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--out", default=str(OUT), help="result file (default: %(default)s)")
    args = ap.parse_args()
    n = str(args.n)
    load0 = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    res = {}
    res["workers_1"] = cli(["--n", n, "--workers", "1"], tmp / "w1")
    res["local_cluster_2"] = cli(["--n", n, "--workers", "2"], tmp / "lc2")
    address, procs = start_cluster(tmp)
    try:
        res["scheduler_2_cold"] = cli(["--n", n, "--scheduler", address], tmp / "s_cold")
        res["scheduler_2_warm"] = cli(["--n", n, "--scheduler", address, "--seed", "1"], tmp / "s_warm")
        res["overhead"] = overhead(address, 4 * args.n, tmp)
    finally:
        stop(procs)
    # the in-process path with the model compiled (a second run in one process)
    import bayes_nqp as bn

    panel = bn.demo_panel()
    bn.calibrate_placebo("did", panel, n=2, seed=99, workers=1, out=tmp / "ip_cold")
    t0 = time.perf_counter()
    bn.calibrate_placebo("did", panel, n=args.n, seed=1, workers=1, out=tmp / "ip_warm")
    res["in_process_warm"] = {"wall_s": round(time.perf_counter() - t0, 2)}
    w1, lc = res["workers_1"]["wall_s"], res["local_cluster_2"]["wall_s"]
    warm_task = res["scheduler_2_warm"]["warm_task_s_median"]
    speedups = {
        "local_cluster_2_over_workers_1": round(w1 / lc, 3),
        "scheduler_2_cold_over_workers_1": round(w1 / res["scheduler_2_cold"]["wall_s"], 3),
        "scheduler_2_warm_over_in_process_warm": round(res["in_process_warm"]["wall_s"]
                                                       / res["scheduler_2_warm"]["engine_s"], 3),
        "target": 1.7,
    }
    over = res["overhead"]
    share = over["per_task_s_per_worker"] / warm_task if warm_task else None
    machine = " ".join((f"{platform.machine()} {os.cpu_count()} CPUs, {platform.system()} "
                        f"{platform.release()}, Python {platform.python_version()}").split())
    out = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine,
           "load_average_start": [round(x, 2) for x in load0],
           "load_average_end": [round(x, 2) for x in os.getloadavg()],
           "command": f"bayes-nqp calibrate placebo --model did --n {n} [--workers 1 | --workers 2 | --scheduler ADDR]",
           "results": res, "speedups": speedups,
           "overhead_share_of_task_time": round(share, 4) if share is not None else None}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
