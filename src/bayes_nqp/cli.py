"""The `bayes-nqp` command line: a thin typer layer over the Python API. The only place that prints.

Exit codes: 0 ok, 1 unexpected error, 2 bad input (data, map, spec, an output folder that
cannot be written or that another run holds), 3 a fit failed its diagnostic gates (results are
written all the same), 130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import registry
from .contract import CI
from .cli_calibrate import LiveProgress
from .errors import BayesNQPError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Bayesian causal reanalysis of staggered policy pilots on city panels.")
console = Console(stderr=False)
err = Console(stderr=True)

EXIT_BAD_INPUT = 2
EXIT_GATES = 3

DataOpt = typer.Option(None, "--data", help="panel file (CSV, Parquet, .dta, Excel)  \\[default: the bundled simulated demo panel]", show_default=False)
MapOpt = typer.Option(None, "--map", help="column map (TOML) assigning roles to the panel's columns  \\[default: data/demo_map.toml]", show_default=False)
DrawsOpt = typer.Option(None, "--draws", show_default=False,
                        help="posterior draws per chain  \\[default: the spec's \\[sampler] draws, 1000]")
TuneOpt = typer.Option(None, "--tune", show_default=False,
                       help="warm-up (tuning) draws per chain  \\[default: the spec's \\[sampler] tune, 1000]")
ChainsOpt = typer.Option(None, "--chains", show_default=False,
                         help="number of chains  \\[default: the spec's \\[sampler] chains, 4]")
SeedOpt = typer.Option(None, "--seed", show_default=False,
                       help="random seed of the sampler  \\[default: the spec's \\[sampler] seed]")
QuickOpt = typer.Option(False, "--quick", help="a preview: the spec's \\[quick] sampler settings "
                        "(4 chains x 1000 draws, 500 tuning) instead of \\[sampler]")
OutOpt = typer.Option(Path("reports"), "--out", help="output folder; every file is written under it")
ClaimsOpt = typer.Option(None, "--claims", help="claims file (TOML: title, citation, \\[\\[claim]] with estimands, "
                         "direction or null, ROPE, wording) the report judges; default: the demo's "
                         "data/zhu_chen_2025_claims.toml for the demo panel, else the standard claims "
                         "worded from the column map", show_default=False)


def _claims_file(claims: Optional[Path], data: Optional[Path]) -> Optional[Path]:
    """The claims file of a run: the one given; for the bundled demo panel, the demo's."""
    if claims is not None or data is not None:
        return claims
    from .report.claims import DEMO_CLAIMS

    return DEMO_CLAIMS if DEMO_CLAIMS.exists() else None


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {escape(str(exc))}")
    raise typer.Exit(EXIT_BAD_INPUT)


EXIT_INTERRUPTED = 130


@contextmanager
def _guarded(out: Path, command: str, *targets: Path):
    """A writing command's frame: SIGINT/SIGTERM raise ``Interrupted`` (exit 130/143, nothing
    incomplete saved); ``out`` (and each of ``targets``) is refused before any work when it
    cannot be written (exit 2), and locked against a second run into it (exit 2)."""
    from .guard import check_writable, folder_lock, signals_handled

    try:
        with signals_handled():
            with folder_lock(out, command=command):
                for t in targets:
                    check_writable(t)
                yield
    except KeyboardInterrupt as exc:
        err.print(f"[bold red]interrupted[/] ({getattr(exc, 'signal_name', 'SIGINT')}) during "
                  f"{command}: {exc or 'stopped'}; nothing incomplete was saved")
        raise typer.Exit(getattr(exc, "exit_code", EXIT_INTERRUPTED))
    except BayesNQPError as exc:
        _fail(exc)


def _panel(data: Optional[Path], cmap: Optional[Path], strict: bool = True):
    """Load the panel for a command; bad input ends the command with its message (exit 2), and
    a simulated panel is announced as such."""
    from .data import load_panel

    if data is not None and cmap is None:
        # a user's own data with the demo map almost never fits; say so instead of 20 errors
        from .data import DEMO_MAP
        err.print(f"[yellow]note:[/] no --map given; using {DEMO_MAP}")
    try:
        panel = load_panel(data, cmap, strict=strict)
    except BayesNQPError as exc:
        _fail(exc)
    if strict:
        _notice(panel)
    return panel


def _notice(panel) -> None:
    if panel.simulated:
        from .results import SIMULATED_NOTICE
        console.print(f"[bold yellow]{SIMULATED_NOTICE}[/]")


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="log progress details (INFO) instead of warnings only")):
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@app.command("check-data")
def check_data(data: Optional[Path] = typer.Argument(None, help="panel file  \\[default: the bundled simulated demo panel]", show_default=False),
               cmap: Optional[Path] = MapOpt):
    """Validate a panel against its column map; exit 2 when there are errors."""
    panel_or_report = _panel(data, cmap, strict=False)
    rep = panel_or_report.report
    table = Table(title=f"check-data: {data or 'demo panel'}")
    for col in ("level", "check", "message"):
        table.add_column(col, overflow="fold")
    for p in rep.problems[:200]:
        table.add_row(p.level, escape(p.check), escape(p.message),
                      style="red" if p.level == "error" else "yellow")
    console.print(f"{rep.n_obs} rows, {rep.n_units} units, {rep.n_periods} periods"
                  + ("" if rep.balanced is None else (", balanced" if rep.balanced else ", unbalanced")))
    if rep.problems:
        console.print(table)
        if len(rep.problems) > 200:
            console.print(f"... and {len(rep.problems) - 200} more problems")
    if not rep.ok:
        err.print(f"[bold red]{len(rep.errors)} error(s)[/]")
        raise typer.Exit(EXIT_BAD_INPUT)
    console.print("[green]no errors[/]")


@app.command()
def simulate(seed: int = typer.Option(20250601, "--seed", help="random seed"),
             out: Optional[Path] = typer.Option(None, "--out", help="folder  \\[default: the repository's data/]", show_default=False),
             units: int = typer.Option(287, "--units", help="units; beyond 287 on a SYNTHETIC frame"),
             periods: int = typer.Option(12, "--periods", help="periods (years from 2011)"),
             rho: float = typer.Option(0.5, "--rho", help="AR(1) coefficient of the unit errors"),
             effect_sd: float = typer.Option(0.4, "--effect-sd", help="sd of the unit effect factors "
                                             "(unit-varying effects; 0: every unit of a group alike)")):
    """Write a simulated panel (default: the demo), its column map and its exact truth."""
    from dataclasses import replace

    from .data import DATA_DIR
    from .data.simulate import DemoParams, write_demo
    from .errors import DataError

    custom = ((units, periods) != (287, 12) or rho != DemoParams.rho_y
              or effect_sd != DemoParams.effect_sd)
    if custom and out is None:
        err.print("[red]a non-default panel needs --out (data/ holds the committed demo)[/]")
        raise typer.Exit(EXIT_BAD_INPUT)
    params = replace(DemoParams(), rho_y=rho, effect_sd=effect_sd)
    try:
        paths = write_demo(out or DATA_DIR, seed, units, periods, params)
    except DataError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_BAD_INPUT)
    for p in paths:
        console.print(f"wrote {p}")
    console.print("[yellow]These data are SIMULATED on "
                  + ("a SYNTHETIC frame (made-up units)" if units != 287 else "the real city frame")
                  + "; they are not the study's data.[/]")


class Section(str, Enum):
    did = "did"
    event_study = "event_study"
    heterogeneity = "heterogeneity"
    mediation = "mediation"
    threshold = "threshold"
    placebo = "placebo"
    all = "all"


@app.command()
def replicate(section: Section = typer.Argument(Section.all, help="which replication section, or all"),
              data: Optional[Path] = DataOpt, cmap: Optional[Path] = MapOpt, out: Path = OutOpt):
    """Frequentist replication: TWFE DID, event studies, heterogeneity, mediation, threshold, placebo."""
    with _guarded(out, f"bayes-nqp replicate {section.value}", out / "replication"):
        _replicate(section, data, cmap, out)


def _replicate(section, data, cmap, out: Path) -> None:
    from .frequentist import replicate_to_dir

    panel = _panel(data, cmap)

    def progress(name, secs, res):
        if isinstance(res, str):
            console.print(f"  [yellow]skipped[/] {name}: {res}")
        else:
            console.print(f"  [green]done[/] {name} ({secs:.1f}s)")

    with console.status("replicating ..."):
        try:
            summary = replicate_to_dir(section.value, panel, out, progress=progress)
        except BayesNQPError as exc:
            _fail(exc)
    _print_replication(summary)
    console.print(f"wrote {out / 'replication' / 'summary.json'}")


def _print_replication(summary: dict) -> None:
    t = Table(title="replication (frequentist)")
    for c in ("estimand", "estimate", "se", "95% CI", "p"):
        t.add_column(c)
    def row(name, e):
        if not isinstance(e, dict) or "estimate" not in e:
            return
        ci = e.get(CI) or [None, None]
        fmt = lambda v: "" if v is None else f"{v:.4g}"
        t.add_row(escape(name), fmt(e["estimate"]), fmt(e.get("se")), f"[{fmt(ci[0])}, {fmt(ci[1])}]", fmt(e.get("pvalue")))
    for key in ("did", "did_controls"):
        row(key, summary.get(key))
    for key in ("sun_abraham", "callaway_santanna"):
        if key in summary:
            row(f"{key} (overall)", summary[key].get("overall"))
    for g, levels in summary.get("heterogeneity", {}).items():
        for lv, e in levels.items():
            if isinstance(e, dict):
                row(f"{g}={lv}", e)
    console.print(t)


#: the CLI's model choices: the registry's names, spelt as the folders and --models spell them
#: (event_study)
ModelName = Enum("ModelName", {n: n for n in registry.names()}, type=str)


def _saved_replication(out: Path, panel) -> dict | None:
    """A replication summary already written for the same data, reused for comparisons."""
    from .guard import same_data
    from .results import read_json

    p = out / "replication" / "summary.json"
    if p.exists():
        s = read_json(p)
        if same_data(s.get("data"), panel.data_block()):  # the same file and column map
            return s
    return None


def print_fit(fit, quick: bool = False) -> None:
    """The params table and the diagnostics verdict of one fit (a --quick fit that misses its
    gates is a preview, not a failed analysis)."""
    t = Table(title=f"{fit.model}: posterior (original scale)")
    for c in ("param", "mean", "sd", "95% HDI", "P(>0)", "R-hat", "ESS bulk"):
        t.add_column(c)
    num = lambda v, f: format(float("nan") if v is None else v, f)  # noqa: E731
    for r in fit.summary().itertuples(index=False):  # contract.tidy: the one params table
        t.add_row(escape(r.param), num(r.mean, ".4g"), num(r.sd, ".3g"),
                  f"[{num(r.hdi95_lo, '.4g')}, {num(r.hdi95_hi, '.4g')}]", num(r.p_positive, ".3f"),
                  num(r.rhat, ".3f"), num(r.ess_bulk, ".0f"))
    console.print(t)
    d = fit.diag
    verdict = ("[green]passed[/]" if d.get("passed") else
               "[yellow]not reached (preview at the --quick settings)[/]" if quick else "[bold red]FAILED[/]")
    console.print(f"diagnostics {verdict}: R-hat max {d.get('rhat_max') or float('nan'):.3f}, "
                  f"bulk ESS min {d.get('ess_bulk_min') or 0:.0f}, divergences {d.get('divergences')}")
    for f in d.get("failures", []):
        console.print(f"  [red]gate:[/] {escape(f)}")
    for w in d.get("warnings", []):
        console.print(f"  [yellow]warning:[/] {escape(w)}")


@app.command("fit")
def fit_cmd(model: ModelName = typer.Argument(..., help="which Bayesian model (named as its output folder)"),
            data: Optional[Path] = DataOpt, cmap: Optional[Path] = MapOpt,
            priors: str = typer.Option("default", "--priors", help="prior set: a name (default, weak, skeptical) or a .toml file"),
            draws: Optional[int] = DrawsOpt, tune: Optional[int] = TuneOpt,
            chains: Optional[int] = ChainsOpt, seed: Optional[int] = SeedOpt,
            quick: bool = QuickOpt,
            out: Path = OutOpt):
    """Fit a Bayesian model; writes DIR/<model>/{posterior.nc, summary.json}. Exit 3 if gates fail."""
    name = model.value.replace("-", "_")
    with _guarded(out, f"bayes-nqp fit {model.value}", out / name):
        _fit_cmd(name, data, cmap, priors, draws, tune, chains, seed, quick, out)


def _fit_cmd(name, data, cmap, priors, draws, tune, chains, seed, quick, out: Path) -> None:
    from . import fit as _fit  # without a saved replication: the counterpart sections are run

    panel = _panel(data, cmap)
    rep = _saved_replication(out, panel)
    _quiet_libraries()
    t0 = time.perf_counter()
    try:
        with console.status(f"fitting {name} (compiling, then sampling) ..."):
            f = _fit(name, panel, priors=priors, draws=draws, tune=tune, chains=chains, seed=seed,
                     quick=quick, replication=rep)
    except BayesNQPError as exc:
        _fail(exc)
    dest = f.save(out / name)
    print_fit(f, quick=quick)
    console.print(f"wrote {dest} ({time.perf_counter() - t0:.0f}s)")
    if not f.passed and quick:
        err.print("[yellow]preview (--quick):[/] the quick sampler settings did not reach the diagnostic "
                  "gates; these numbers are a preview, not weak evidence: rerun without --quick")
        raise typer.Exit(EXIT_GATES)
    if not f.passed:
        err.print("[bold red]the fit failed its diagnostic gates; results are written but flagged[/]")
        raise typer.Exit(EXIT_GATES)


def _quiet_libraries() -> None:
    """During a long run, library warnings (Pareto k, psense hints, RuntimeWarnings of ArviZ) go
    to the log and, without --verbose, only errors show: the diagnostics tables report them."""
    logging.captureWarnings(True)
    if logging.getLogger().level > logging.INFO:
        import distributed  # noqa: F401 - its import sets its loggers' levels: quieten them after it
        for name in ("py.warnings", "arviz_stats", "arviz_base", "pymc", "pytensor", "distributed"):
            logging.getLogger(name).setLevel(logging.ERROR)


class _RunDisplay(LiveProgress):
    """The terminal side of pipeline progress events: a spinner per stage, a draws bar while
    sampling (nutpie's progress arrives through the callback, from its own thread), and a line
    per finished stage with its time."""

    def __init__(self, quick: bool = False):
        self.quick = quick
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                                   TextColumn, TimeElapsedColumn)

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console)
        self.tasks: dict = {}

    def __call__(self, e) -> None:
        p = self.progress
        if e.kind == "start":
            self.tasks[e.stage] = p.add_task(e.label, total=None)
        elif e.kind == "draws" and e.stage in self.tasks:
            after = e.total and e.done >= e.total
            p.update(self.tasks[e.stage], total=e.total, completed=e.done,
                     description=f"{e.stage}: " + ("estimands and diagnostics" if after else "sampling"))
        elif e.kind == "section":
            style = "green" if e.status == "done" else "yellow"
            p.console.print(f"    [{style}]{e.status}[/] replication {e.label} ({e.seconds:.1f}s)"
                            + (f": {e.message}" if e.message else ""))
        elif e.kind == "end":
            task = self.tasks.pop(e.stage, None)
            if task is not None:
                p.remove_task(task)
            style = {"done": "green", "skipped": "yellow"}.get(e.status, "bold red")
            flag = ("" if e.passed is not False else
                    " [yellow]preview: gates not reached at the --quick settings[/]" if self.quick
                    else " [bold red]FAILED its diagnostic gates[/]")
            p.console.print(f"[{style}]{e.status:>11}[/] {e.stage} ({e.seconds or 0:.1f}s){flag}"
                            + (f": {e.message}" if e.message else ""))


@app.command("run")
def run_cmd(data: Optional[Path] = DataOpt, cmap: Optional[Path] = MapOpt, out: Path = OutOpt,
            quick: bool = typer.Option(False, "--quick", help="a preview: the specs' \\[quick] sampler settings and fewer bootstrap/placebo draws"),
            seed: Optional[int] = typer.Option(None, "--seed", help="one seed for every sampler and seeded section  \\[default: each spec's own seed]", show_default=False),
            models: Optional[str] = typer.Option(None, "--models", help="comma-separated subset of the registered models, named as their folders: " + ",".join(registry.names()) + "  \\[default: all]", show_default=False),
            multiverse: bool = typer.Option(False, "--multiverse", help="add the multiverse-of-specifications stage "
                                            "(DIR/multiverse/; it is many fits)"),
            claims: Optional[Path] = ClaimsOpt,
            workers: Optional[int] = typer.Option(None, "--workers", min=1, help="fit the models in parallel on a "
                                                  "local Dask cluster of this many processes; 1 = one after another "
                                                  "in this process  \\[default: $BAYES_NQP_WORKERS, else one per core]",
                                                  show_default=False)):
    """The whole reanalysis: data check, replication, every model, diagnostics, comparison, prior
    sensitivity and the report (DIR/report.html). Exit 3 if a fit failed its gates, 130 if interrupted."""
    from .pipeline import read_manifest, run as _run

    with _guarded(out, "bayes-nqp run"):  # the lock is the pipeline's too (re-entrant)
        panel = _panel(data, cmap)
        chosen = [m.strip() for m in models.split(",") if m.strip()] if models else None
        unknown = [m for m in chosen or [] if m not in registry.names()]
        if unknown:
            _fail(BayesNQPError(f"--models: unknown model(s) {', '.join(unknown)}; choose from "
                                f"{', '.join(registry.names())} (comma-separated, as the folders are named)"))
        _quiet_libraries()
        t0 = time.perf_counter()
        try:
            with _RunDisplay(quick) as display:
                result = _run(panel, out, quick=quick, seed=seed, progress=display, models=chosen,
                              multiverse=multiverse or None, claims=_claims_file(claims, data),
                              workers=workers)
        except KeyboardInterrupt as exc:
            m = read_manifest(out) or {}
            err.print(f"[bold red]interrupted[/] ({getattr(exc, 'signal_name', 'SIGINT')}) during "
                      f"stage {m.get('stopped_at') or '(before the first stage)'}; earlier "
                      f"stages' results are complete in {out}; see {out / 'manifest.json'}")
            raise typer.Exit(getattr(exc, "exit_code", EXIT_INTERRUPTED))
        except BayesNQPError as exc:
            _fail(exc)
    t = Table(title=f"bayes-nqp run into {out}/ ({time.perf_counter() - t0:.0f}s)")
    for c in ("stage", "status", "seconds", "written to", "note"):
        t.add_column(c, overflow="fold")
    for row in result.written():
        style = {"done": "", "skipped": "yellow", "not started": "dim"}.get(row["status"], "red")
        if row["note"] and row["status"] == "done":
            style = "red"
        where = Path(row["where"]) if row["where"] else None
        if where is not None and where.is_relative_to(out):
            where = where.relative_to(out)
        t.add_row(row["stage"], row["status"], f"{row['seconds']:.1f}" if row["seconds"] is not None else "",
                  str(where or ""), escape(row["note"] or ""), style=style)
    console.print(t)
    _notice(panel)
    if (out / "report.html").exists():
        console.print(f"report: {out / 'report.html'} and {out / 'report.md'}")
    if result.exit_code and quick and not result.failed:
        err.print("[yellow]preview (--quick):[/] the quick sampler settings did not reach the "
                  f"diagnostic gates for {', '.join(result.gates_failed)}; these numbers are a preview, "
                  "not weak evidence: rerun without --quick for results to rely on")
        raise typer.Exit(result.exit_code)
    if result.exit_code:
        err.print("[bold red]a fit failed its diagnostic gates or errored: "
                  f"{', '.join(result.gates_failed + result.failed)}; results are written but flagged[/]")
        raise typer.Exit(result.exit_code)


@app.command("sensitivity")
def sensitivity_cmd(model: ModelName = typer.Argument(..., help="which Bayesian model (named as its output folder)"),
                    prior_sets: str = typer.Option("default,weak,skeptical", "--prior-sets",
                                                   help="comma-separated prior set names or .toml files"),
                    data: Optional[Path] = DataOpt, cmap: Optional[Path] = MapOpt, out: Path = OutOpt,
                    draws: Optional[int] = DrawsOpt, tune: Optional[int] = TuneOpt,
                    chains: Optional[int] = ChainsOpt, seed: Optional[int] = SeedOpt,
                    quick: bool = QuickOpt):
    """Refit a model under several prior sets (one compilation); writes DIR/sensitivity/<model>/."""
    name = model.value.replace("-", "_")
    with _guarded(out, f"bayes-nqp sensitivity {model.value}", out / "sensitivity" / name):
        _sensitivity_cmd(name, prior_sets, data, cmap, out, draws, tune, chains, seed, quick)


def _sensitivity_cmd(name, prior_sets, data, cmap, out: Path, draws, tune, chains, seed, quick) -> None:
    from .bayes.sensitivity import sensitivity

    panel = _panel(data, cmap)
    sets = [s.strip() for s in prior_sets.split(",") if s.strip()]
    _quiet_libraries()
    try:
        with console.status(f"{name}: compiling ...") as status:
            res = sensitivity(name, panel, prior_sets=sets, quick=quick, draws=draws, tune=tune,
                              chains=chains, seed=seed, progress=status.update)
    except BayesNQPError as exc:
        _fail(exc)
    dest = res.save(out / "sensitivity" / name)
    t = Table(title=f"{name}: key estimands under each prior set (original scale)")
    for c in ("estimand", "prior set", "mean", "95% HDI", "P(>0)", "gates"):
        t.add_column(c)
    for r in res.table().itertuples(index=False):
        t.add_row(escape(r.estimand), escape(r.prior_set), f"{r.mean:.4g}", f"[{r.hdi95_lo:.4g}, {r.hdi95_hi:.4g}]",
                  f"{r.p_positive:.3f}", "passed" if r.passed else "[bold red]FAILED[/]")
    console.print(t)
    console.print(f"{res.compilations} compilation(s), {len(res.reused)} refit(s) reusing it; "
                  f"wrote {dest} ({res.seconds:.0f}s)")
    if not all(f.passed for f in res.fits.values()):
        err.print("[bold red]a refit failed its diagnostic gates; results are written but flagged[/]")
        raise typer.Exit(EXIT_GATES)


@app.command("report")
def report_cmd(out: Path = typer.Argument(Path("reports"), help="a results folder (from `bayes-nqp run`)"),
               claims: Optional[Path] = typer.Option(None, "--claims", help="claims file (TOML) the report "
                                                     "judges; default: DIR/claims.toml saved by the run, "
                                                     "else the standard claims worded from the column map")):
    """Rebuild DIR/report.html and DIR/report.md from saved results, without refitting."""
    from contextlib import nullcontext

    from .report import build_report

    # not while a run writes into the folder (its lock); a missing folder gets build_report's message
    with _guarded(out, "bayes-nqp report") if out.is_dir() else nullcontext():
        try:
            with console.status("building the report ..."):
                paths = build_report(out, claims=claims)
        except BayesNQPError as exc:
            _fail(exc)
    for p in paths.values():
        console.print(f"wrote {p}")


from .cli_calibrate import calibrate_app  # noqa: E402  (the `calibrate` sub-app, its own module)
app.add_typer(calibrate_app, name="calibrate")
from .cli_multiverse import multiverse_cmd  # noqa: E402  (`bayes-nqp multiverse`, its own module)
app.command("multiverse")(multiverse_cmd)


def main():  # pragma: no cover
    app()
