"""bayes-nqp: Bayesian causal reanalysis of staggered policy pilots on city panels.

    import bayes_nqp as bn
    panel = bn.demo_panel()                      # simulated panel on the real 287-city frame
    # or: bn.load_panel(df_or_path, {"unit": ..., "time": ..., "outcome": ..., "treated": ...})
    rep = bn.replicate("did", panel)             # frequentist replication (summary dict)
    fit = bn.fit("did", panel, priors="weak")    # Bayesian model (PyMC + nutpie)
"""

from __future__ import annotations

import logging

from .data import ColumnMap, Panel, demo_panel, load_panel, panel_from_frame, read_column_map
from .errors import BayesNQPError, ColumnMapError, DataError, ModelError, SectionSkipped, SpecError

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())


def replicate(which, panel, **options):
    """Run frequentist replication section(s) ("did", "event_study", ..., "all"); returns a dict."""
    from .frequentist import replicate as _replicate

    return _replicate(which, panel, **options)


def entropy_index(df, positive=(), negative=()):
    """Entropy-weight composite index; returns (index Series, weights Series)."""
    from .data.entropy import entropy_index as _entropy_index

    return _entropy_index(df, positive=positive, negative=negative)


def fit(model, panel, *, priors="default", draws=None, tune=None, chains=None, seed=None,
        quick=False, replication=None, **kwargs):
    """Fit a Bayesian model by name; returns a Fit (``repr``, notebook view, ``.summary()``,
    ``.diagnostics()``, ``.compare()``, ``.table()``, ``.plot()``, ``.save(dir)``).

    model: a registered model's name, as its output folder is named
    (``bayes_nqp.registry.names()``: did, heterogeneity, event_study, ...).
    panel: from ``bn.load_panel(path_or_DataFrame, map_toml_or_dict)`` or ``bn.demo_panel()``.
    priors: a prior set name ("default", "weak", "skeptical") or a TOML file.
    draws, tune, chains, seed: sampler settings (default: the spec's [sampler], 4 chains x 1000).
    quick: the spec's [quick] settings instead (a preview). replication: a ``bn.replicate``
    summary to compare with (default: run the counterpart sections; False: none).
    The model's further fits (its [model] ``stages``: the threshold model's LOO comparison of 0, 1
    and 2 thresholds when its spec says ``compare = true``) run after it; their results are in
    ``fit.extras`` (``loo_compare``, ``n_thresholds``).
    Further keywords (spec, target_accept, cores, progress, loo, ppc, psense, keep_compiled):
    see ``bayes_nqp.bayes.fit.fit``.
    """
    from . import registry
    from .bayes import fit as _fit
    from .counterparts import replication_for

    f = _fit(model, panel, priors=priors, draws=draws, tune=tune, chains=chains, seed=seed,
             quick=quick, replication=replication_for if replication is None else replication,
             **kwargs)
    # the model's further fits (registry ``stages``; `bayes-nqp run` runs each as a stage of its
    # own and saves it apart): their results join the Fit's extras
    for _key, target in registry.info(f.model).stages:
        try:
            f.extras.update(registry.stage_function(target)(f, panel).extras())
        except SectionSkipped:
            continue
    return f


def compare_thresholds(panel, *, fit=None, **kwargs):
    """The LOO comparison of 0, 1 and 2 thresholds; returns a ThresholdComparison
    (``.preferred``, ``.rule``, ``.table()``). With ``fit`` (a threshold Fit): with its spec, prior
    set and sampler settings, its posterior reused; else with the keywords of
    ``bayes_nqp.bayes.threshold.compare_thresholds`` (priors, spec, quick, draws, tune, chains,
    seed)."""
    from .bayes.threshold import compare_thresholds as _compare, comparison_for

    return comparison_for(fit, panel) if fit is not None else _compare(panel, **kwargs)


def load_fit(path):
    """Read a fit saved with Fit.save(dir)."""
    from .bayes import load_fit as _load_fit

    return _load_fit(path)


def sensitivity(model, panel, prior_sets=("default", "weak", "skeptical"), **kwargs):
    """Refit a model under several prior sets; returns a SensitivityResult."""
    from .bayes.sensitivity import sensitivity as _sensitivity

    return _sensitivity(model, panel, prior_sets=prior_sets, **kwargs)


def run(panel=None, out="reports", **kwargs):
    """The whole reanalysis (replication, every model, sensitivity, report) into ``out``;
    returns a RunResult. ``panel`` defaults to the bundled demo panel."""
    from .pipeline import run as _run

    return _run(demo_panel() if panel is None else panel, out, **kwargs)


def calibrate_placebo(model, panel, n=100, **kwargs):
    """Placebo-law calibration of a model on a panel (false-positive rate beside TWFE), on the
    many-fits engine; writes DIR/calibration/placebo/<model>/summary.json."""
    from .calibration import calibrate_placebo as _calibrate_placebo

    return _calibrate_placebo(model, panel, n, **kwargs)


def calibrate_sbc(model, panel, n=100, **kwargs):
    """Simulation-based calibration of a model on a panel's design, on the many-fits engine;
    writes DIR/calibration/sbc/<model>/summary.json."""
    from .calibration import calibrate_sbc as _calibrate_sbc

    return _calibrate_sbc(model, panel, n, **kwargs)


def multiverse(panel, **kwargs):
    """The treatment effect over a grid of specifications (estimator × controls × sample × prior
    set) on the many-fits engine; writes DIR/multiverse/summary.json and a specification curve."""
    from .spec_curve import multiverse as _multiverse

    return _multiverse(panel, **kwargs)


def report(out="reports"):
    """Rebuild DIR/report.html and DIR/report.md from saved results (no refitting)."""
    from .report import build_report

    return build_report(out)


__all__ = [
    "ColumnMap", "Panel", "demo_panel", "load_panel", "panel_from_frame", "read_column_map",
    "replicate", "entropy_index", "fit", "compare_thresholds", "load_fit", "sensitivity", "run", "report",
    "calibrate_placebo", "calibrate_sbc", "multiverse",
    "BayesNQPError", "ColumnMapError", "DataError", "ModelError", "SectionSkipped", "SpecError",
]
