"""`bayes-nqp calibrate {placebo,sbc}`: the calibration commands (a typer sub-app registered by
cli.py). Thin: the work is :mod:`bayes_nqp.calibration` on :mod:`bayes_nqp.engine`.

Exit codes: 0 ok, 2 bad input, 3 SBC failed its uniformity test or some replicates failed
(results written all the same), 130 interrupted by SIGINT, 143 by SIGTERM (a rerun with the
same arguments resumes).
"""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import registry
from .errors import BayesNQPError

calibrate_app = typer.Typer(add_completion=False, no_args_is_help=True,
                            help="Calibrate a Bayesian model by many refits: placebo laws, SBC.")
console = Console()
err = Console(stderr=True)

EXIT_BAD_INPUT = 2
EXIT_FAILED = 3
EXIT_INTERRUPTED = 130


class CalModel(str, Enum):
    did = "did"
    heterogeneity = "heterogeneity"
    event_study = "event_study"
    staggered = "staggered"


#: SBC's model choices: the registry's names (every registered model has a simulator; one added
#: from outside without a ``simulate`` is refused with exit 2)
SbcModel = Enum("SbcModel", {n: n for n in registry.names()}, type=str)


class Mode(str, Enum):
    never = "never"
    all = "all"


def _load(data: Optional[Path], cmap: Optional[Path]):
    from .data import load_panel
    from .results import SIMULATED_NOTICE

    try:
        panel = load_panel(data, cmap)
    except BayesNQPError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if panel.simulated:
        console.print(f"[bold yellow]{SIMULATED_NOTICE}[/]")
    return panel


class LiveProgress:
    """A rich ``Progress`` (``self.progress``) shown while the object is used as a context manager:
    the base of the commands' progress displays (``bayes-nqp run``'s stages, the engine's bar)."""

    progress = None

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()
        return False


class _Bar(LiveProgress):
    """One rich bar over the tasks: finished/total, running, failed, elapsed, ETA."""

    def __init__(self, label: str):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[running]} running · {task.fields[failed]} failed"
                                            " · {task.fields[reused]} reused"),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=console)
        self.task = None

    def __call__(self, s) -> None:
        if self.task is None:
            self.task = self.progress.add_task("", total=s.total, running=0, failed=0, reused=0)
        self.progress.update(self.task, completed=s.finished, running=s.running, failed=s.failed,
                             reused=s.reused)

    def dashboard(self, link) -> None:
        if link:
            self.progress.console.print(f"Dask dashboard: {link}")


def _counts(run) -> None:
    t = Table(title=f"tasks ({run.engine}, {run.workers} worker(s), {run.seconds:.1f}s)")
    t.add_column("status")
    t.add_column("tasks", justify="right")
    for row in run.table():
        t.add_row(row["status"], str(row["tasks"]))
    console.print(t)
    for key, e in list(run.errors.items())[:5]:
        err.print(f"[red]failed[/] {key}: {e.splitlines()[0] if e else ''}")


def _calibrate(fn, label: str, data, cmap, **kw):
    """One calibration command: the panel loaded, the run on the engine with its bar, the task
    counts printed. Returns (result, its summary)."""
    res = _run(fn, label, panel=_load(data, cmap), **kw)
    _counts(res.run)
    return res, res.summary


def _run(fn, label: str, **kw):
    logging.captureWarnings(True)
    for name in ("py.warnings", "arviz_stats", "arviz_base", "pymc", "pytensor", "distributed"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from .guard import folder_lock, signals_handled

    try:
        # SIGINT/SIGTERM → Interrupted; the output folder refused before any fit if it cannot
        # be written, and locked against a second run
        with signals_handled(), folder_lock(kw["out"], command=f"bayes-nqp calibrate {label}"):
            with _Bar(label) as bar:
                return fn(progress=bar, on_cluster=bar.dashboard, **kw)
    except BayesNQPError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt as exc:
        err.print(f"[yellow]interrupted[/] ({getattr(exc, 'signal_name', 'SIGINT')}): finished "
                  "replicates are saved; rerun the same command to resume")
        raise typer.Exit(getattr(exc, "exit_code", EXIT_INTERRUPTED))


def _rate(x, ci) -> str:
    if x is None:
        return "—"
    return f"{x:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


DataOpt = typer.Option(None, "--data", help="panel file; default: the bundled demo panel")
MapOpt = typer.Option(None, "--map", help="column map (TOML); default: data/demo_map.toml")
OutOpt = typer.Option(Path("reports"), "--out", help="output folder (writes DIR/calibration/...)")
NOpt = typer.Option(100, "--n", help="number of replicates")
SeedOpt = typer.Option(0, "--seed", help="seed of the replicates")
WorkersOpt = typer.Option(None, "--workers", help="LocalCluster size (default: one per core); 1 = in-process")
SchedOpt = typer.Option(None, "--scheduler", help="address of a running dask scheduler (or env BAYES_NQP_SCHEDULER)")
PriorsOpt = typer.Option("default", "--priors", help="prior set name or TOML file")
DrawsOpt = typer.Option(None, "--draws", help="draws per chain (default 400)")
TuneOpt = typer.Option(None, "--tune", help="tuning steps per chain (default 400)")
ChainsOpt = typer.Option(None, "--chains", help="chains (default 2)")


@calibrate_app.command("placebo")
def placebo_cmd(model: CalModel = typer.Option(CalModel.did, "--model", help="which Bayesian model"),
                n: int = NOpt, data: Optional[Path] = DataOpt, cmap: Optional[Path] = MapOpt,
                out: Path = OutOpt, seed: int = SeedOpt, workers: Optional[int] = WorkersOpt,
                scheduler: Optional[str] = SchedOpt, priors: str = PriorsOpt,
                draws: Optional[int] = DrawsOpt, tune: Optional[int] = TuneOpt,
                chains: Optional[int] = ChainsOpt,
                mode: Mode = typer.Option(Mode.never, "--mode", help="never: placebo on never-treated units; "
                                          "all: every unit, real treatment kept as a control"),
                share: float = typer.Option(0.5, "--share", help="share of the units given a placebo law")):
    """Placebo-law calibration: refit N placebo panels; false-positive rate of the 95% interval
    beside TWFE (iid and unit-clustered SEs) → DIR/calibration/placebo/<model>/summary.json."""
    from .calibration import calibrate_placebo, calibration_dir

    res, s = _calibrate(calibrate_placebo, f"placebo {model.value}", data, cmap, model=model.value,
                        n=n, mode=mode.value, share=share, priors=priors, draws=draws, tune=tune,
                        chains=chains, seed=seed, workers=workers, scheduler=scheduler, out=out)
    t = Table(title=f"placebo laws: share of 95% intervals excluding 0 (n = {s['n']}, nominal 0.05)")
    t.add_column("method")
    t.add_column("rate [95% MC interval]")
    t.add_row(f"Bayesian {s['model']} ({s['estimand']})", _rate(s["false_positive_rate"], s["false_positive_ci95"]))
    t.add_row("TWFE, iid SE", _rate(s["twfe_iid_rate"], s["twfe_iid_ci95"]))
    t.add_row("TWFE, unit-clustered SE", _rate(s["twfe_cluster_rate"], s["twfe_cluster_ci95"]))
    console.print(t)
    console.print(f"wrote {calibration_dir(out, 'placebo', model.value) / 'summary.json'}")
    if res.run.failed:
        raise typer.Exit(EXIT_FAILED)


@calibrate_app.command("sbc")
def sbc_cmd(model: SbcModel = typer.Option(SbcModel[registry.names()[0]], "--model", help="which Bayesian model"),
            n: int = NOpt, data: Optional[Path] = DataOpt, cmap: Optional[Path] = MapOpt,
            out: Path = OutOpt, seed: int = SeedOpt, workers: Optional[int] = WorkersOpt,
            scheduler: Optional[str] = SchedOpt, priors: str = PriorsOpt,
            draws: Optional[int] = DrawsOpt, tune: Optional[int] = TuneOpt,
            chains: Optional[int] = ChainsOpt,
            thin: int = typer.Option(100, "--thin", help="posterior draws kept per replicate for the rank")):
    """Simulation-based calibration on the panel's design: ranks of the true values, uniformity
    p-values, Δ-ECDF plots → DIR/calibration/sbc/<model>/summary.json. Exit 3 if it fails."""
    from .calibration import calibrate_sbc, calibration_dir

    res, s = _calibrate(calibrate_sbc, f"sbc {model.value}", data, cmap, model=model.value, n=n,
                        priors=priors, draws=draws, tune=tune, chains=chains, seed=seed,
                        thin_to=thin, workers=workers, scheduler=scheduler, out=out)
    t = Table(title=f"SBC of {s['model']} (n = {s['n']}): uniformity p-values "
                    f"(pass: all > {s['test']['bonferroni_cut']:.4f})")
    t.add_column("estimand")
    t.add_column("p-value", justify="right")
    for name, e in s["estimands"].items():
        p = e["pvalue_uniform"]
        t.add_row(name, "—" if p is None else f"{p:.3f}")
    console.print(t)
    console.print(("[green]passed[/]" if s["passed"] else "[bold red]FAILED[/]")
                  + f"; wrote {calibration_dir(out, 'sbc', model.value) / 'summary.json'}")
    if not s["passed"] or res.run.failed:
        raise typer.Exit(EXIT_FAILED)
