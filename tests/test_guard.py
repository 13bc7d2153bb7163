"""One run per output folder, and temporaries that belong to one process (issue 12 §3): a second
run into a folder another live process holds refuses with the owner's pid and host; a lock whose
process is gone is taken over; an interrupted run's clean-up removes its own temporaries only."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bayes_nqp as bn
from bayes_nqp import guard, pipeline
from bayes_nqp.cli import app
from bayes_nqp.data import REPO_ROOT
from bayes_nqp.errors import FolderLocked
from bayes_nqp.results import write_atomic

def flat(text: str) -> str:
    """Terminal output with the line wrapping undone."""
    return " ".join(text.split())


HOLDER = """
import sys, time
from bayes_nqp.guard import folder_lock
with folder_lock(sys.argv[1], command="holder"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of tmp_path/out."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    assert p.stdout.readline().strip() == "locked"
    yield out, p
    p.kill()
    p.wait()


def test_a_second_run_into_a_folder_another_process_holds_refuses(holder, demo):
    out, p = holder
    lock = json.loads((out / guard.LOCK_NAME).read_text(encoding="utf-8"))
    assert lock["pid"] == p.pid and lock["host"] == socket.gethostname() and lock["command"] == "holder"
    res = CliRunner().invoke(app, ["run", "--models", "did", "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "in use by another bayes-nqp run" in flat(res.output) and f"pid {p.pid}" in flat(res.output)
    with pytest.raises(FolderLocked, match=str(p.pid)):
        pipeline.run(demo, out, models=["did"])
    assert not (out / "manifest.json").exists()  # refused before writing anything
    res = CliRunner().invoke(app, ["replicate", "did", "--out", str(out)])
    assert res.exit_code == 2 and "in use" in flat(res.output)
    assert json.loads((out / guard.LOCK_NAME).read_text(encoding="utf-8"))["pid"] == p.pid  # not taken


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_released(holder, caplog):
    out, p = holder
    p.kill()  # dies without releasing its lock
    p.wait()
    assert (out / guard.LOCK_NAME).exists()
    with caplog.at_level(logging.WARNING, logger="bayes_nqp.guard"):
        with guard.folder_lock(out):
            assert json.loads((out / guard.LOCK_NAME).read_text(encoding="utf-8"))["pid"] == os.getpid()
            with guard.folder_lock(out):  # re-entrant within the process (run inside the CLI)
                pass
            assert (out / guard.LOCK_NAME).exists()
    assert "stale lock" in caplog.text and str(p.pid) in caplog.text
    assert not (out / guard.LOCK_NAME).exists()


def test_a_lock_held_on_another_host_is_never_taken_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / guard.LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "started": "x"}),
                                      encoding="utf-8")
    with pytest.raises(FolderLocked, match="elsewhere.example"):
        with guard.folder_lock(out):
            pass


def test_temporary_names_are_unique_and_clean_up_spares_another_runs(tmp_path, monkeypatch):
    a, b = guard.temp_path(tmp_path / "posterior.nc"), guard.temp_path(tmp_path / "posterior.nc")
    assert a != b and f".{os.getpid()}-" in a.name and a.name.startswith(".posterior.nc.")
    theirs = tmp_path / "did" / f".posterior.nc.{os.getpid() + 1}-abc.tmp"  # another run's
    theirs.parent.mkdir()
    theirs.write_bytes(b"x")
    mine = guard.temp_path(tmp_path / "did" / "posterior.nc")
    mine.write_bytes(b"x")
    pipeline._remove_temporaries(tmp_path)
    assert theirs.exists() and not mine.exists()

    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda s, d: (seen.append(Path(s).name), real(s, d)))
    write_atomic(tmp_path / "x.json", "{}")
    assert seen and seen[0].startswith(f".x.json.{os.getpid()}-") and seen[0].endswith(".tmp")
    assert not list(tmp_path.glob(".x.json*"))


def test_a_saved_fit_writes_no_shared_temporary(tmp_path, monkeypatch):
    """posterior.nc and estimands.nc go through per-process temporaries (not .posterior.nc.tmp)."""
    import numpy as np
    import xarray as xr

    from bayes_nqp.bayes import fit as _  # noqa: F401
    import importlib

    bf = importlib.import_module("bayes_nqp.bayes.fit")
    names = []
    real = Path.replace
    monkeypatch.setattr(Path, "replace", lambda self, d: (names.append(self.name), real(self, d))[1])
    dt = xr.DataTree.from_dict({"posterior": xr.Dataset({"x": (("chain", "draw"), np.zeros((1, 3)))})})
    bf._write_datatree(dt, tmp_path / "posterior.nc")
    bf._write_dataset(xr.Dataset({"x": (("chain", "draw"), np.zeros((1, 3)))}), tmp_path / "estimands.nc")
    assert len(names) == 2 and all(f".{os.getpid()}-" in n for n in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["estimands.nc", "posterior.nc"]
