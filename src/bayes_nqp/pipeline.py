"""The one-command reanalysis (``bayes-nqp run``): every stage, in order, into one folder.

    data check → frequentist replication → each Bayesian model (the registry's order), each
    followed by its further fits (registry ``stages``: the threshold model's LOO comparison of
    0, 1 and 2 thresholds) → diagnostics → Bayesian-vs-frequentist comparison → prior
    sensitivity of the key estimands → report

What to know first: ``DIR/manifest.json`` is rewritten (atomically) whenever a stage starts or
ends, so at any moment it says which stages are done, skipped (with the reason: a role the column
map lacks), failed (with the message), interrupted or not started, with their seconds and the
paths they wrote. A stage that cannot run on this data is skipped, one that errors is recorded as
failed, and the run goes on; only a KeyboardInterrupt (or :class:`~.errors.Interrupted`, from
SIGINT or SIGTERM, see :mod:`.guard`) stops it — the stage in progress is marked ``interrupted``
(with the signal), this process's temporary files are removed, the manifest is written and the
interrupt is re-raised. A signal whose exception a library swallowed is re-raised at the stage's
end. The run holds the folder's lock (:func:`.guard.folder_lock`) throughout. Every result file is written by temp-file-and-rename, and each result folder's
``summary.json`` is written last, so an interrupted run leaves complete earlier results only.

The library does not print: ``progress`` (a callable taking an :class:`Event`) is how a caller
(the CLI) hears of stages starting and ending and of sampling progress (nutpie's per-chain
progress, summed into draws done / draws total; it arrives from a background thread).

Which fits count: the exit status (:attr:`RunResult.exit_code`) is 3 when a main fit failed its
diagnostic gates or a model failed with an error; the refits of the prior-sensitivity stage are
shown with their own gates in the report but do not set the exit status.
"""

from __future__ import annotations

import inspect
import logging
import os
import platform
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd

from . import registry
from .errors import DataError, Interrupted, ModelError, SectionSkipped
from .guard import (check_interrupt, folder_lock, received, remove_dead_temporaries,
                    remove_own_temporaries, shielded)
from .contract import stage_record
from .provenance import versions
from .paths import output_root, safe_filename
from .results import SIMULATED_NOTICE, read_json, save_table, write_atomic, write_json

log = logging.getLogger(__name__)

PRIOR_SETS = ("default", "weak", "skeptical")
#: replication options of ``--quick``: fewer bootstrap and placebo replications
QUICK_REPLICATION = {"mediation": {"reps": 49}, "placebo": {"draws": 99}, "threshold": {"n_boot": 49}}
#: replication sections that take a seed (the run's ``seed`` is passed to them)
SEEDED_SECTIONS = ("mediation", "placebo", "threshold")
STATUSES = ("not started", "running", "done", "skipped", "failed", "interrupted")
EXIT_GATES = 3
#: the environment variable that sets the default number of parallel model fits of a run
WORKERS_ENV = "BAYES_NQP_WORKERS"


@dataclass(frozen=True)
class Event:
    """A progress report. ``kind``: "start", "end", "draws" (sampling) or "section" (a
    replication section finished)."""

    kind: str
    stage: str
    label: str = ""
    status: str | None = None
    seconds: float | None = None
    message: str | None = None
    done: int | None = None
    total: int | None = None
    passed: bool | None = None


@dataclass
class RunResult:
    out: Path
    manifest: dict

    @property
    def stages(self) -> dict:
        return self.manifest["stages"]

    @property
    def gates_failed(self) -> list[str]:
        """Models whose main fit failed its diagnostic gates."""
        return [k.split(":", 1)[1] for k, s in self.stages.items()
                if k.startswith("fit:") and s.get("passed") is False]

    @property
    def failed(self) -> list[str]:
        return [k for k, s in self.stages.items() if s["status"] == "failed"]

    @property
    def exit_code(self) -> int:
        fits_failed = [k for k in self.failed if k.startswith("fit:")]
        return EXIT_GATES if (self.gates_failed or fits_failed) else 0

    def written(self) -> list[dict]:
        """One row per stage: status, seconds, where it wrote (its main path), the reason."""
        return [{"stage": k, "status": s["status"], "seconds": s.get("seconds"),
                 "where": s.get("dest"), "note": s.get("reason") or s.get("error")
                 or ("failed its diagnostic gates" if s.get("passed") is False else None)}
                for k, s in self.stages.items()]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Run:
    """The manifest and the stage bookkeeping of one run."""

    def __init__(self, out: Path, progress: Callable[[Event], None] | None, *, keep: bool = True):
        self.out = out
        self.progress = progress or (lambda e: None)
        #: None: the bookkeeping of a parallel run's worker, which the parent's manifest merges
        self.path = out / "manifest.json" if keep else None
        self.manifest: dict = {}
        self.t0 = time.perf_counter()

    def emit(self, event: Event) -> None:
        try:
            self.progress(event)
        except Exception as exc:  # a broken display must not stop the analysis
            log.warning("progress callback failed: %s", exc)

    def save(self) -> None:
        if self.path is None:
            return
        self.manifest["seconds"] = time.perf_counter() - self.t0
        write_json(self.path, self.manifest)

    def plan(self, stages: list[str]) -> None:
        self.manifest["stages"] = {s: {"status": "not started", "seconds": None, "paths": []}
                                   for s in stages}

    def interrupted(self, exc: BaseException, stopped_at: str, *, stages=(),
                    dead_workers: bool = False) -> None:
        """The one bookkeeping of an interrupt: mark ``stages`` and the run ``interrupted`` (with
        where it stopped, the signal and the exit code), remove this run's temporaries (and, after
        a closed cluster, its dead workers' too) and save the manifest — shielded from a second
        signal, which must not cut the clean-up short."""
        with shielded():
            for k in stages:
                self.manifest["stages"][k]["status"] = "interrupted"
            self.manifest.update(status="interrupted", stopped_at=stopped_at, finished=_now(),
                                 signal=getattr(exc, "signal_name", "SIGINT"),
                                 exit_code=getattr(exc, "exit_code", 130))
            if dead_workers:
                remove_dead_temporaries(self.out)
            _remove_temporaries(self.out)
            self.save()

    @contextmanager
    def stage(self, name: str, label: str):
        st = self.manifest["stages"][name]
        st.update(status="running", started=_now())
        self.save()
        self.emit(Event("start", name, label))
        rec = _Record()
        t0 = time.perf_counter()
        try:
            try:
                yield rec
            except Exception as exc:  # a library that turned the interrupt into an error
                if received() is not None:
                    raise Interrupted(received(), f"interrupted during {name}") from exc
                raise
            # a signal whose exception was swallowed (nutpie, a finalizer, a library's except)
            check_interrupt(f"during {name}")
        except SectionSkipped as exc:
            st.update(status="skipped", reason=str(exc))
        except KeyboardInterrupt as exc:
            st.update(seconds=time.perf_counter() - t0, paths=rec.existing())
            self.interrupted(exc, name, stages=[name])
            self.emit(Event("end", name, label, "interrupted", st["seconds"]))
            raise
        except Exception as exc:  # recorded, and the run goes on with the next stage
            log.exception("stage %s failed", name)
            st.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        else:
            st["status"] = "done"
        st["seconds"] = time.perf_counter() - t0
        st["paths"] = rec.existing()
        if rec.dest is not None:
            st["dest"] = str(rec.dest)
        st.update(rec.extra)
        self.save()
        self.emit(Event("end", name, label, st["status"], st["seconds"],
                        message=st.get("reason") or st.get("error"), passed=st.get("passed")))


@dataclass
class _Record:
    """What a stage reports back: where it wrote and anything else for the manifest."""

    paths: list = field(default_factory=list)
    dest: Path | None = None
    extra: dict = field(default_factory=dict)

    def add(self, *paths) -> None:
        for p in paths:
            p = Path(p)
            if p.is_dir():
                self.paths.extend(sorted(x for x in p.rglob("*") if x.is_file() and not x.name.startswith(".")))
            else:
                self.paths.append(p)

    def existing(self) -> list[str]:
        return [str(p) for p in dict.fromkeys(self.paths) if Path(p).exists()]


def _remove_temporaries(out: Path) -> None:
    """Delete the hidden ``.<name>.<pid>-*.tmp`` files an interrupted atomic write of this
    process may leave (another run's temporaries are not touched)."""
    remove_own_temporaries(out)


def _section_options(options: dict) -> dict:
    """Keep only the options each replication section accepts (by its signature)."""
    from .frequentist import SECTIONS

    out = {}
    for name, opts in options.items():
        fn = SECTIONS.get(name)
        if fn is None:
            continue
        params = inspect.signature(fn).parameters
        keep = {k: v for k, v in opts.items() if k in params}
        dropped = sorted(set(opts) - set(keep))
        if dropped:
            log.warning("replication section %s takes no option(s) %s; ignored", name, dropped)
        out[name] = keep
    return out


def replication_options(quick: bool, seed: int | None, extra: dict | None = None) -> dict:
    opts: dict = {k: dict(v) for k, v in QUICK_REPLICATION.items()} if quick else {}
    if seed is not None:
        for s in SEEDED_SECTIONS:
            opts.setdefault(s, {})["seed"] = int(seed)
    for s, o in (extra or {}).items():
        opts.setdefault(s, {}).update(o)
    return _section_options(opts)


def describe(panel) -> dict[str, pd.DataFrame]:
    """The data summary tables: the variables by role, and the adoption cohorts."""
    df = panel.df
    roles = [("y", "outcome")] + [(c, "control") for c in panel.controls] + \
        [(c, "mediator") for c in panel.mediators]
    if panel.threshold:
        roles.append((panel.threshold, "threshold"))
    rows = []
    name = panel.cmap.outcome or "y"
    for col, role in roles:
        if col not in df:
            continue
        x = df[col].astype(float)
        rows.append({"variable": name if col == "y" else col, "role": role, "n": int(x.notna().sum()),
                     "mean": x.mean(), "sd": x.std(), "min": x.min(), "max": x.max()})
    tables = {"variables": pd.DataFrame(rows)}
    if "cohort" in df:
        units = df.groupby("unit_idx")["cohort"].first()
        coh = units.fillna(-1).value_counts().sort_index()
        tables["cohorts"] = pd.DataFrame(
            {"first treated": ["never" if k == -1 else (int(k) if float(k).is_integer() else k) for k in coh.index],
             "units": coh.to_numpy()})
    for g, col in panel.groups.items():
        if col in df:
            n = df.groupby(col)["unit_idx"].nunique()
            tables[f"group_{safe_filename(g)}"] = pd.DataFrame({g: n.index.astype(str), "units": n.to_numpy()})
    return tables


def run(panel, out: str | Path = "reports", *, quick: bool = False, seed: int | None = None,
        progress: Callable[[Event], None] | None = None, models=None, prior_sets=PRIOR_SETS,
        sensitivity_models=None, sampler: dict | None = None,
        replication: dict | None = None, report: bool = True, multiverse=None,
        claims=None, workers: int | None = None) -> RunResult:
    """Run the whole reanalysis of ``panel`` into ``out``; returns a :class:`RunResult`.

    ``quick``: the specs' [quick] sampler settings and fewer bootstrap/placebo replications.
    ``seed``: one seed for every sampler and every seeded replication section (default: the
    specs' and sections' own). ``models``: a subset of the registered models (default all, see
    :mod:`.registry`); ``sensitivity_models`` (default: those whose spec says ``sensitivity =
    true``) and ``prior_sets``: what the sensitivity stage refits. ``sampler``: overrides of the sampler
    settings (draws, tune, chains, cores, target_accept) for every fit; ``replication``: options
    per replication section (``{"placebo": {"draws": 50}}``). ``multiverse``: True or the options
    of :func:`.spec_curve.multiverse` adds the multiverse stage (off by default). ``claims``: a
    claims file (TOML, :mod:`.report.claims`) the report judges, copied to DIR/claims.toml
    (default: the standard claims worded from the column map). ``workers``: fit the models in
    parallel on a LocalCluster of that many processes (:mod:`.engine`; each model's fit, its
    further fits and its sensitivity refits are one task; per-draw progress then comes from the
    workers); 1 fits them one after another in this process. Default: the environment variable
    ``BAYES_NQP_WORKERS``, else the number of cores. The numbers do not depend on it. Raises DataError for a panel that
    cannot be analysed at all and ModelError for an unknown model name; everything else is
    recorded in the manifest.
    """
    order = registry.names()
    out = Path(out)
    if panel.df.empty or not panel.report.ok:
        raise DataError("the panel did not pass validation; run `bayes-nqp check-data` for the list",
                        report=panel.report)
    try:
        panel.require("outcome", "treatment", what="the reanalysis")
    except SectionSkipped as exc:
        raise DataError(str(exc)) from exc
    models = list(order if models is None else models)
    unknown = [m for m in models if m not in order]
    if unknown:
        raise ModelError(f"unknown model(s) {unknown}; choose from {', '.join(order)}")
    if sensitivity_models is None:
        sensitivity_models = registry.sensitivity_models()
    sens = [m for m in sensitivity_models if m in models] if prior_sets else []
    sampler = {k: v for k, v in (sampler or {}).items() if v is not None}
    from .bayes.spec import SamplerSettings  # refuse draws=0, seed=-1, ... before any stage
    SamplerSettings().override(**sampler, **({} if seed is None else {"seed": seed}))

    claims_text = None
    if claims is not None:  # checked before any stage, saved with the results
        from .report.claims import load_claims

        load_claims(claims)
        claims_text = Path(claims).read_text(encoding="utf-8")

    workers = resolve_workers(workers)
    with folder_lock(out, command="bayes-nqp run"):  # one run per folder; refuses an unwritable one
        return _locked_run(panel, out, progress, quick=quick, seed=seed, models=models,
                           prior_sets=prior_sets, sens=sens, sampler=sampler,
                           replication=replication, report=report,
                           multiverse=multiverse, claims=claims, claims_text=claims_text,
                           workers=workers)


def resolve_workers(workers: int | None) -> int:
    """``workers``, else ``BAYES_NQP_WORKERS``, else the number of cores; at least 1."""
    if workers is None:
        env = os.environ.get(WORKERS_ENV, "").strip()
        try:
            workers = int(env) if env else (os.cpu_count() or 1)
        except ValueError:
            raise DataError(f"{WORKERS_ENV}={env!r} is not a number of workers") from None
    if int(workers) < 1:
        raise DataError(f"workers must be at least 1, not {workers}")
    return int(workers)


def _locked_run(panel, out: Path, progress, *, quick, seed, models, prior_sets, sens, sampler,
                replication, report, multiverse, claims, claims_text, workers) -> RunResult:
    r = _Run(out, progress)
    r.manifest = {
        "status": "running", "started": _now(), "finished": None, "stopped_at": None,
        "out": str(out),
        "options": {"quick": quick, "seed": seed, "models": models, "prior_sets": list(prior_sets),
                    "sensitivity_models": sens, "sampler": sampler, "replication": replication or {},
                    "multiverse": multiverse if isinstance(multiverse, dict) else bool(multiverse),
                    "claims": None if claims is None else str(claims), "workers": workers},
        "data": panel.data_block(),
        "map": panel.cmap.to_dict(),
        "versions": versions(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or None},
        "seeds": {"run": seed},
        "specs": {},
        "prior_sets": {},
    }
    if panel.simulated:
        r.manifest["notice"] = SIMULATED_NOTICE
    r.plan(["data", "replication", *[st for m in models for st in model_stages(m)], "diagnostics",
            "comparison", *[f"sensitivity:{m}" for m in sens], *(["multiverse"] if multiverse else []),
            *(["report"] if report else [])])
    r.save()
    if claims_text is not None:
        with output_root(out):
            write_atomic(out / "claims.toml", claims_text)
    elif (out / "claims.toml").exists():  # an earlier run's claims are not this run's
        (out / "claims.toml").unlink()

    try:
        with output_root(out):
            _stages(r, panel, out, quick=quick, seed=seed, models=models, prior_sets=prior_sets,
                    sens=sens, sampler=sampler, replication=replication, report=report,
                    multiverse=multiverse, workers=workers)
            check_interrupt("at the end of the run")
    except KeyboardInterrupt as exc:
        if r.manifest.get("status") != "interrupted":  # between two stages
            started = [k for k, v in r.manifest["stages"].items() if v["status"] != "not started"]
            r.interrupted(exc, f"after {started[-1]}" if started else "before the first stage")
        raise
    r.manifest["finished"] = _now()
    r.manifest["exit_code"] = RunResult(out, r.manifest).exit_code
    r.save()
    return RunResult(out, r.manifest)


def _stages(r: _Run, panel, out: Path, *, quick, seed, models, prior_sets, sens, sampler,
            replication, report, multiverse=None, workers: int = 1) -> None:
    """The stages of :func:`run`, in order; each records itself in the manifest."""
    # ---- data ---------------------------------------------------------------------------
    with r.stage("data", "checking the data") as rec:
        tables = describe(panel)
        for name, tbl in tables.items():
            rec.add(*save_table(tbl, out / "data" / name, simulated=panel.simulated))
        rep = panel.report
        summary = {**panel.data_block(), "map": panel.cmap.to_dict(),
                   "balanced": panel.balanced, "n_periods": panel.n_periods,
                   "warnings": [p.message for p in rep.warnings][:50],
                   "n_warnings": len(rep.warnings), "tables": sorted(tables)}
        if panel.simulated:
            summary["notice"] = SIMULATED_NOTICE
        rec.add(write_json(out / "data" / "summary.json", summary))
        rec.dest = out / "data"

    # ---- frequentist replication ------------------------------------------------------
    rep_summary = None
    with r.stage("replication", "frequentist replication") as rec:
        from .frequentist import replicate_to_dir

        opts = replication_options(quick, seed, replication)
        r.manifest["seeds"]["replication"] = {k: v["seed"] for k, v in opts.items() if "seed" in v}
        sections: dict = {}
        rec.extra["sections"] = sections
        rec.extra["options"] = opts

        def section_done(name, secs, res):
            skipped = isinstance(res, str)
            sections[name] = {"status": "skipped" if skipped else "done", "seconds": secs,
                              **({"reason": res} if skipped else {})}
            r.emit(Event("section", "replication", name, sections[name]["status"], secs,
                         message=res if skipped else None))

        rep_summary = replicate_to_dir("all", panel, out, progress=section_done, **opts)
        rec.add(out / "replication")
        rec.dest = out / "replication" / "summary.json"

    # ---- Bayesian models (with their prior-sensitivity refits) ------------------------------
    from .bayes.spec import load_prior_set

    for ps in prior_sets:
        try:
            p = load_prior_set(ps)
            r.manifest["prior_sets"][p.name] = p.to_dict()["contents"]
        except Exception as exc:  # a bad set is reported by the stages that use it
            r.manifest["prior_sets"][str(ps)] = {"error": str(exc)}
    opts = dict(quick=quick, seed=seed, sampler=sampler, prior_sets=prior_sets)
    parallel = workers > 1 and len(models) > 1
    fits: dict = {}
    if parallel:  # each worker runs a model's sensitivity stage right after its fit
        _parallel_models(r, panel, out, models, sens, workers, replicated=rep_summary is not None, **opts)
    else:
        for name in models:
            fits[name] = _fit_stage(r, panel, out, name, replication=rep_summary if rep_summary is not None
                                    else False, keep_compiled=name in sens, **opts)
            _further_stages(r, panel, out, name, fits[name])
    fitted = [m for m in models if r.manifest["stages"][f"fit:{m}"]["status"] == "done"]
    ps_default = load_prior_set("default")
    r.manifest["prior_sets"]["default"] = ps_default.to_dict()["contents"]

    # ---- diagnostics and comparison, collated over the models --------------------------
    from .report.tables import comparison_table, diagnostics_table

    with r.stage("diagnostics", "collating diagnostics") as rec:
        tbl = diagnostics_table(out, models=fitted, data=panel.data_block())
        if tbl.empty:
            raise SectionSkipped("no Bayesian fit completed")
        rec.add(*save_table(tbl, out / "diagnostics", simulated=panel.simulated))
        rec.extra["flagged"] = tbl.loc[~tbl["passed"].astype(bool), "model"].tolist()
        rec.dest = out / "diagnostics.md"

    with r.stage("comparison", "Bayesian vs frequentist") as rec:
        tbl = comparison_table(out, models=fitted, data=panel.data_block())
        if tbl.empty:
            raise SectionSkipped("no fit has a frequentist counterpart to compare with "
                                 "(replication missing or no model completed)")
        rec.add(*save_table(tbl, out / "comparison", simulated=panel.simulated))
        rec.dest = out / "comparison.md"

    # ---- prior sensitivity (in this process; a parallel run did it with each fit) -------------
    if not parallel:
        for name in sens:
            _sensitivity_stage(r, panel, out, name, fits.get(name), **opts)

    # ---- multiverse of specifications (optional) -----------------------------------------
    if multiverse:
        with r.stage("multiverse", "multiverse of specifications") as rec:
            from .spec_curve import multiverse as _multiverse

            opts = {} if multiverse is True else dict(multiverse)
            opts.setdefault("seed", 0 if seed is None else seed)
            if quick:
                opts.setdefault("priors", ("default",))
            res = _multiverse(panel, out=out, **opts)
            rec.add(out / "multiverse" / "summary.json", out / "multiverse" / "figures" / "spec_curve.png")
            rec.dest = out / "multiverse"
            rec.extra.update(n_specs=res.summary["n_specs"], failed_specs=len(res.summary["failed"]),
                             share_positive=res.summary["share_positive"])

    # ---- report --------------------------------------------------------------------------
    r.manifest.update(status="done", finished=_now())
    if report:
        with r.stage("report", "writing the report") as rec:
            from .report import build_report

            rec.add(*build_report(out).values())
            rec.dest = out / "report.html"


def _fit_stage(r: _Run, panel, out: Path, name: str, *, quick, seed, sampler, replication,
               keep_compiled: bool, prior_sets=()):
    """The stage ``fit:<name>``: fit, save under DIR/<name>/, record; returns the Fit or None."""
    stage = f"fit:{name}"
    with r.stage(stage, f"fitting {name}") as rec:
        f = fit_model(name, panel, quick=quick, seed=seed, replication=replication,
                      progress=_draws(r, stage), keep_compiled=keep_compiled, **sampler)
        rec.add(f.save(out / name))
        rec.dest = out / name
        rec.extra.update(passed=f.passed, failures=f.diag.get("failures", []),
                         warnings=f.diag.get("warnings", []),
                         sampler=dict(f.sampler.__dict__), fit_seconds=f.seconds)
        r.manifest["specs"][name] = f.spec.to_dict()
        r.manifest["seeds"][name] = f.sampler.seed
        return f
    return None


def model_stages(name: str) -> list[str]:
    """The stages of one model's main fit: ``fit:<name>``, then ``<key>:<name>`` for each of its
    further fits (registry ``stages``)."""
    return [f"fit:{name}", *(f"{key}:{name}" for key, _ in registry.info(name).stages)]


def _fit_missing(r: _Run, name: str) -> None:
    """Skip a stage that needs the main fit of ``name``, which did not complete (with its reason)."""
    st = r.manifest["stages"][f"fit:{name}"]
    why = st.get("reason") or st.get("error")
    raise SectionSkipped(f"the {name} fit did not complete ({st['status']}" + (f": {why})" if why else ")"))


def _further_stages(r: _Run, panel, out: Path, name: str, fit) -> None:
    """The stages ``<key>:<name>`` of the model's further fits (registry ``stages``): each is
    its declared function of the main ``fit`` and the panel, saved as DIR/<name>/<key>.json with
    the identity of the fit it was made for (:func:`.contract.stage_record`)."""
    for key, target in registry.info(name).stages:
        dest = out / name / f"{key}.json"
        with r.stage(f"{key}:{name}", f"{key.replace('_', ' ')} ({name})") as rec:
            dest.unlink(missing_ok=True)  # an earlier run's result is not this run's
            if fit is None:
                _fit_missing(r, name)
            res = registry.stage_function(target)(fit, panel)
            rec.add(write_json(dest, stage_record(fit.summary_json(), key, res.to_json())))
            rec.dest = dest


def _sensitivity_stage(r: _Run, panel, out: Path, name: str, base, *, quick, seed, sampler,
                       prior_sets) -> None:
    """The stage ``sensitivity:<name>``: refit ``base`` (its compiled model) under each prior set."""
    stage = f"sensitivity:{name}"
    with r.stage(stage, f"prior sensitivity of {name}") as rec:
        if base is None:
            _fit_missing(r, name)
        res = sensitivity_model(name, panel, prior_sets, quick=quick, seed=seed, base=base,
                                sampler_progress=_draws(r, stage), **sampler)
        rec.add(res.save(out / "sensitivity" / name))
        rec.dest = out / "sensitivity" / name
        rec.extra.update(compilations=res.compilations, reused_compiled=res.reused,
                         passed={k: f.passed for k, f in res.fits.items()},
                         stability=res.stability())
        base.compiled_ = None  # free the compiled model once its refits are done


#: the Dask event topic on which a parallel run's workers report their stages' progress
EVENT_TOPIC = "bayes-nqp-run"


def model_task(panel, *, name: str, out: str, sensitivity: bool, replicated: bool, topic: str,
               **opts) -> dict:
    """One model of a parallel run, on a worker: its fit, its further fits (registry ``stages``)
    and its prior-sensitivity refits (which reuse the fit's compiled model, so they go together),
    with the same stage bookkeeping as the in-process run. Returns the stages' manifest entries, the spec and the seed; the progress
    events travel to the parent through :func:`.engine.event_sender`."""
    from .engine import event_sender

    out = Path(out)
    send = event_sender(topic)

    def relay(e: Event) -> None:
        send({k: v for k, v in e.__dict__.items() if v is not None})

    r = _Run(out, relay, keep=False)
    r.manifest = {"stages": {}, "specs": {}, "seeds": {}}
    r.plan([*model_stages(name), *([f"sensitivity:{name}"] if sensitivity else [])])
    rep_path = out / "replication" / "summary.json"
    replication = read_json(rep_path) if replicated and rep_path.exists() else False
    with output_root(out):
        f = _fit_stage(r, panel, out, name, replication=replication, keep_compiled=sensitivity, **opts)
        _further_stages(r, panel, out, name, f)
        if sensitivity:
            _sensitivity_stage(r, panel, out, name, f, **opts)
    return {"status": "ok", "stages": r.manifest["stages"], "specs": r.manifest["specs"],
            "seeds": r.manifest["seeds"]}


def _parallel_models(r: _Run, panel, out: Path, models, sens, workers: int, *, replicated: bool,
                     **opts) -> None:
    """The fit, further-fit and sensitivity stages of every model on a LocalCluster of ``workers``
    processes (:mod:`.engine`), one task per model, the longest-compiling first. The manifest is updated as
    each worker starts and finishes a stage; an interrupt closes the cluster and marks the
    stages then running as interrupted."""
    import shutil
    import tempfile

    from . import engine

    topic = f"{EVENT_TOPIC}-{os.getpid()}-{time.time_ns()}"
    lock = threading.Lock()  # events arrive on Dask's thread, results on this one

    fields = set(Event.__dataclass_fields__)

    def on_event(msg: dict) -> None:
        e = Event(**{k: v for k, v in msg.items() if k in fields})
        if e.kind == "start":
            with lock:
                st = r.manifest["stages"].get(e.stage)
                if st is not None and st["status"] == "not started":
                    st.update(status="running", started=_now())
                    r.save()
        if e.kind != "end":  # the end comes with the task's result (on_result)
            r.emit(e)

    def on_result(task, res: dict) -> None:
        name = task.kwargs["name"]
        if res.get("status") != "ok":  # the worker died or the task raised past the stages
            stages = {f"fit:{name}": {"status": "failed", "seconds": res.get("seconds"), "paths": [],
                                      "error": (res.get("error") or "the task failed").splitlines()[0]}}
        else:
            stages = res["stages"]
            with lock:
                r.manifest["specs"].update(res.get("specs", {}))
                r.manifest["seeds"].update(res.get("seeds", {}))
        with lock:
            for stage, st in stages.items():
                r.manifest["stages"][stage].update(st)
            r.save()
        for stage, st in stages.items():
            r.emit(Event("end", stage, stage, st["status"], st.get("seconds"),
                         message=st.get("reason") or st.get("error"), passed=st.get("passed")))

    tasks = [engine.Task(name, "bayes_nqp.pipeline:model_task",
                         {"name": name, "out": str(out), "sensitivity": name in sens,
                          "replicated": replicated, "topic": topic, **opts})
             for name in models]  # the registry's order: the scheduler starts them in it
    tmp = Path(tempfile.mkdtemp(prefix=f".tasks.{os.getpid()}-", dir=out))  # the engine's, removed
    try:
        engine.run_tasks(tasks, tmp, shared=panel, workers=min(workers, len(tasks)), scheduler=False,
                         retries=0, on_result=on_result, events=(topic, on_event), own_compiledirs=False)
    except KeyboardInterrupt as exc:
        with shielded(), lock:  # the cluster is closed: its workers are gone
            running = [k for k, v in r.manifest["stages"].items() if v["status"] == "running"]
            r.interrupted(exc, ", ".join(running) or "fitting the models", stages=running,
                          dead_workers=True)
            for k in running:
                r.emit(Event("end", k, k, "interrupted"))
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _draws(r: _Run, stage: str):
    """nutpie's per-chain progress → an Event with draws done / total over all chains."""
    def cb(chains):
        done = sum(int(c.finished_draws) for c in chains)
        total = sum(int(c.total_draws) for c in chains)
        r.emit(Event("draws", stage, done=done, total=total))
    return cb


def fit_model(name, panel, **kwargs):
    """The Bayesian fit of one model (bayes.fit); a name of its own so tests can stand in for it."""
    from .bayes.fit import fit

    return fit(name, panel, **kwargs)


def sensitivity_model(name, panel, prior_sets, **kwargs):
    from .bayes.sensitivity import sensitivity

    return sensitivity(name, panel, prior_sets=prior_sets, **kwargs)


def read_manifest(out: str | Path) -> dict | None:
    p = Path(out) / "manifest.json"
    return read_json(p) if p.exists() else None
