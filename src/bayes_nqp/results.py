"""The results contract: the keys of every summary.json, and atomic writing.

Everything that writes or reads a summary goes through this module, so the keys live in one place.

Replication (``DIR/replication/summary.json``)::

    did, did_controls   {estimate, se, ci95: [lo, hi], pvalue, n_obs, n_units}
    did_unit_mean, did_unit_mean_controls   mean of the unit-specific effects of the fully
                        interacted TWFE regression {estimate, se (between-unit), ci95, pvalue,
                        n_treated_units, estimator, unit_effects: {unit: tau_i}}
    event_study         {"<rel_time>": {estimate, se, ci95}, ..., "pretrend_pvalue": p}
    sun_abraham         {overall: {estimate, se, ci95}, event_time: {"<e>": {...}}}
    callaway_santanna   (same as sun_abraham)
    heterogeneity       {"<group var>": {"<level>": {estimate, se, ci95, pvalue, n_units}}}
    heterogeneity_interaction  {"<group var>": {"<level>": {estimate, se, ci95, pvalue}, "wald_equal_pvalue": p}}
    mediation           {"<mediator>": {total, a, b, direct, indirect, indirect_ci95, sobel_p}}
    threshold           {thresholds, threshold_ci95, f_stats, pvalues, regime_coefs, regime_se,
                         n_thresholds_selected, lr_curve: {grid, lr}}
    placebo             {draws, mean, sd, p_value, actual}
    data                {path, sha256, simulated, n_obs, n_units, periods}
    skipped             {"<section>": "<reason>"}

Bayesian fit (``DIR/<model>/summary.json``; typed as :class:`~.contract.FitSummary`)::

    model, data {path, sha256, simulated}, priors {name, contents}, spec, sampler,
    params {"<name>": {mean, sd, hdi95: [lo, hi], p_positive}},
    diagnostics {rhat_max, ess_bulk_min, ess_tail_min, divergences, passed, ...},
    comparison {"<name>": {frequentist: {estimate, se, ci95, source}, bayesian: {mean, sd, hdi95},
                estimand, sd_ratio (posterior sd / frequentist se)}},
    seconds, extras {the model's own entries; for every model ``assumptions`` ["<what the
    intervals rest on>", ...], and ``estimands`` {"<name>": "<what it is>"} where the model
    names them}, notice (simulated data only),
    estimand_index {"<name>": {var, stem, dim, coord, ...}}: where each params name lies in the
    labelled estimands (``DIR/<model>/estimands.nc``, dims such as event_time, cohort, mediator;
    :mod:`bayes_nqp.estimands`), for readers that select by dim and coordinate

A model's further fit (``DIR/<model>/<stage>.json``, a stage of ``bayes-nqp run`` declared in
``[model] stages``; :func:`~.contract.stage_record`)::

    stage, fit {model, data {sha256, map_sha256}, priors, spec, sampler}: the fit it was made for,
    extras {what the report reads into that fit's extras}, and the stage's own keys; the threshold
    model's compare_thresholds: preferred, rule, fitted, priors, sampler, table [{model, rank,
    elpd, se, p, elpd_diff, dse, weight, p_worse, diag_elpd, diag_diff, passed, n_thresholds}],
    extras {loo_compare (= table), n_thresholds {preferred, rule}}

The interval probability (0.95, hence ``hdi95``/``ci95``) is ``contract.INTERVAL_PROB``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from scipy.special import ndtri

from .contract import CI, INTERVAL_PROB, ParamEntry, jsonable  # noqa: F401 (jsonable: re-exported)
from .paths import safe_filename

#: the normal quantile of a two-sided interval of probability INTERVAL_PROB (1.96 for 0.95)
Z_INTERVAL = float(ndtri(0.5 + INTERVAL_PROB / 2))

#: the notice on everything made from a simulated panel (its map says ``simulated = true``): the
#: bundled demo, simulated on the real 287-city frame, or a panel of ``bayes-nqp simulate`` of any
#: size, on a synthetic frame beyond 287 units — true of both, naming neither as the other
SIMULATED_NOTICE = (
    "SIMULATED DATA: these results come from a panel simulated by bayes-nqp (the bundled demo, "
    "on the real 287-city frame, or one written by `bayes-nqp simulate`). They are not the "
    "study's data and not the study's numbers."
)

REPLICATION_SECTIONS = ("did", "event_study", "heterogeneity", "mediation", "threshold", "placebo")

#: Diagnostic gates every Bayesian fit must pass (issue: R-hat ≤ 1.01, bulk ESS ≥ 400, no divergence)
GATES = {"rhat_max": 1.01, "ess_bulk_min": 400, "divergences": 0}


def estimate(est, se=None, *, pvalue=None, ci95=None, **extra) -> dict:
    """A frequentist estimate entry: {estimate, se, ci95, pvalue, ...}; normal CI (of
    probability ``contract.INTERVAL_PROB``) when not given."""
    est = float(est)
    if ci95 is None and se is not None:
        ci95 = [est - Z_INTERVAL * float(se), est + Z_INTERVAL * float(se)]
    out = {"estimate": est, "se": None if se is None else float(se),
           CI: None if ci95 is None else [float(ci95[0]), float(ci95[1])]}
    if pvalue is not None:
        out["pvalue"] = float(pvalue)
    out.update(extra)
    return jsonable(out)


def param_entry(draws) -> dict:
    """A Bayesian parameter entry {mean, sd, hdi95, p_positive} from posterior draws
    (:class:`~.contract.ParamEntry` as JSON)."""
    return ParamEntry.from_draws(draws).to_json()


def write_atomic(path: str | Path, text: str | bytes) -> Path:
    """Write a file so that a reader never sees it half-written (temp file + rename)."""
    from .guard import temp_prefix
    from .paths import check_under

    path = check_under(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(text, bytes) else "w"
    # the name holds this process's pid: an interrupted run's clean-up removes its own only
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as fh:
            fh.write(text)
        # mkstemp makes the file owner-only; results are meant to be shared like any written file
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj) -> Path:
    return write_atomic(path, json.dumps(jsonable(obj), indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def title_figure(fig, title: str, simulated: bool) -> None:
    """Give a figure its title; a figure made from simulated data says so in the title and in a
    caption (the notice), whoever draws it."""
    if simulated:
        fig.suptitle(f"SIMULATED DATA — {title}", fontsize=11)
        # a marker for save_figure, which draws the notice in a strip of its own below the image
        fig.text(0.5, 0.0, SIMULATED_NOTICE, ha="center", va="top", fontsize=6.5, color="0.35")
    else:
        fig.suptitle(title, fontsize=11)


def _png(fig, dpi: int = 110) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _with_notice_strip(fig) -> bytes:
    """The figure as PNG with the simulated-data notice (title_figure's) in a strip of its own
    under the image: it can never overlap an axis label, a tick label or a legend, wherever the
    figure put them."""
    import io
    import textwrap

    import matplotlib.image as mpimg
    import numpy as np
    from matplotlib.figure import Figure

    notes = [t for t in fig.texts if t.get_text().replace("\n", " ").startswith(SIMULATED_NOTICE[:40])]
    if not notes:
        return _png(fig)
    for t in notes:
        t.set_visible(False)
    main = mpimg.imread(io.BytesIO(_png(fig)), format="png")
    width_in = main.shape[1] / 110
    strip = Figure(figsize=(width_in, 0.32))
    strip.text(0.5, 0.5, "\n".join(textwrap.wrap(SIMULATED_NOTICE, max(60, int(width_in * 17)))),
               ha="center", va="center", fontsize=6.5, color="0.35")
    buf = io.BytesIO()
    strip.savefig(buf, format="png", dpi=110)
    low = mpimg.imread(io.BytesIO(buf.getvalue()), format="png")
    w = max(main.shape[1], low.shape[1])

    def pad(img):
        if img.shape[2] == 3:
            img = np.dstack([img, np.ones(img.shape[:2], dtype=img.dtype)])
        out = np.ones((img.shape[0], w, 4), dtype=img.dtype)
        off = (w - img.shape[1]) // 2
        out[:, off:off + img.shape[1]] = img
        return out

    out = io.BytesIO()
    mpimg.imsave(out, np.clip(np.vstack([pad(main), pad(low)]), 0, 1), format="png")
    return out.getvalue()


def save_figure(fig, path: str | Path) -> Path:
    """Save a matplotlib figure atomically as PNG (the simulated-data notice in its own strip
    below) and close it."""
    import matplotlib.pyplot as plt

    data = _with_notice_strip(fig)
    plt.close(fig)
    return write_atomic(path, data)


def save_figures(figures: dict, folder: str | Path) -> list[Path]:
    """Each ``name -> Figure`` of ``figures`` as ``folder/figures/<name>.png`` (:func:`save_figure`),
    the name made one portable file-name component (:func:`~bayes_nqp.paths.safe_filename`: an
    estimand's name such as ``contrast[region:west-east]`` holds characters some file systems
    refuse, and a group level is the user's text)."""
    return [save_figure(fig, Path(folder) / "figures" / f"{safe_filename(name)}.png")
            for name, fig in figures.items()]


class SavesSummary:
    """``save(out)`` for a result with ``summary`` (its summary.json dict) and ``figures``
    (name -> Figure; written once, then dropped): the figures, whatever :meth:`_save_more`
    writes, then summary.json last (its presence means complete). Returns the summary's path."""

    summary: dict
    figures: dict

    def _save_more(self, out: Path) -> None:
        """What a result writes besides its figures and summary (a table)."""

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        save_figures(self.figures, out)
        self.figures = {}
        self._save_more(out)
        write_json(out / "summary.json", self.summary)
        return out / "summary.json"


def table_markdown(df, simulated: bool = False, **kw) -> str:
    """A DataFrame as Markdown; a table made from simulated data opens with the notice."""
    body = df.to_markdown(index=False, **kw) + "\n"
    return f"> {SIMULATED_NOTICE}\n\n{body}" if simulated else body


def save_table(df, stem: str | Path, simulated: bool = False) -> list[Path]:
    """Save a DataFrame as CSV and Markdown (``stem``.csv, ``stem``.md), atomically.

    A table made from simulated data says so: the Markdown opens with the notice and the CSV with
    a ``# `` comment line (read it back with ``pd.read_csv(path, skiprows=1)`` when the first line
    starts with ``# ``; ``comment="#"`` would also cut user text holding '#').
    """
    stem = Path(stem)
    csv = df.to_csv(index=False)
    if simulated:
        csv = f"# {SIMULATED_NOTICE}\n{csv}"
    return [write_atomic(stem.with_suffix(".csv"), csv),
            write_atomic(stem.with_suffix(".md"), table_markdown(df, simulated))]
