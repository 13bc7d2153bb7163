"""The many-fits engine: many small, independent fits on Dask distributed.

What to know first
------------------
A **task** is a pure function of small inputs, named by its import path
(``"bayes_nqp.calibration:placebo_task"``), called as ``fn(shared, **kwargs)``: ``shared`` is one
object every task of a run reads (the panel, shipped once to each worker with
``Client.scatter(..., broadcast=True)``), ``kwargs`` are the task's own small inputs (model name,
prior set, seed, the replicate's change to the data). It returns a small JSON-able dict
(estimand summaries, diagnostics); never a posterior.

:func:`run_tasks` executes a list of :class:`Task` and writes **one JSON file per task**
(``DIR/tasks/<key>.json``, atomically) as results arrive, so an interrupted run resumes: a rerun
with the same arguments finds the finished files and reuses them (``RunResult.reused``). A task
that raises is retried once, then recorded with its error (``status: "error"``); its file is
not reused by a rerun, which tries it again. A worker that dies takes its tasks with it; Dask
reschedules them on the others.

Where the tasks run:

* ``scheduler=ADDRESS`` (or the environment variable ``BAYES_NQP_SCHEDULER``): an existing
  ``dask scheduler`` with its workers (a department cluster, dask-jobqueue, Kubernetes).
* otherwise ``workers=N`` > 1 (default: one per core): an embedded ``distributed.LocalCluster``
  of N processes with one thread each, started and closed by :func:`run_tasks`.
* ``workers=1`` without a scheduler: in this process, one task after another (debugging, tests).

Compiling once per worker
-------------------------
Compiling a model with nutpie costs seconds to tens of seconds; sampling a small one costs less
than a second. :func:`compiled_model` therefore keeps a per-process cache keyed by the model's
*structure*. A model's own ``pm.Data`` (the did family's likelihood statistics,
``TwoWayModel.likelihood_data``; every prior's hyperparameters) are swapped by name; the data a
model builds into the graph as constants are lifted too: the engine turns every floating-point
constant of the PyMC graph into a named shared variable before compiling
(:func:`lift_constants`); a later model of the same structure (same graph, same lifted
constants' shapes, same ``pm.Data`` names and numbers of dims — their shapes may differ: the packed
compilation of :mod:`.bayes.packing` reads them from its layout — same non-lifted constants) is then refitted by swapping the values with nutpie's
``with_data`` (:func:`.bayes.refit.with_data`), with no compilation. Anything that changes the structure (a new
cohort, a column dropped for rank) is a cache miss and compiles: never a wrong reuse.

Each worker process gets its own PyTensor compile directory (PyTensor compilation is not safe on
a cache shared by processes): :class:`CompileDirPlugin` sets ``PYTENSOR_FLAGS`` (``base_compiledir``, which also holds the numba cache — PyTensor's graphs and the nutpie C wrappers of :mod:`.bayes.cwrap` — and ``compiledir``)
in each worker before PyTensor is imported, picking the first free ``slot-K`` directory under
``BAYES_NQP_COMPILEDIR`` (default: ``<tmp>/bayes-nqp-pytensor-<user>``) that it can lock, so a
later run reuses the cache of an earlier one, and two processes never share one. A slot that is
empty starts as a copy of an idle warm slot (:func:`_seed_slot`), so a worker added later does
not compile from nothing.

Library code does not print: :func:`run_tasks` reports through ``progress(state)``, a callable
given a :class:`Progress`.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import importlib
import json
import logging
import os
import pickle
import re
import socket
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from .errors import BayesNQPError
from .results import jsonable, read_json, write_json

log = logging.getLogger(__name__)

SCHEDULER_ENV = "BAYES_NQP_SCHEDULER"
COMPILEDIR_ENV = "BAYES_NQP_COMPILEDIR"
#: a compile directory to start empty worker slots from ("0": never seed; unset: an idle slot)
COMPILEDIR_SEED_ENV = "BAYES_NQP_COMPILEDIR_SEED"
#: a failing task is tried this many more times before it is recorded as failed
RETRIES = 1


class EngineError(BayesNQPError):
    """The engine could not run (no scheduler at the address, a bad task)."""


# ---- tasks and results -----------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    """One unit of work: ``fn`` (``"module:function"``) called as ``fn(shared, **kwargs)``."""

    key: str
    fn: str
    kwargs: dict


def task_key(fn: str, kwargs: dict, shared_digest: str = "") -> str:
    """A stable name for a task: the same function, inputs and shared data give the same key."""
    blob = json.dumps({"fn": fn, "kwargs": jsonable(kwargs), "shared": shared_digest},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def digest(obj) -> str:
    """A content digest of the shared data, stable across processes: a DataFrame by its values
    (pandas' row hashes), anything else by its pickle."""
    import pandas as pd

    frame = getattr(obj, "df", obj)
    if isinstance(frame, pd.DataFrame):
        h = hashlib.sha256(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
        h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
        return h.hexdigest()[:20]
    return hashlib.sha256(pickle.dumps(obj, protocol=5)).hexdigest()[:20]


@dataclass
class Progress:
    """What a progress callback is given after every change."""

    total: int
    done: int = 0          # finished in this run (ok)
    reused: int = 0        # finished before, read back
    failed: int = 0        # errored after the retry
    running: int = 0       # submitted, not finished
    elapsed: float = 0.0

    @property
    def finished(self) -> int:
        return self.done + self.reused + self.failed


@dataclass
class RunResult:
    """The outcome of :func:`run_tasks`: counts, every task's result in task order, where it ran."""

    done: int
    reused: int
    failed: int
    results: list[dict]
    seconds: float
    engine: str                    # "in-process", "local-cluster" or "scheduler"
    workers: int
    dashboard: str | None = None
    errors: dict[str, str] = field(default_factory=dict)   # key -> error of the failed tasks

    def table(self) -> list[dict]:
        return [{"status": "done", "tasks": self.done}, {"status": "reused", "tasks": self.reused},
                {"status": "failed", "tasks": self.failed}]


def _result_path(out: Path, key: str) -> Path:
    return out / "tasks" / f"{key}.json"


def _finished(out: Path, key: str) -> dict | None:
    path = _result_path(out, key)
    if not path.exists():
        return None
    try:
        res = read_json(path)
    except (OSError, ValueError):  # a file that cannot be read is redone
        return None
    return res if res.get("status") == "ok" else None


# ---- the worker side ---------------------------------------------------------------------------

#: per-process state: the unpickled shared objects (by digest) and the compiled models
_STATE: dict = {"shared": {}, "compiled": {}, "compilations": 0, "reuses": 0}


def _resolve(fn: str) -> Callable:
    module, _, name = fn.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise EngineError(f"task function '{fn}' cannot be imported: {exc}") from exc


@dataclass(frozen=True)
class _Pickled:
    """The shared object as it travels: pickled once on the client, unpickled once per worker."""

    blob: bytes


def _shared_value(shared):
    """The shared object (unpickled once per process when it came pickled)."""
    if isinstance(shared, _Pickled):
        blob = shared.blob
        key = hashlib.sha256(blob).hexdigest()
        if key not in _STATE["shared"]:
            _STATE["shared"] = {key: pickle.loads(blob)}  # keep one: a run has one shared object
        return _STATE["shared"][key]
    return shared


def execute(fn: str, shared, kwargs: dict) -> dict:
    """Run one task in this process; returns its result with ``seconds`` and ``worker``. Raises
    what the task raises (the caller retries and records)."""
    t0 = time.perf_counter()
    c0, r0 = _STATE["compilations"], _STATE["reuses"]
    res = dict(_resolve(fn)(_shared_value(shared), **kwargs))
    res.setdefault("status", "ok")
    res["seconds"] = time.perf_counter() - t0
    res["compiled"] = _STATE["compilations"] - c0
    res["reused_compilation"] = _STATE["reuses"] - r0
    res["worker"] = {"host": socket.gethostname(), "pid": os.getpid(),
                     "compiledir": _compiledir()}
    return jsonable(res)


def _compiledir() -> str | None:
    import sys

    if "pytensor" in sys.modules:
        try:
            return str(sys.modules["pytensor"].config.compiledir)
        except Exception:  # noqa: BLE001 - informational only
            return None
    return None


def noop(shared, **kwargs) -> dict:
    """A task that does nothing with its inputs: measures the engine's per-task overhead
    (scheduling, shipping, result writing) in benchmarks."""
    return {"status": "ok", "n_obs": int(len(shared.df)) if hasattr(shared, "df") else None}


# ---- compile once, refit with new data ---------------------------------------------------------

_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def _is_float_constant(v) -> bool:
    from pytensor.graph.basic import Constant

    return isinstance(v, Constant) and str(getattr(v, "dtype", "")).startswith("float")


def lift_constants(pm_model):
    """Replace every floating-point constant of a PyMC model's graph by a named shared variable.

    Returns ``(model, signature, values)``: the new model (to compile), a structure signature
    (the graph with the lifted constants as placeholders, non-float constants by value) and the
    lifted values by name (for ``refit.with_data(compiled, values)``). Two models with equal
    signatures differ only in the lifted values.
    """
    import pytensor
    from pytensor.compile import SharedVariable
    from pytensor.graph.basic import Constant

    from .bayes.packing import graph_model, model_graph

    fg, initial_values = model_graph(pm_model)
    # the model's own data (pm.Data: the likelihood statistics, the priors' hyperparameters) are
    # shared variables already: their values travel with the others, their shapes are structure
    names = {v.name for v in pm_model.data_vars}
    data = {v.name: v for v in fg.inputs if isinstance(v, SharedVariable) and v.name in names}
    lifted: dict[int, tuple[str, object]] = {}
    position: dict = {}
    sig = []
    for i, node in enumerate(fg.toposort()):
        ins = []
        for inp in node.inputs:
            if _is_float_constant(inp):
                if id(inp) not in lifted:
                    lifted[id(inp)] = (f"engine__const_{len(lifted)}", inp)
                name, c = lifted[id(inp)]
                ins.append(f"{name}{tuple(np.shape(c.data))}")
            elif isinstance(inp, Constant):
                ins.append(repr(np.asarray(inp.data).tolist()))
            elif inp.name in data and data[inp.name] is inp:
                # the number of dims, not the shape: a compilation serves data of any shape (the
                # did family's grouped statistics have as many rows as the panel has covariance
                # patterns, which differs between placebo panels of one structure)
                ins.append(f"data:{inp.name}[{np.ndim(inp.get_value())}]")
            else:
                ins.append(str(position.get(inp, "input")) + _ADDRESS.sub("", str(inp.type)))
        for j, o in enumerate(node.outputs):
            position[o] = (i, j)
        sig.append(_ADDRESS.sub("", str(node.op)) + "(" + ",".join(ins) + ")")
    sig.append(repr(sorted((k, list(map(str, v))) for k, v in (pm_model.coords or {}).items())))
    signature = hashlib.sha256("\n".join(sig).encode()).hexdigest()
    values = {name: np.asarray(c.data) for name, c in lifted.values()}
    values.update({name: np.asarray(v.get_value()) for name, v in data.items()})
    fg.replace_all([(c, pytensor.shared(np.array(c.data), name=name, shape=c.type.shape))
                    for name, c in lifted.values()], import_missing=True)
    return graph_model(fg, initial_values), signature, values


def compiled_model(pm_model, *, cache_key: str = ""):
    """The nutpie compilation of ``pm_model``, from this process's cache when a model of the same
    structure was compiled before (its data swapped in with ``with_data``). Returns
    ``(compiled, reused)``. ``cache_key`` adds what the graph does not show (the model name)."""
    from .bayes.packing import compile_pymc

    lifted, signature, values = lift_constants(pm_model)
    key = f"{cache_key}:{signature}"
    cache = _STATE["compiled"]
    if key in cache:
        _STATE["reuses"] += 1
        from .bayes.refit import with_data  # data the compiled functions do not read is left out

        return with_data(cache[key], values), True
    compiled = compile_pymc(lifted)
    cache[key] = compiled
    _STATE["compilations"] += 1
    log.info("compiled a model (structure %s); %d in this process's cache", signature[:8], len(cache))
    return compiled, False


def clear_cache() -> None:
    """Forget this process's compiled models and shared data (tests)."""
    _STATE["compiled"].clear()
    _STATE["shared"].clear()


def cache_stats() -> dict:
    return {"compilations": _STATE["compilations"], "reuses": _STATE["reuses"],
            "cached": len(_STATE["compiled"])}


# ---- one PyTensor compile directory per worker process ----------------------------------------

_LOCK_FD: list = []


def compiledir_base() -> Path:
    base = os.environ.get(COMPILEDIR_ENV)
    if base:
        return Path(base)
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001
        user = str(os.getuid())
    return Path(tempfile.gettempdir()) / f"bayes-nqp-pytensor-{user}"


def claim_compiledir(base: Path | None = None) -> Path:
    """Lock the first free ``slot-K`` under ``base`` for this process and point PyTensor at it
    (through ``PYTENSOR_FLAGS``; effective when PyTensor is imported afterwards)."""
    import fcntl

    if _LOCK_FD:
        return Path(_LOCK_FD[0][1])
    base = Path(base or compiledir_base())
    base.mkdir(parents=True, exist_ok=True)
    for k in range(4096):
        slot = base / f"slot-{k}"
        fd = os.open(base / f"slot-{k}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _LOCK_FD.append((fd, str(slot)))  # held until the process ends
        if not (slot.exists() and any(slot.iterdir())):
            _seed_slot(base, slot)
        flags = [f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",")
                 if f and not f.strip().startswith(("compiledir=", "base_compiledir="))]
        # base_compiledir too: PyTensor's numba cache lives under it
        os.environ["PYTENSOR_FLAGS"] = ",".join([*flags, f"base_compiledir={slot}",
                                                 f"compiledir={slot / 'c'}"])
        return slot
    raise EngineError(f"no free PyTensor compile directory under {base}")


def _seed_slot(base: Path, slot: Path) -> None:
    """Start an empty slot as a copy of the most recently used *idle* slot (its lock taken for the
    copy, so no process writes to it meanwhile), or of ``BAYES_NQP_COMPILEDIR_SEED`` (a compile
    directory the user vouches is idle). A worker then starts with the other's PyTensor C modules
    and numba cache: measured on this machine (shared, load ≈ 17), compiling the did model took
    437 s in an empty directory and 162 s in a copy of a warm one. ``BAYES_NQP_COMPILEDIR_SEED=0``
    turns seeding off. Any failure leaves the slot empty (it then compiles from scratch)."""
    import fcntl
    import shutil

    seed = os.environ.get(COMPILEDIR_SEED_ENV)
    if seed == "0":
        return
    candidates = []
    if seed:
        candidates.append((None, Path(seed)))
    else:
        others = [p for p in base.glob("slot-*") if p.is_dir() and p != slot and any(p.iterdir())]
        for p in sorted(others, key=lambda p: p.stat().st_mtime, reverse=True):
            candidates.append((base / f"{p.name}.lock", p))
    for lock, src in candidates:
        fd = None
        try:
            if lock is not None:
                fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # busy: try the next one
            tmp = Path(tempfile.mkdtemp(prefix=f".{slot.name}-", dir=base))
            shutil.copytree(src, tmp / "copy", symlinks=True,
                            ignore=shutil.ignore_patterns("lock_dir", "*.lock"))
            if slot.exists():
                slot.rmdir()  # empty (checked by the caller; ours under the lock)
            os.replace(tmp / "copy", slot)
            tmp.rmdir()
            log.info("compile directory %s seeded from %s", slot, src)
            return
        except OSError as exc:
            log.debug("could not seed %s from %s: %s", slot, src, exc)
        finally:
            if fd is not None:
                os.close(fd)


class CompileDirPlugin(WorkerPlugin):
    """A Dask worker plugin: each worker process claims its own PyTensor compile directory
    before any task imports PyTensor."""

    name = "bayes-nqp-compiledir"

    def __init__(self, base: str | None = None):
        self.base = base

    def setup(self, worker):
        import sys

        if "pytensor" in sys.modules:
            log.warning("worker %s imported PyTensor before its compile directory was set; it "
                        "uses %s", worker.name, _compiledir())
            return
        claim_compiledir(Path(self.base) if self.base else None)

    def teardown(self, worker):
        pass


# ---- running ----------------------------------------------------------------------------------

def resolve_scheduler(scheduler: str | None) -> str | None:
    return scheduler or os.environ.get(SCHEDULER_ENV) or None


def run_tasks(tasks: Iterable[Task], out: str | Path, *, shared=None, workers: int | None = None,
              scheduler: str | None = None, progress: Callable[[Progress], None] | None = None,
              on_cluster: Callable[[str | None], None] | None = None,
              retries: int = RETRIES, on_result: Callable[[Task, dict], None] | None = None,
              events: tuple[str, Callable[[dict], None]] | None = None,
              own_compiledirs: bool = True) -> RunResult:
    """Run ``tasks`` (see the module docstring), writing ``out/tasks/<key>.json`` as each finishes.

    ``workers``: size of the embedded LocalCluster (default: the number of cores); 1 runs in this
    process. ``scheduler``: address of an existing Dask scheduler (default: the environment
    variable ``BAYES_NQP_SCHEDULER``; ``False``: never one, the tasks write where this process
    does); overrides ``workers``. ``progress``: called with a :class:`Progress` after every
    change. ``on_cluster``: called once with the dashboard address when a cluster is used.
    ``on_result``: called with each task and its result as it is recorded. ``events``: a
    ``(topic, handler)`` pair: what a task sends with :func:`send_event` reaches ``handler``
    (on the cluster, through Dask's event log; in this process, directly). ``own_compiledirs``:
    False lets an embedded cluster's workers share this process's PyTensor compile directory and
    its warm numba cache (a few workers, each compiling a different model, as ``bayes-nqp run``
    does; PyTensor locks its C cache and numba writes its cache files atomically) instead of a
    slot each (:class:`CompileDirPlugin`; for many workers refitting one model).
    """
    t0 = time.perf_counter()
    tasks = list(tasks)
    out = Path(out)
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise EngineError("two tasks have the same key; give each replicate its own inputs")
    results: dict[str, dict] = {}
    for t in tasks:
        r = _finished(out, t.key)
        if r is not None:
            results[t.key] = r
    state = Progress(total=len(tasks), reused=len(results))
    todo = [t for t in tasks if t.key not in results]
    scheduler = None if scheduler is False else resolve_scheduler(scheduler)
    n_workers = workers or os.cpu_count() or 1

    def tick():
        state.elapsed = time.perf_counter() - t0
        if progress is not None:
            progress(state)

    def record(task: Task, res: dict) -> None:
        res = {**res, "key": task.key, "fn": task.fn, "kwargs": jsonable(task.kwargs)}
        write_json(_result_path(out, task.key), res)
        results[task.key] = res
        if res.get("status") == "ok":
            state.done += 1
        else:
            state.failed += 1
        if on_result is not None:
            on_result(task, res)

    tick()
    dashboard = None
    if not todo:
        engine = "scheduler" if scheduler else ("in-process" if n_workers == 1 else "local-cluster")
    elif scheduler is None and n_workers == 1:
        engine = "in-process"
        _EVENTS.update(dict([events]) if events else {})
        for t in todo:
            state.running = 1
            tick()
            res, err = None, None
            for _ in range(retries + 1):
                try:
                    res = execute(t.fn, shared, t.kwargs)
                    break
                except Exception as exc:  # recorded, retried once
                    err = _error(exc)
            state.running = 0
            record(t, res if res is not None else {"status": "error", "error": err})
            tick()
        if events:
            _EVENTS.pop(events[0], None)
    else:
        engine = "scheduler" if scheduler else "local-cluster"
        with _client(scheduler, n_workers, own_compiledirs=own_compiledirs) as client:
            dashboard = client.dashboard_link
            if on_cluster is not None:
                on_cluster(dashboard)
            n_workers = len(client.scheduler_info(n_workers=-1).get("workers", {})) or n_workers
            if events:
                topic, handler = events
                client.subscribe_topic(topic, lambda ev: handler(ev[1]))
            _run_distributed(client, todo, shared, retries, state, record, tick, n_workers)
    errors = {k: r.get("error", "") for k, r in results.items() if r.get("status") != "ok"}
    return RunResult(done=state.done, reused=state.reused, failed=state.failed,
                     results=[results[k] for k in keys if k in results],
                     seconds=time.perf_counter() - t0, engine=engine, workers=n_workers,
                     dashboard=dashboard, errors=errors)


#: in-process event handlers by topic (``run_tasks(events=...)`` with ``workers=1``)
_EVENTS: dict[str, Callable[[dict], None]] = {}


def event_sender(topic: str) -> Callable[[dict], None]:
    """Inside a task: a function that sends a small JSON-able ``msg`` to the ``events`` handler of
    the :func:`run_tasks` running the task (on a cluster through Dask's event log, in this
    process directly). Made on the task's own thread, it may be called from any thread (nutpie
    reports progress from its own). It never raises: progress must not stop a fit."""
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:  # not on a worker: this process's own run_tasks
        worker = None

    def send(msg: dict) -> None:
        try:
            if worker is not None:
                worker.log_event(topic, msg)
            elif topic in _EVENTS:
                _EVENTS[topic](msg)
        except Exception as exc:
            log.debug("event %s not sent: %s", topic, exc)

    return send


def _error(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip() + "\n" + \
        "".join(traceback.format_tb(exc.__traceback__)[-3:])


@contextlib.contextmanager
def _client(scheduler: str | None, n_workers: int, own_compiledirs: bool = True):
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise EngineError(f"no Dask scheduler answers at {scheduler}: {exc}") from exc
        try:
            client.register_plugin(CompileDirPlugin(), name=CompileDirPlugin.name)
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.WARNING)
    try:
        client = Client(cluster)
        try:
            if own_compiledirs:
                client.register_plugin(CompileDirPlugin(), name=CompileDirPlugin.name)
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _run_distributed(client, todo, shared, retries, state, record, tick, n_workers) -> None:
    from distributed import as_completed

    if shared is not None:
        blob = _Pickled(pickle.dumps(shared, protocol=5))
        shared_f = client.scatter(blob, broadcast=True, hash=True)
    else:
        shared_f = None
    by_future = {}
    for t in todo:
        f = client.submit(execute, t.fn, shared_f, t.kwargs, key=f"bayes-nqp-{t.key}",
                          retries=retries, pure=False)
        by_future[f] = t
    pending = len(by_future)
    state.running = min(n_workers, pending)
    tick()
    for f in as_completed(list(by_future)):
        t = by_future[f]
        if f.status == "finished":
            res = f.result()
        else:
            try:
                exc = f.exception()
            except BaseException as cancelled:  # a cancelled future has no exception to give
                exc = cancelled
            res = {"status": "error", "error": _error(exc) if exc else "the task was cancelled"}
        pending -= 1
        state.running = min(n_workers, pending)
        record(t, res)
        f.release()
        tick()
