"""Interrupts are honoured (issue 12 §2): SIGINT and SIGTERM sent to a `bayes-nqp fit` or `run`
subprocess while nutpie samples end it with exit 130 / 143, nothing that claims to be complete is
saved, and the run's manifest says where it stopped; a signal whose exception a library swallows
(nutpie, a finalizer) is still honoured; an output folder that cannot be written is refused
before anything is sampled.

The subprocess fits use a one-parameter model registered through ``BAYES_NQP_MODELS`` (a real
PyMC model sampled by nutpie through the unchanged command line; it compiles in seconds, where
did takes half a minute); the three subprocesses run at once. The same with the did model is
``@pytest.mark.slow``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bayes_nqp import guard, pipeline
from bayes_nqp.cli import app
from bayes_nqp.data import REPO_ROOT
from bayes_nqp.errors import Interrupted
from bayes_nqp.results import read_json

def flat(text: str) -> str:
    """Terminal output with the line wrapping undone."""
    return " ".join(text.split())


SRC = REPO_ROOT / "src"
MARKER = "sampling started"

TOY_MODULE = '''
"""A one-parameter model that samples for as long as it is asked (interrupt tests)."""
import pymc as pm

from bayes_nqp.bayes.base import BayesModel, register


@register("slowtoy")
class SlowToy(BayesModel):
    def build(self):
        with pm.Model() as m:
            pm.Normal("mu", 0.0, 1.0, shape=20)
        return m

    def estimands(self, idata):
        return {"mu0": idata["posterior"]["mu"].to_numpy()[..., 0]}

    def log_likelihood(self, idata, pm_model):
        return None

    def posterior_predictive(self, idata, pm_model, seed):
        return None
'''

TOY_SPEC = '''
[model]
title = "Slow toy (interrupt tests)"
intro = "A one-parameter model."
sensitivity = false
figures = []

[sampler]
draws = 20000000
tune = 50
chains = 2
seed = 1

[quick]
draws = 20000000
tune = 50
chains = 2
'''


class _Proc:
    """A `bayes-nqp -v ...` subprocess; ``started`` is set once its log says sampling started."""

    def __init__(self, args, env):
        self.p = subprocess.Popen([sys.executable, "-c", LAUNCHER, "-v", *args], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.started = threading.Event()
        self.err: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.p.stderr:
            self.err.append(line)
            if MARKER in line:
                self.started.set()

    def stop(self, sig, wait=300):
        """Send ``sig`` half a second into sampling; returns (exit status, stderr)."""
        assert self.started.wait(wait), "sampling never started:\n" + "".join(self.err)[-3000:]
        time.sleep(0.5)
        self.p.send_signal(sig)
        try:
            self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            pytest.fail(f"the process did not stop after {sig!r}")
        self.reader.join(timeout=5)
        return self.p.returncode, "".join(self.err)


def _env(tmp: Path, models: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp), str(SRC)]), "MPLBACKEND": "Agg"}
    if models:
        env["BAYES_NQP_MODELS"] = models
    return env


#: what the `bayes-nqp` console script runs
LAUNCHER = "from bayes_nqp.cli import app; app(prog_name='bayes-nqp')"


@pytest.fixture(scope="module")
def interrupted(panel_files, tmp_path_factory):
    """fit (SIGINT), fit (SIGTERM) and run (SIGTERM) of the toy model, started at once."""
    tmp = tmp_path_factory.mktemp("interrupts")
    (tmp / "slowtoy_model.py").write_text(textwrap.dedent(TOY_MODULE), encoding="utf-8")
    (tmp / "slowtoy.toml").write_text(TOY_SPEC, encoding="utf-8")
    env = _env(tmp, f"slowtoy=slowtoy_model:{tmp / 'slowtoy.toml'}")
    data, cmap = panel_files(tmp / "data")
    common = ["--data", str(data), "--map", str(cmap)]
    jobs = {
        "fit_int": (["fit", "slowtoy", *common, "--out", str(tmp / "fit_int")], signal.SIGINT),
        "fit_term": (["fit", "slowtoy", *common, "--out", str(tmp / "fit_term")], signal.SIGTERM),
        "run_term": (["run", "--models", "slowtoy", "--quick", *common, "--out", str(tmp / "run_term")],
                     signal.SIGTERM),
    }
    procs = {k: _Proc(args, env) for k, (args, _) in jobs.items()}
    results = {k: (procs[k].stop(sig), tmp / k) for k, (_, sig) in jobs.items()}
    return results


def _no_completed_fit(folder: Path, model: str = "slowtoy"):
    assert not (folder / model / "summary.json").exists()
    assert not (folder / model / "posterior.nc").exists()
    assert not list(folder.rglob("*.tmp")), "temporary files left behind"
    assert not (folder / guard.LOCK_NAME).exists(), "the lock was not released"


def test_sigint_during_sampling_of_fit_exits_130_and_saves_no_summary(interrupted):
    (rc, err), out = interrupted["fit_int"]
    assert rc == 130, err[-2000:]
    assert "interrupted (SIGINT)" in err and "Traceback" not in err
    _no_completed_fit(out)


def test_sigterm_during_sampling_of_fit_exits_143_after_the_same_clean_up(interrupted):
    (rc, err), out = interrupted["fit_term"]
    assert rc == 143, err[-2000:]
    assert "interrupted (SIGTERM)" in err
    _no_completed_fit(out)


def test_sigterm_during_sampling_of_run_exits_143_and_the_manifest_says_where(interrupted):
    (rc, err), out = interrupted["run_term"]
    assert rc == 143, err[-2000:]
    m = read_json(out / "manifest.json")
    assert m["status"] == "interrupted" and m["stopped_at"] == "fit:slowtoy"
    assert m["signal"] == "SIGTERM" and m["exit_code"] == 143
    st = m["stages"]
    assert st["data"]["status"] == "done" and st["replication"]["status"] == "done"
    assert st["fit:slowtoy"]["status"] == "interrupted"
    assert st["report"]["status"] == "not started"
    assert not (out / "report.html").exists()
    _no_completed_fit(out)


@pytest.mark.slow
def test_sigint_during_sampling_of_a_did_fit_exits_130(panel_files, tmp_path):
    data, cmap = panel_files(tmp_path / "data")
    p = _Proc(["fit", "did", "--data", str(data), "--map", str(cmap), "--draws", "5000000",
               "--tune", "50", "--chains", "2", "--out", str(tmp_path / "out")], _env(tmp_path))
    rc, err = p.stop(signal.SIGINT, wait=300)
    assert rc == 130, err[-2000:]
    _no_completed_fit(tmp_path / "out", "did")


# ---- in-process: swallowed interrupts, the aborted sample ----------------------------------------

class _Trace(dict):
    """Stands in for nutpie's DataTree: only the posterior's draw count is read."""

    def __init__(self, n):
        super().__init__(posterior=type("P", (), {"sizes": {"draw": n, "chain": 2}})())


def test_an_aborted_sample_with_fewer_draws_than_asked_is_an_interrupt():
    guard.reset()
    guard.check_sample(_Trace(1000), 1000)  # complete: nothing raised
    with pytest.raises(Interrupted, match="after 37 of 1000 draws") as e:
        guard.check_sample(_Trace(37), 1000)
    assert e.value.exit_code == 130


def test_a_signal_whose_exception_was_swallowed_is_still_raised():
    with guard.signals_handled():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
        except KeyboardInterrupt:
            pass  # what nutpie (or a finalizer) does with it
        with pytest.raises(Interrupted) as e:
            guard.check_interrupt()
    assert e.value.exit_code == 143 and e.value.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is not guard._handler  # restored after the block
    guard.check_interrupt()  # and the record with it: a later fit is not stopped by it


@pytest.fixture
def files(panel_files, tmp_path):
    return panel_files(tmp_path / "data")


@pytest.mark.parametrize("where", ["fit", "report"])
def test_an_interrupt_swallowed_inside_a_stage_stops_the_run_there(files, tmp_path, monkeypatch, where):
    import bayes_nqp as bn

    panel = bn.load_panel(*files)

    def swallowing(*a, **k):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        if where == "fit":
            return _FakeFit(panel)
        return {}

    if where == "fit":
        monkeypatch.setattr(pipeline, "fit_model", swallowing)
    else:
        monkeypatch.setattr(pipeline, "fit_model", lambda name, p, **k: _FakeFit(p))
        import bayes_nqp.report as rp
        monkeypatch.setattr(rp, "build_report", swallowing)
    out = tmp_path / "out"
    with guard.signals_handled(), pytest.raises(Interrupted):
        pipeline.run(panel, out, models=["did"], prior_sets=(),
                     replication={"placebo": {"draws": 5}, "mediation": {"reps": 5},
                                  "threshold": {"n_boot": 5}})
    m = read_json(out / "manifest.json")
    stage = "fit:did" if where == "fit" else "report"
    assert m["status"] == "interrupted" and m["stopped_at"] == stage and m["signal"] == "SIGTERM"
    assert m["stages"][stage]["status"] == "interrupted"


class _FakeFit:
    """A saved-fit stand-in for the pipeline (no sampling)."""

    def __init__(self, panel):
        from bayes_nqp.bayes.spec import SamplerSettings, load_spec

        self.spec = load_spec("did")
        self.sampler = SamplerSettings(draws=10, tune=10, chains=2)
        self.diag = {"passed": True, "failures": [], "warnings": []}
        self.passed = True
        self.seconds = 0.0
        self.compiled_ = None
        self.panel = panel

    def save(self, out):
        from bayes_nqp.results import write_json

        write_json(Path(out) / "summary.json", {"model": "did", "data": self.panel.data_block(),
                                                "params": {}, "diagnostics": self.diag})
        return Path(out)


# ---- output that cannot be written: refused before anything is sampled -------------------------

COMMANDS = {
    "fit": ["fit", "did"],
    "run": ["run", "--models", "did"],
    "replicate": ["replicate", "did"],
    "sensitivity": ["sensitivity", "did"],
    "calibrate": ["calibrate", "placebo", "--model", "did", "--n", "2", "--workers", "1"],
}


def _no_work(monkeypatch):
    import importlib

    import bayes_nqp.frequentist as freq

    bf = importlib.import_module("bayes_nqp.bayes.fit")  # the module (bayes.fit is also a function)

    monkeypatch.setattr(bf, "compile_model", lambda *a, **k: pytest.fail("compiled before refusing"))
    monkeypatch.setattr(freq, "run_sections", lambda *a, **k: pytest.fail("replicated before refusing"))


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_existing_file_as_output_is_refused_before_sampling(files, tmp_path, monkeypatch, command):
    _no_work(monkeypatch)
    target = tmp_path / "taken.txt"
    target.write_text("mine", encoding="utf-8")
    data, cmap = files
    res = CliRunner().invoke(app, [*COMMANDS[command], "--data", str(data), "--map", str(cmap),
                                   "--out", str(target)])
    assert res.exit_code == 2, res.output
    assert "existing file" in flat(res.output)
    assert target.read_text(encoding="utf-8") == "mine"


@pytest.mark.parametrize("command", ["fit", "run", "replicate"])
def test_a_folder_that_cannot_be_written_is_refused_before_sampling(files, tmp_path, monkeypatch, command):
    _no_work(monkeypatch)
    data, cmap = files
    if os.geteuid() == 0:  # root writes into a mode-555 folder; /proc refuses everyone
        out = Path("/proc/bayes-nqp-no-such-folder/out")
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        out = ro / "out"
    try:
        res = CliRunner().invoke(app, [*COMMANDS[command], "--data", str(data), "--map", str(cmap),
                                       "--out", str(out)])
    finally:
        if os.geteuid() != 0:
            (tmp_path / "ro").chmod(0o755)
    assert res.exit_code == 2, res.output
    assert "cannot" in flat(res.output) and "--out" in flat(res.output)


def test_a_model_folder_that_is_a_file_is_refused_before_sampling(files, tmp_path, monkeypatch):
    _no_work(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    (out / "did").write_text("not a folder", encoding="utf-8")
    data, cmap = files
    res = CliRunner().invoke(app, ["fit", "did", "--data", str(data), "--map", str(cmap), "--out", str(out)])
    assert res.exit_code == 2 and "existing file" in flat(res.output), res.output


def test_a_parallel_run_interrupted_marks_its_running_fits_and_leaves_nothing_half_written(
        panel_files, tmp_path):
    """`run` with two workers (each model's fit on a worker process of a LocalCluster), SIGTERM
    once both fits run: exit 143, the running fit stages and the manifest say interrupted, the
    cluster is gone and no temporary file or task folder of the run or its workers is left."""
    for name in ("slowtoy", "slowtoy2"):
        (tmp_path / f"{name}_model.py").write_text(
            textwrap.dedent(TOY_MODULE).replace('"slowtoy"', f'"{name}"'), encoding="utf-8")
    (tmp_path / "slowtoy.toml").write_text(TOY_SPEC, encoding="utf-8")
    env = {**_env(tmp_path, ",".join(f"{n}={n}_model:{tmp_path / 'slowtoy.toml'}"
                                       for n in ("slowtoy", "slowtoy2"))),
           "BAYES_NQP_WORKERS": "2"}
    data, cmap = panel_files(tmp_path / "data")
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-c", LAUNCHER, "run", "--models", "slowtoy,slowtoy2",
                          "--quick", "--data", str(data), "--map", str(cmap), "--out", str(out)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and p.poll() is None:
            m = read_json(out / "manifest.json") if (out / "manifest.json").exists() else {}
            st = m.get("stages", {})
            if all(st.get(f"fit:{n}", {}).get("status") == "running" for n in ("slowtoy", "slowtoy2")):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the two fits never ran at once:\n" + (p.communicate(timeout=30)[0] or "")[-3000:])
        time.sleep(3)  # both sampling (the toy's quick is 20 million draws)
        p.send_signal(signal.SIGTERM)
        output = p.communicate(timeout=90)[0]
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 143, output[-3000:]
    m = read_json(out / "manifest.json")
    assert m["status"] == "interrupted" and m["signal"] == "SIGTERM" and m["exit_code"] == 143
    assert {m["stages"][f"fit:{n}"]["status"] for n in ("slowtoy", "slowtoy2")} == {"interrupted"}
    assert "fit:slowtoy" in m["stopped_at"]
    assert not list(out.rglob("*.tmp")) and not list(out.glob(".tasks.*"))
    assert not (out / "slowtoy" / "summary.json").exists()
