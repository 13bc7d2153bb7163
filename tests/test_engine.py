"""The many-fits engine: one compilation per structure, resume, retry, and a real Dask
scheduler with two worker processes on localhost (one of them killed mid-run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import bayes_nqp as bn
from bayes_nqp import engine
from bayes_nqp.calibration import calibrate_placebo, placebo_draws, placebo_panel

SAMPLER = {"draws": 150, "tune": 200, "chains": 2}


@pytest.fixture(scope="module")
def demo():
    return bn.demo_panel()


def _placebo(demo, seed):
    d = placebo_draws(demo, 1, seed=seed)[0]
    return placebo_panel(demo, d["units"], d["years"])


# ---- compile once, refit with new data -----------------------------------------------------

def test_lifted_model_with_swapped_data_has_the_other_panels_logp(demo):
    from bayes_nqp.bayes.fit import make_model

    a = make_model("did", _placebo(demo, 1), "default").build()
    b = make_model("did", _placebo(demo, 2), "default").build()
    lifted, sig_a, _ = engine.lift_constants(a)
    _, sig_b, values_b = engine.lift_constants(b)
    assert sig_a == sig_b  # same structure: only the data differ
    point = a.initial_point()
    for k in point:
        point[k] = point[k] + 0.3  # away from τ = λ = 0, where D would not matter
    from pytensor.compile import SharedVariable
    from pytensor.graph.basic import ancestors

    shared = {v.name: v for v in ancestors([lifted.logp()]) if isinstance(v, SharedVariable)}
    logp_lifted_a = lifted.compile_logp()(point)
    for name, v in values_b.items():
        shared[name].set_value(v)
    logp_b = b.compile_logp()(point)
    assert lifted.compile_logp()(point) == pytest.approx(logp_b, rel=1e-10)
    assert abs(logp_b - logp_lifted_a) > 0.1  # the swap changed something


def test_grouped_statistics_of_other_shapes_share_the_structure_and_swap_exactly(demo):
    """A panel with one more covariance pattern has more grouped likelihood rows (its pm.Data
    change shape), yet the same structure: the compiled model refits it with the other panel's
    exact log density (the engine keys data by name and dims, the packing carries shapes)."""
    import pandas as pd
    from pytensor.compile import SharedVariable
    from pytensor.graph.basic import ancestors

    from bayes_nqp.bayes.fit import make_model
    from bayes_nqp.data import DEMO_MAP, DEMO_PANEL

    raw = pd.read_csv(DEMO_PANEL)
    later = raw["city"].isin(raw.loc[raw["pilot_year"] == raw["pilot_year"].min(), "city"].unique()[:8])
    raw.loc[later, "pilot_year"] = raw["pilot_year"].max() + 2  # 8 pilots in a year of their own
    other = bn.load_panel(raw, DEMO_MAP)
    a, b = make_model("did", demo, "default"), make_model("did", other, "default")
    assert len(b.likelihood_data()["w"]) == len(a.likelihood_data()["w"]) + 8  # their own 8 rows
    lifted, sig_a, _ = engine.lift_constants(a.build())
    _, sig_b, values_b = engine.lift_constants(pm_b := b.build())
    assert sig_a == sig_b
    point = pm_b.initial_point()
    for k in point:
        point[k] = point[k] + 0.2
    shared = {v.name: v for v in ancestors([lifted.logp()]) if isinstance(v, SharedVariable)}
    for name, v in values_b.items():
        shared[name].set_value(v)
    assert lifted.compile_logp()(point) == pytest.approx(pm_b.compile_logp()(point), rel=1e-10)


def test_structure_change_is_a_cache_miss(demo):
    from bayes_nqp.bayes.fit import make_model

    did = make_model("did", _placebo(demo, 1), "default").build()
    bigger = make_model("did", demo, "default").build()  # 287 units: other shapes
    assert engine.lift_constants(did)[1] != engine.lift_constants(bigger)[1]


# ---- resume and retry (in-process) ---------------------------------------------------------

def test_interrupted_run_resumes_reusing_finished_tasks(demo, tmp_path):
    seen = []

    def stop_after_two(state):
        seen.append(state.done)
        if state.done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        calibrate_placebo("did", demo, n=5, seed=11, workers=1, out=tmp_path, progress=stop_after_two,
                          **SAMPLER)
    files = sorted((tmp_path / "calibration/placebo/did/tasks").glob("*.json"))
    assert len(files) == 2
    before = {f.name: (f.stat().st_mtime_ns, f.read_text()) for f in files}
    res = calibrate_placebo("did", demo, n=5, seed=11, workers=1, out=tmp_path, **SAMPLER)
    assert (res.run.reused, res.run.done, res.run.failed) == (2, 3, 0)
    for f in files:  # not recomputed: the files are untouched
        assert (f.stat().st_mtime_ns, f.read_text()) == before[f.name]
    assert res.summary["n"] == 5
    again = calibrate_placebo("did", demo, n=5, seed=11, workers=1, out=tmp_path, **SAMPLER)
    assert (again.run.reused, again.run.done) == (5, 0)
    assert again.summary["false_positive_rate"] == res.summary["false_positive_rate"]


def flaky(shared, *, counter: str, fail_times: int):
    """A task that fails its first ``fail_times`` calls (counted in a file)."""
    path = Path(counter)
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    if n < fail_times:
        raise RuntimeError(f"failure number {n + 1}")
    return {"value": n}


def _flaky_task(tmp_path, name, fail_times):
    kw = {"counter": str(tmp_path / name), "fail_times": fail_times}
    fn = f"{__name__}:flaky"
    return engine.Task(engine.task_key(fn, kw), fn, kw)


def test_failing_task_is_retried_once_then_recorded_with_its_error(tmp_path):
    once = _flaky_task(tmp_path, "once", 1)        # fails, then succeeds on the retry
    always = _flaky_task(tmp_path, "always", 99)   # fails both times
    res = engine.run_tasks([once, always], tmp_path / "run", workers=1)
    assert (res.done, res.failed) == (1, 1)
    assert (tmp_path / "once").read_text() == "2" and (tmp_path / "always").read_text() == "2"
    rec = json.loads((tmp_path / "run/tasks" / f"{always.key}.json").read_text())
    assert rec["status"] == "error" and "failure number 2" in rec["error"]
    # a rerun tries the failed task again and reuses the finished one
    res2 = engine.run_tasks([once, always], tmp_path / "run", workers=1)
    assert (res2.reused, res2.failed) == (1, 1)
    assert (tmp_path / "always").read_text() == "4"


def test_claimed_compiledirs_differ_between_processes(tmp_path):
    code = ("import sys; from bayes_nqp.engine import claim_compiledir; "
            "import time; print(claim_compiledir(sys.argv[1])); sys.stdout.flush(); time.sleep(3)")
    env = {**os.environ, "PYTHONPATH": str(Path(bn.__file__).parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    dirs = [p.stdout.readline().strip() for p in procs]
    for p in procs:
        p.wait(timeout=30)
    assert len(set(dirs)) == 2 and all(d.startswith(str(tmp_path)) for d in dirs)


# ---- a real scheduler with two worker processes ----------------------------------------------

def _dask(*args, **kw):
    exe = Path(sys.executable).with_name("dask")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "distributed.cli.dask_spec"]
    return subprocess.Popen([*cmd, *args], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **kw)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes on localhost, random free ports."""
    d = tmp_path_factory.mktemp("dask")
    sfile = d / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(bn.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    procs = [_dask("scheduler", "--scheduler-file", str(sfile), "--port", "0",
                   "--dashboard-address", ":0", "--no-show", env=env)]
    for _ in range(100):
        if sfile.exists() and sfile.stat().st_size:
            break
        time.sleep(0.2)
    workers = [_dask("worker", "--scheduler-file", str(sfile), "--nworkers", "1", "--nthreads", "1",
                     "--no-dashboard", "--name", f"w{k}", "--death-timeout", "60", env=env)
               for k in range(2)]
    procs += workers
    address = json.loads(sfile.read_text())["address"]
    from distributed import Client

    with Client(address, timeout="30s") as c:
        c.wait_for_workers(2, timeout=60)
    try:
        yield {"address": address, "workers": workers}
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _rows(res):
    return [(r["replicate"], r["placebo_units"], r["estimate"], r["interval"],
             r["twfe_iid"]["estimate"]) for r in res.summary["replicates"]]


def test_scheduler_run_equals_in_process_run(demo, cluster, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    # the two runs overlap: the workers compile while this process does
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(calibrate_placebo, "did", demo, n=4, seed=3, scheduler=cluster["address"],
                          out=tmp_path / "b", **SAMPLER)
        local = calibrate_placebo("did", demo, n=4, seed=3, workers=1, out=tmp_path / "a", **SAMPLER)
        remote = fut.result()
    assert remote.run.engine == "scheduler" and remote.run.workers == 2
    assert (remote.run.done, remote.run.failed) == (4, 0)
    for (i, u, est, iv, tw), (j, u2, est2, iv2, tw2) in zip(_rows(local), _rows(remote)):
        assert (i, u) == (j, u2)
        assert est2 == pytest.approx(est, rel=1e-9, abs=1e-12)
        assert iv2 == pytest.approx(iv, rel=1e-9, abs=1e-12)
        assert tw2 == pytest.approx(tw, rel=1e-12)
    dirs = {r["worker"]["compiledir"] for r in remote.run.results}
    pids = {r["worker"]["pid"] for r in remote.run.results}
    assert len(dirs) == len(pids)  # one PyTensor compile directory per worker process


def test_run_survives_a_killed_worker(demo, cluster, tmp_path):
    killed = []

    def kill_one(state):
        if state.finished >= 2 and not killed:
            victim = cluster["workers"][1]
            os.killpg(victim.pid, signal.SIGKILL)
            killed.append(victim.pid)

    res = calibrate_placebo("did", demo, n=10, seed=4, scheduler=cluster["address"],
                            out=tmp_path, progress=kill_one, **SAMPLER)
    assert killed
    assert (res.run.done, res.run.failed, res.summary["n"]) == (10, 0, 10)
    assert len(list((tmp_path / "calibration/placebo/did/tasks").glob("*.json"))) == 10


def test_an_empty_compiledir_slot_starts_as_a_copy_of_an_idle_warm_one(tmp_path, monkeypatch):
    monkeypatch.delenv(engine.COMPILEDIR_SEED_ENV, raising=False)
    warm = tmp_path / "slot-0"
    (warm / "numba").mkdir(parents=True)
    (warm / "numba" / "cache.nbi").write_text("warm")
    (tmp_path / "slot-1").mkdir()  # an empty slot
    engine._seed_slot(tmp_path, tmp_path / "slot-1")
    assert (tmp_path / "slot-1" / "numba" / "cache.nbi").read_text() == "warm"
    # a warm slot in use by another process is never copied (it may be half-written)
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; "
                               "fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)",
                               str(tmp_path / "slot-0.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        (tmp_path / "slot-1.lock").touch()
        import fcntl

        fd = os.open(tmp_path / "slot-1.lock", os.O_RDWR)  # slot-1 busy too (this process)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            engine._seed_slot(tmp_path, tmp_path / "slot-2")
        finally:
            os.close(fd)
        assert not (tmp_path / "slot-2").exists()
    finally:
        holder.kill()
        holder.wait()
    monkeypatch.setenv(engine.COMPILEDIR_SEED_ENV, "0")  # seeding off
    engine._seed_slot(tmp_path, tmp_path / "slot-3")
    assert not (tmp_path / "slot-3").exists()
