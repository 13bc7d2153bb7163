"""Benchmark: `bayes-nqp run --quick` and `bayes-nqp run` (full) on the bundled demo panel.

    python benchmarks/bench_run.py [--only quick|full] [--cold] [--out DIR] [--units N --periods T]

Runs the CLI as a user would (a fresh process: imports and compilation included), reads the
per-stage seconds from DIR/manifest.json, and writes benchmarks/results/run.json
{date, machine, quick: {seconds, exit_code, printed_pages, stages}, full: {...}} (printed_pages:
the report printed to A4 by headless Chromium, when it is installed); with --only, the other mode's
earlier entry is kept. ``--cold`` runs with an empty PyTensor compile directory (what a fresh machine
sees on its first run; results under ``quick_cold``/``full_cold``). Targets: quick under 2 minutes, full under 15 minutes on 2 cores.
``--units N --periods T`` runs on a panel written by ``bayes-nqp simulate --units N --periods T``
instead of the demo (results under ``<mode>_<N>x<T>``, with the ratio to the demo's time of the
same mode in the same file; issue 10's goal: a 2,870-unit run within 3x the demo's).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bayes_nqp.results import write_json

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "run.json"
TARGET = {"quick": 120, "full": 900}


def machine() -> str:
    m = f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, " \
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return " ".join(m.split())


def run_once(mode: str, out: Path, cold: bool = False, data: Path | None = None) -> dict:
    exe = Path(sys.executable).with_name("bayes-nqp")
    cmd = [str(exe), "run", "--out", str(out)] + (["--quick"] if mode == "quick" else [])
    if data is not None:
        cmd += ["--data", str(data / "demo_panel.csv"), "--map", str(data / "demo_map.toml")]
    t0 = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="bench_run_cold_cache_") as cache:
        if cold:  # an empty compile cache of its own (numba's cache of PyTensor graphs lies inside)
            env["PYTENSOR_FLAGS"] = ",".join(
                [f for f in env.get("PYTENSOR_FLAGS", "").split(",") if f and "compiledir" not in f]
                + [f"base_compiledir={cache}"])
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - t0  # before the cold cache is removed
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds do not depend on how busy the machine is; wall seconds do
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    stages = {k: {"status": v["status"], "seconds": round(v["seconds"] or 0.0, 2),
                  **({"passed": v["passed"]} if "passed" in v else {})}
              for k, v in manifest["stages"].items()}
    return {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "printed_pages": printed_pages(out),
            "load_average_after": [round(x, 2) for x in os.getloadavg()], "target_seconds": TARGET[mode],
            "within_target": seconds <= TARGET[mode], "exit_code": proc.returncode,
            "command": " ".join(["bayes-nqp"] + cmd[1:]), "compile_cache": "empty" if cold else "warm",
            "stages": stages}


def printed_pages(out: Path) -> int | None:
    """Pages of DIR/report.html printed to PDF (A4) by headless Chromium, None without it."""
    import re
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None or not (out / "report.html").exists():
        return None
    pdf = out / ".report-print.pdf"
    subprocess.run([exe, "--headless", "--disable-gpu", "--no-sandbox", f"--print-to-pdf={pdf}",
                    "--no-pdf-header-footer", (out / "report.html").as_uri()],
                   capture_output=True, timeout=300)
    if not pdf.exists():
        return None
    n = len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))
    pdf.unlink()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("quick", "full"))
    ap.add_argument("--cold", action="store_true", help="start from an empty compile cache")
    ap.add_argument("--out", type=Path, help="results folder (default: a temporary one per mode)")
    ap.add_argument("--units", type=int, help="run on a simulated panel of this many units instead of the demo")
    ap.add_argument("--periods", type=int, default=12)
    args = ap.parse_args()
    modes = [args.only] if args.only else ["quick", "full"]
    result = json.loads(OUT.read_text(encoding="utf-8")) if OUT.exists() else {}
    data = None
    if args.units:
        data = Path(tempfile.mkdtemp(prefix=f"bench_run_panel_{args.units}x{args.periods}_"))
        exe = Path(sys.executable).with_name("bayes-nqp")
        subprocess.run([str(exe), "simulate", "--units", str(args.units), "--periods", str(args.periods),
                        "--out", str(data)], check=True, capture_output=True)
    for mode in modes:
        out = (args.out / mode) if args.out else Path(tempfile.mkdtemp(prefix=f"bench_run_{mode}_"))
        r = run_once(mode, out, cold=args.cold, data=data)
        key = f"{mode}_cold" if args.cold else mode
        if data is not None:
            key = f"{mode}_{args.units}x{args.periods}"
            r["panel"] = f"bayes-nqp simulate --units {args.units} --periods {args.periods}"
            if mode in result:
                r["ratio_to_demo"] = round(r["seconds"] / result[mode]["seconds"], 2)
        result[key] = r
        result.update(date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                      machine=machine(), load_average=[round(x, 2) for x in os.getloadavg()])
        write_json(OUT, result)
        slow = sorted(r["stages"].items(), key=lambda kv: -kv[1]["seconds"])[:4]
        print(f"{key}: {r['seconds']:.0f} s (target {TARGET[mode]} s), exit {r['exit_code']}, "
              f"{r['printed_pages']} printed pages; "
              f"slowest: {', '.join(f'{k} {v['seconds']:.0f}s' for k, v in slow)}; results in {out}")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
