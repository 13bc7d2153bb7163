"""Frequentist replication of the study: TWFE DID, event studies, heterogeneity, stepwise
mediation, the Hansen threshold regression and the placebo test.

``replicate(section, panel)`` runs one section (or "all") and returns the summary dict;
``replicate_to_dir`` also writes DIR/replication/{summary.json, tables/, figures/}.
"""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path

from ..errors import BayesNQPError, SectionSkipped
from ..paths import output_root, safe_filename
from ..results import SIMULATED_NOTICE, save_figure, save_table, write_json
from .base import SECTIONS, SectionResult, section

log = logging.getLogger(__name__)

#: order in which "all" runs; each name is a module of this package registering @section(name)
ORDER = ("did", "event_study", "heterogeneity", "mediation", "threshold", "placebo")
for _mod in ORDER:
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as exc:  # a section not written yet is skipped, not fatal
        if exc.name != f"{__name__}.{_mod}":
            raise


def _names(which: str | list[str]) -> list[str]:
    if which in (None, "all"):
        return [s for s in ORDER]
    names = [which] if isinstance(which, str) else list(which)
    names = [n.replace("-", "_") for n in names]
    bad = [n for n in names if n not in ORDER]
    if bad:
        raise BayesNQPError(f"unknown replication section(s) {bad}; choose from {', '.join(ORDER)} or all")
    return names


def run_sections(panel, which="all", progress=None, **options) -> dict[str, SectionResult | str]:
    """Run sections; a section that cannot run on this data maps to the reason (a string)."""
    out: dict[str, SectionResult | str] = {}
    for name in _names(which):
        fn = SECTIONS.get(name)
        t0 = time.perf_counter()
        if fn is None:
            out[name] = f"section '{name}' is not implemented in this version"
            continue
        try:
            out[name] = fn(panel, **options.get(name, {}))
        except SectionSkipped as exc:
            out[name] = str(exc)
        log.info("replication section %s done in %.1fs", name, time.perf_counter() - t0)
        if progress is not None:
            progress(name, time.perf_counter() - t0, out[name])
    return out


def collect_summary(panel, results: dict) -> dict:
    summary: dict = {"data": panel.data_block()}
    if panel.simulated:
        summary["notice"] = SIMULATED_NOTICE
    skipped = {}
    for name, res in results.items():
        if isinstance(res, str):
            skipped[name] = res
        else:
            summary.update(res.summary)
    summary["skipped"] = skipped
    return summary


def replicate(which, panel, **options) -> dict:
    """Run replication section(s) and return the summary dict (no files written)."""
    return collect_summary(panel, run_sections(panel, which, **options))


def replicate_to_dir(which, panel, out: str | Path, progress=None, **options) -> dict:
    """Run sections and write DIR/replication/summary.json, tables/ and figures/."""
    with output_root(out):
        return _replicate_to_dir(which, panel, Path(out) / "replication", progress, **options)


def _stale_files(out: Path) -> None:
    """Remove the tables and figures of an earlier replication (other data, or a full rerun)."""
    for sub, pattern in (("tables", "*.csv"), ("tables", "*.md"), ("figures", "*.png")):
        d = out / sub
        if d.is_dir():
            for p in d.glob(pattern):
                p.unlink(missing_ok=True)


def _replicate_to_dir(which, panel, out: Path, progress=None, **options) -> dict:
    from ..guard import describe_mismatch, same_data
    from ..results import read_json

    results = run_sections(panel, which, progress=progress, **options)
    path = out / "summary.json"
    old = read_json(path) if path.exists() else None
    partial = which not in (None, "all")
    if old is not None and (not partial or same_data(old.get("data"), panel.data_block()) is False):
        # an earlier replication of other data (or a full rerun) leaves nothing behind: no
        # stale section beside the new data block
        if partial:
            log.warning("replication/summary.json was %s; its sections are dropped",
                        describe_mismatch(old.get("data") or {}, panel.data_block()))
        path.unlink(missing_ok=True)
        _stale_files(out)
        old = None
    for name, res in results.items():
        if isinstance(res, SectionResult):
            for tname, df in res.tables.items():
                save_table(df, out / "tables" / safe_filename(tname), simulated=panel.simulated)
            for fname, fig in res.figures.items():
                save_figure(fig, out / "figures" / f"{safe_filename(fname)}.png")
    summary = collect_summary(panel, results)
    # merge with an earlier summary of the same data, so that `replicate did` after `replicate
    # all` loses nothing
    if old is not None:
        old_skipped = old.get("skipped", {})
        for name in results:
            old_skipped.pop(name, None)
        old.update({k: v for k, v in summary.items() if k != "skipped"})
        old["skipped"] = {**old_skipped, **summary["skipped"]}
        summary = old
    write_json(path, summary)
    return summary


__all__ = ["replicate", "replicate_to_dir", "run_sections", "SECTIONS", "SectionResult", "section", "ORDER"]
