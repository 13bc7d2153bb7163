"""Run safety: interrupts that are never swallowed, one run per output folder, output refused
before any work, temporary files that belong to one process, and results that never mix data.

* **Interrupts.** :func:`signals_handled` installs handlers for SIGINT and SIGTERM that record the
  signal and raise :class:`~bayes_nqp.errors.Interrupted` (a ``KeyboardInterrupt``). nutpie
  catches ``KeyboardInterrupt`` and returns the draws made so far; ``bayes.fit.sample`` calls
  :func:`check_interrupt` after sampling (and compares the draws returned with the draws asked
  for), so an aborted sample is re-raised instead of being summarised as complete. The recorded
  signal also survives an interrupt lost in a finalizer or a library's ``except``: the pipeline
  checks it at every stage end. :func:`shielded` defers the raise while clean-up writes the
  manifest.
* **The lock.** :func:`folder_lock` creates ``DIR/.bayes-nqp.lock`` (``O_EXCL``) holding the
  owner's pid, host and command; a second process refuses with
  :class:`~bayes_nqp.errors.FolderLocked`; a lock whose pid is dead on this host is stale and
  taken over. Re-entrant within one process.
* **Writable output.** :func:`check_writable` refuses an existing file or a folder that cannot be
  written (:class:`~bayes_nqp.errors.OutputError`) before any data are read or sampled.
* **Temporary names.** :func:`temp_path` / :data:`temp_prefix` name temporaries
  ``.<name>.<pid>-<random>.tmp``; :func:`remove_own_temporaries` deletes only this process's,
  :func:`remove_dead_temporaries` those of processes that are gone (a parallel run's workers).
* **Data identity.** :func:`data_identity` and :func:`same_data` compare the ``data`` blocks of
  saved results (the file's sha256 and the column map's sha256).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import FolderLocked, Interrupted, OutputError

log = logging.getLogger(__name__)

LOCK_NAME = ".bayes-nqp.lock"
SIGNALS = (signal.SIGINT, signal.SIGTERM)

# ---- interrupts --------------------------------------------------------------------------------

_state = {"signum": None, "shield": 0, "installed": 0}


def _handler(signum, frame):  # noqa: ARG001
    if _state["signum"] is None:
        _state["signum"] = signum
    if not _state["shield"]:
        raise Interrupted(signum)


@contextmanager
def signals_handled():
    """SIGINT and SIGTERM raise :class:`Interrupted` within this block (main thread only;
    nested blocks share the outer one's record)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state["installed"]:
        _state["installed"] += 1
        try:
            yield
        finally:
            _state["installed"] -= 1
        return
    old = {s: signal.getsignal(s) for s in SIGNALS}
    _state.update(signum=None, installed=1)
    for s in SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        # the record belongs to this block: a later fit outside it must not see an old signal
        _state.update(installed=0, signum=None)


def received() -> int | None:
    """The signal received within :func:`signals_handled`, if any."""
    return _state["signum"]


def check_interrupt(where: str = "") -> None:
    """Raise :class:`Interrupted` if a signal was received (even one whose exception a library
    swallowed)."""
    if _state["signum"] is not None and not _state["shield"]:
        raise Interrupted(_state["signum"], f"interrupted by {signal.Signals(_state['signum']).name}"
                          + (f" {where}" if where else ""))


def reset() -> None:
    _state["signum"] = None


@contextmanager
def shielded():
    """Clean-up that must finish: a signal arriving here is recorded, not raised."""
    _state["shield"] += 1
    try:
        yield
    finally:
        _state["shield"] -= 1


def check_sample(idata, draws: int) -> None:
    """After nutpie returned: raise :class:`Interrupted` when a signal arrived or fewer draws
    than asked came back (nutpie returns the draws made so far on ``KeyboardInterrupt``)."""
    check_interrupt("during sampling")
    try:
        n = int(idata["posterior"].sizes["draw"])
    except (KeyError, TypeError, AttributeError):
        return
    if n < int(draws):
        raise Interrupted(_state["signum"] or signal.SIGINT,
                          f"sampling was interrupted after {n} of {draws} draws")


# ---- the output folder -------------------------------------------------------------------------

def check_writable(out: str | Path) -> Path:
    """``out`` as a folder that can be written (or created: its nearest existing folder can be
    written); raises :class:`OutputError` for an existing file (or a file on the way) or a folder
    that cannot be written. Creates nothing. Call it before any work."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"cannot write results into {out}: it is an existing file, not a folder; "
                          "choose another --out")
    anc = out
    while not anc.exists():
        if anc.parent == anc:
            break
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise OutputError(f"cannot create {out}: {anc} is a file, not a folder; choose another --out")
    try:  # a probe in the nearest folder that exists; nothing is created
        probe = anc / f".write-test.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write into {out}: {exc.strerror or exc}; choose a folder you can "
                          "write (--out)") from exc
    return out


_held: dict[Path, int] = {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(out: str | Path) -> dict | None:
    p = Path(out) / LOCK_NAME
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _stale(owner: dict, path: Path) -> bool:
    if not owner:  # unreadable: a writer that died between create and write, or garbage
        try:
            return time.time() - path.stat().st_mtime > 10
        except FileNotFoundError:
            return True
    return owner.get("host") == socket.gethostname() and not _alive(int(owner.get("pid", -1)))


@contextmanager
def folder_lock(out: str | Path, command: str | None = None):
    """Hold ``DIR/.bayes-nqp.lock`` for this block; raises :class:`FolderLocked` when another
    live process holds it. A stale lock (its pid dead on this host) is taken over."""
    out = check_writable(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}; choose another --out") from exc
    key = Path(os.path.abspath(out))
    if _held.get(key):
        _held[key] += 1
        try:
            yield out
        finally:
            _held[key] -= 1
        return
    path = out / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
          "command": command or " ".join(os.path.basename(a) if i == 0 else a
                                         for i, a in enumerate(sys.argv))}
    for _ in range(5):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = read_lock(out)
            if owner is None:
                continue
            if _stale(owner, path):
                log.warning("taking over the stale lock %s (pid %s on %s is gone)", path,
                            owner.get("pid"), owner.get("host"))
                path.unlink(missing_ok=True)
                continue
            raise FolderLocked(
                f"{out} is in use by another bayes-nqp run (pid {owner.get('pid')} on "
                f"{owner.get('host')}, started {owner.get('started')}: {owner.get('command')}); "
                f"wait for it to finish or choose another --out. If that process is gone, delete "
                f"{path}.") from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me, fh)
        break
    else:
        raise FolderLocked(f"could not take the lock {path}; delete it if no run is writing into {out}")
    _held[key] = 1
    try:
        yield out
    finally:
        _held.pop(key, None)
        if (read_lock(out) or {}).get("pid") == os.getpid():
            path.unlink(missing_ok=True)


# ---- temporary files -----------------------------------------------------------------------------

def temp_prefix(path: str | Path) -> str:
    """The prefix of this process's temporaries for ``path`` (``.<name>.<pid>-``)."""
    return f".{Path(path).name}.{os.getpid()}-"


def temp_path(path: str | Path) -> Path:
    """A unique temporary beside ``path`` (``.<name>.<pid>-<random>.tmp``)."""
    path = Path(path)
    return path.with_name(f"{temp_prefix(path)}{secrets.token_hex(6)}.tmp")


def remove_own_temporaries(out: str | Path) -> None:
    """Delete the temporaries this process left under ``out`` (an interrupted atomic write);
    another process's are left alone."""
    out = Path(out)
    if out.exists():
        for p in out.rglob(f".*.{os.getpid()}-*.tmp"):
            p.unlink(missing_ok=True)


def remove_dead_temporaries(out: str | Path) -> None:
    """Delete the temporaries under ``out`` whose writing process no longer exists (workers of
    an interrupted parallel run); a live process's are left alone."""
    out = Path(out)
    if not out.exists():
        return
    for p in out.rglob(".*.tmp"):
        m = re.search(r"\.(\d+)-[A-Za-z0-9_]+\.tmp$", p.name)
        if m and not _alive(int(m.group(1))):
            p.unlink(missing_ok=True)


# ---- data identity -------------------------------------------------------------------------------

def map_sha256(cmap_dict: dict | None) -> str | None:
    if not cmap_dict:
        return None
    text = json.dumps(cmap_dict, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def same_data(a: dict | None, b: dict | None) -> bool | None:
    """Whether two ``data`` blocks describe the same data: the same file sha256 and, where both
    record it, the same column map. None when either lacks a sha256 (cannot tell)."""
    if not a or not b or not a.get("sha256") or not b.get("sha256"):
        return None
    if a["sha256"] != b["sha256"]:
        return False
    ma, mb = a.get("map_sha256"), b.get("map_sha256")
    return not (ma and mb and ma != mb)


def describe_mismatch(a: dict, b: dict) -> str:
    if a.get("sha256") != b.get("sha256"):
        return (f"made from other data (sha256 {str(a.get('sha256'))[:12]}… of {a.get('path')}, "
                f"not {str(b.get('sha256'))[:12]}… of {b.get('path')})")
    return "made with another column map on the same data"
