"""`bayes-nqp multiverse`: the treatment effect over a grid of specifications (registered by
cli.py). Thin: the work is :mod:`bayes_nqp.spec_curve` on :mod:`bayes_nqp.engine`.

Exit codes: 0 ok, 2 bad input, 3 some specifications failed (results written all the same),
130 interrupted (a rerun with the same arguments resumes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .cli_calibrate import (EXIT_FAILED, ChainsOpt, DataOpt, DrawsOpt, MapOpt, SchedOpt, SeedOpt,
                            TuneOpt, WorkersOpt, _calibrate, console)


def multiverse_cmd(data: Optional[Path] = DataOpt, cmap: Optional[Path] = MapOpt,
                   out: Path = typer.Option(Path("reports"), "--out", help="output folder (writes DIR/multiverse/)"),
                   scheduler: Optional[str] = SchedOpt, workers: Optional[int] = WorkersOpt,
                   estimators: Optional[str] = typer.Option(
                       None, "--estimators", help="comma list of twfe, sun_abraham, cs_never, cs_notyet, "
                                                  "bayes_did, bayes_staggered (default: all)"),
                   controls: Optional[str] = typer.Option(
                       None, "--controls", help="comma list of none, all, leave_one_out (default: all three)"),
                   samples: Optional[str] = typer.Option(
                       None, "--samples", help="comma list of all, groups, cohorts, window (default: all four)"),
                   priors: str = typer.Option("default,weak,skeptical", "--priors",
                                              help="prior sets of the Bayesian estimators (comma list)"),
                   seed: int = SeedOpt, draws: Optional[int] = DrawsOpt, tune: Optional[int] = TuneOpt,
                   chains: Optional[int] = ChainsOpt):
    """A multiverse of specifications (estimator × controls × sample × prior set), each with its
    estimate and 95% interval, on the many-fits engine → DIR/multiverse/summary.json, a
    specification-curve figure and a table of the choices that move the estimate most."""
    from .spec_curve import multiverse

    res, s = _calibrate(multiverse, "multiverse", data, cmap, estimators=estimators, controls=controls,
                        samples=samples, priors=priors, seed=seed, draws=draws, tune=tune,
                        chains=chains, workers=workers, scheduler=scheduler, out=out)

    def share(x):
        return "—" if x is None else f"{x:.2f}"

    console.print(f"{s['n']} of {s['n_specs']} specifications estimated; estimates from "
                  + (f"{s['estimate_range'][0]:.4g} to {s['estimate_range'][1]:.4g}" if s["estimate_range"] else "—")
                  + f"; interval above zero: {share(s['share_positive'])}, excludes zero: "
                  f"{share(s['share_interval_excludes_zero'])}")
    t = Table(title="choices that move the estimate most (mean estimate of the specs making the choice)")
    for c in ("dimension", "choice", "specs", "mean", "shift"):
        t.add_column(c, justify="right" if c in ("specs", "mean", "shift") else "left")
    for row in s["influence"][:10]:
        t.add_row(row["dimension"], str(row["choice"]), str(row["n"]), f"{row['mean_estimate']:.4g}",
                  f"{row['shift']:+.4g}")
    console.print(t)
    console.print(f"wrote {out / 'multiverse' / 'summary.json'}")
    if res.run.failed or s["failed"]:
        raise typer.Exit(EXIT_FAILED)
