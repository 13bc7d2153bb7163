"""The typed results contract of a Bayesian fit, and the one table made from it.

What to know first: a fit's ``DIR/<model>/summary.json`` is :meth:`FitSummary.to_json`, and
everything that reads one (the report, the CLI, the sensitivity stage, the tests) goes through
:meth:`FitSummary.from_json`. The keys are documented in :mod:`.results` and stay as they are:
``params {"<name>": {mean, sd, hdi95: [lo, hi], p_positive}}``, ``comparison {"<name>":
{frequentist: {estimate, se, ci95, ...}, bayesian: {mean, sd, hdi95}, sd_ratio, estimand}}``,
``assumptions`` (what the intervals rest on), ``estimands`` (what each is), ``estimand_index``
(where each params name lies along the labelled estimands' dims: :mod:`bayes_nqp.estimands`),
``diagnostics``, ...;
a model's own entries (curves, probabilities, settings) are under the one key ``extras``.

The interval probability is :data:`INTERVAL_PROB`; the keys and the column names that carry it
(``hdi95``, ``hdi95_lo``) are derived from it. :func:`tidy` turns a summary into the one
params table (``Fit.summary()``, the CLI, the report), :func:`comparison_table` into the one
Bayesian-vs-frequentist table.

Light on purpose: no PyMC, no ArviZ at import (the report and the CLI read summaries without them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: the probability of every posterior interval (HDI) and frequentist confidence interval reported
INTERVAL_PROB = 0.95
_PCT = f"{round(100 * INTERVAL_PROB)}"
#: the summary.json key of a posterior interval, and of a frequentist one
HDI = f"hdi{_PCT}"
CI = f"ci{_PCT}"
#: the columns of :func:`tidy`
TIDY_COLUMNS = ["param", "mean", "sd", f"{HDI}_lo", f"{HDI}_hi", "p_positive", "rhat", "ess_bulk"]
#: the columns of the prior-sensitivity table (one row per estimand and prior set)
SENSITIVITY_COLUMNS = ["estimand", "prior_set", "mean", "sd", f"{HDI}_lo", f"{HDI}_hi", f"{HDI}_width",
                       "p_positive", "passed"]
#: the columns of :func:`comparison_table`
COMPARISON_COLUMNS = ["model", "param", "bayes_mean", f"{HDI}_lo", f"{HDI}_hi", "p_positive",
                      "frequentist", f"{CI}_lo", f"{CI}_hi", "bayes_sd", "freq_se", "sd_ratio", "source",
                      "estimand"]


def jsonable(obj):
    """Turn numpy scalars/arrays, NaN and tuples into plain JSON values (NaN → None)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return None if not math.isfinite(f) else f
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _float(x) -> float | None:
    if x is None:
        return None
    f = float(x)
    return f if np.isfinite(f) else None


def _pair(v) -> tuple[float | None, float | None]:
    if v is None:
        return (None, None)
    return (_float(v[0]), _float(v[1]))


@dataclass(frozen=True)
class ParamEntry:
    """One estimand's posterior summary, on the outcome's original scale.

    ``median`` and ``mode`` (the posterior density's peak) are optional; ``hdi_set`` is the
    highest-density *set* at :data:`INTERVAL_PROB` where it is not one interval (a multimodal
    posterior, a threshold location say): then the one interval ``hdi`` covers the gaps, and
    :attr:`point` is the mode, not the mean (which can lie between the modes, outside the set).
    """

    mean: float | None
    sd: float | None
    hdi: tuple[float | None, float | None]
    p_positive: float | None
    median: float | None = None
    mode: float | None = None
    hdi_set: tuple[tuple[float, float], ...] | None = None

    @property
    def multimodal(self) -> bool:
        return bool(self.hdi_set) and len(self.hdi_set) > 1

    @property
    def point(self) -> float | None:
        """The point summary to report and compare: the mean, unless the posterior is multimodal
        or its mean lies outside its own HDI; then the mode."""
        lo, hi = self.hdi
        outside = None not in (self.mean, lo, hi) and not (lo <= self.mean <= hi)
        if (self.multimodal or outside) and self.mode is not None:
            return self.mode
        return self.mean

    @classmethod
    def from_draws(cls, draws) -> "ParamEntry":
        """Mean, sd, :data:`INTERVAL_PROB` HDI, P(>0), median, mode and the HDI set of posterior
        draws (any shape)."""
        from arviz_stats.base import array_stats  # local: keeps this module import-light

        x = np.asarray(draws, dtype=float).ravel()
        lo, hi = array_stats.hdi(x, prob=INTERVAL_PROB)
        mode, hset = None, None
        if np.ptp(x) > 0:
            try:
                vals, counts = np.unique(x, return_counts=True)
                # few distinct values (a grid): the most frequent one; else the density's peak
                mode = _float(vals[np.argmax(counts)]) if vals.size <= 100 else _float(array_stats.mode(x))
                hset = hdi_set(x)
            except Exception:  # a summary never fails for want of a density estimate
                mode, hset = None, None
        else:
            mode = _float(x[0])
        return cls(_float(x.mean()), _float(x.std(ddof=1)), (_float(lo), _float(hi)),
                   float((x > 0).mean()), _float(np.median(x)), mode,
                   hset if hset is not None and len(hset) > 1 else None)

    def to_json(self) -> dict:
        out = {"mean": self.mean, "sd": self.sd, HDI: list(self.hdi), "p_positive": self.p_positive}
        if self.median is not None:
            out["median"] = self.median
        if self.mode is not None:
            out["mode"] = self.mode
        if self.hdi_set:
            out[f"{HDI}_set"] = [list(iv) for iv in self.hdi_set]
        return out

    @classmethod
    def from_json(cls, d: dict) -> "ParamEntry":
        hs = d.get(f"{HDI}_set")
        return cls(_float(d.get("mean")), _float(d.get("sd")), _pair(d.get(HDI)),
                   _float(d.get("p_positive")), _float(d.get("median")), _float(d.get("mode")),
                   tuple(tuple(_pair(iv)) for iv in hs) if hs else None)


def hdi_set(x, prob: float = INTERVAL_PROB, max_values: int = 100) -> tuple[tuple[float, float], ...]:
    """The highest-density set of draws ``x`` at ``prob``, as sorted disjoint intervals.

    Draws on few distinct values (≤ ``max_values``: a threshold's location on the grid of
    candidate values, say) are counted value by value; others are binned (a histogram of
    ``min(50, max(10, n // 100))`` bins). The most probable values (bins) are taken until they
    hold ``prob`` of the draws; runs of neighbours make the intervals, and runs up to two bins apart are
    joined (sampling noise in the tails is not a mode)."""
    x = np.sort(np.asarray(x, dtype=float).ravel())
    x = x[np.isfinite(x)]
    if x.size == 0:
        return ()
    vals, counts = np.unique(x, return_counts=True)
    if vals.size <= max_values:
        lo_e, hi_e, gap = vals, vals, 0
    else:
        nb = int(min(50, max(10, x.size // 100)))
        counts, edges = np.histogram(x, bins=nb)
        lo_e, hi_e, gap = edges[:-1], edges[1:], 2
    order = np.argsort(-counts, kind="stable")
    take = np.zeros(counts.size, dtype=bool)
    total, need = 0, prob * counts.sum()
    for k in order:
        take[k] = True
        total += counts[k]
        if total >= need:
            break
    runs: list[list[int]] = []
    for k in np.flatnonzero(take):
        if runs and k - runs[-1][1] <= 1 + gap:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    return tuple((float(lo_e[a]), float(hi_e[b])) for a, b in runs)


@dataclass(frozen=True)
class Counterpart:
    """A frequentist estimate the Bayesian one is compared with (``se``: its standard error where
    the replication gives one; ``other``: any further keys of its replication entry, kept as
    they are)."""

    estimate: float | None
    ci: tuple[float | None, float | None] = (None, None)
    source: str | None = None
    other: dict = field(default_factory=dict)
    se: float | None = None

    def to_json(self) -> dict:
        return {"estimate": self.estimate, **({"se": self.se} if self.se is not None else {}),
                CI: None if self.ci == (None, None) else list(self.ci),
                **({"source": self.source} if self.source is not None else {}), **self.other}

    @classmethod
    def from_json(cls, d: dict | None) -> "Counterpart":
        d = dict(d or {})
        est, ci, src, se = d.pop("estimate", None), d.pop(CI, None), d.pop("source", None), d.pop("se", None)
        return cls(_float(est), _pair(ci), src, d, _float(se))


@dataclass(frozen=True)
class ComparisonEntry:
    """A Bayesian estimand next to its frequentist counterpart; ``estimand`` says in words what
    both estimate, and ``sd_ratio`` (posterior sd / frequentist SE) how their uncertainties
    compare."""

    frequentist: Counterpart
    bayesian: ParamEntry
    estimand: str | None = None

    @property
    def sd_ratio(self) -> float | None:
        sd, se = self.bayesian.sd, self.frequentist.se
        return None if sd is None or not se else sd / se

    def to_json(self) -> dict:
        out = {"frequentist": self.frequentist.to_json(),
               "bayesian": {"mean": self.bayesian.mean, "sd": self.bayesian.sd, HDI: list(self.bayesian.hdi)}}
        if self.sd_ratio is not None:
            out["sd_ratio"] = self.sd_ratio
        if self.estimand is not None:
            out["estimand"] = self.estimand
        return out

    @classmethod
    def from_json(cls, d: dict) -> "ComparisonEntry":
        b = d.get("bayesian") or {}
        return cls(Counterpart.from_json(d.get("frequentist")),
                   ParamEntry(_float(b.get("mean")), _float(b.get("sd")), _pair(b.get(HDI)), None),
                   d.get("estimand"))


#: the top-level keys of a fit's summary.json (anything else an older file has is an extra)
SUMMARY_KEYS = ("model", "data", "priors", "spec", "sampler", "params", "diagnostics", "comparison",
                "assumptions", "estimands", "seconds", "notice", "extras", "estimand_index")


@dataclass(frozen=True)
class FitSummary:
    """Everything a fit's summary.json holds."""

    model: str
    params: dict[str, ParamEntry]
    diagnostics: dict = field(default_factory=dict)
    comparison: dict[str, ComparisonEntry] = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    priors: dict = field(default_factory=dict)
    spec: dict = field(default_factory=dict)
    sampler: dict = field(default_factory=dict)
    seconds: float = 0.0
    extras: dict = field(default_factory=dict)
    notice: str | None = None
    #: what the intervals rest on, in words (every model says it; the report shows it)
    assumptions: tuple[str, ...] = ()
    #: estimand name -> what it is, in words (where the model names it)
    estimands: dict = field(default_factory=dict)
    #: params name -> where the estimand lies in the labelled estimands (var, stem, dim, coord;
    #: :func:`bayes_nqp.estimands.index`): readers select by dim and coordinate through it
    estimand_index: dict = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        return bool(self.data.get("simulated"))

    @property
    def passed(self) -> bool:
        return bool(self.diagnostics.get("passed"))

    def to_json(self) -> dict:
        out = {"model": self.model, "data": self.data, "priors": self.priors, "spec": self.spec,
               "sampler": self.sampler, "params": {k: v.to_json() for k, v in self.params.items()},
               "diagnostics": self.diagnostics,
               "comparison": {k: v.to_json() for k, v in self.comparison.items()},
               "assumptions": list(self.assumptions), "estimands": self.estimands,
               "seconds": self.seconds, "extras": self.extras}
        if self.estimand_index:
            out["estimand_index"] = self.estimand_index
        if self.notice is not None:
            out["notice"] = self.notice
        return jsonable(out)

    @classmethod
    def from_json(cls, s: dict) -> "FitSummary":
        """Read a summary.json; one written before extras had their own key has them at the top."""
        extras = dict(s.get("extras") or {})
        extras.update({k: v for k, v in s.items() if k not in SUMMARY_KEYS})
        params = {k: ParamEntry.from_json(v) for k, v in (s.get("params") or {}).items()}
        comparison = {}
        for k, v in (s.get("comparison") or {}).items():
            c = ComparisonEntry.from_json(v)
            # the JSON keeps the posterior's mean and interval only; the estimand has the rest
            p = params.get(k)
            if p is not None and (p.mean, p.hdi) == (c.bayesian.mean, c.bayesian.hdi):
                c = ComparisonEntry(c.frequentist, p, c.estimand)
            comparison[k] = c
        return cls(model=s.get("model", ""), params=params,
                   diagnostics=dict(s.get("diagnostics") or {}), comparison=comparison,
                   data=dict(s.get("data") or {}), priors=dict(s.get("priors") or {}),
                   spec=dict(s.get("spec") or {}), sampler=dict(s.get("sampler") or {}),
                   seconds=float(s.get("seconds") or 0.0), extras=extras, notice=s.get("notice"),
                   assumptions=tuple(s.get("assumptions") or ()), estimands=dict(s.get("estimands") or {}),
                   estimand_index=dict(s.get("estimand_index") or {}))


def as_summary(s) -> FitSummary:
    """A FitSummary from a FitSummary or a summary.json dict."""
    return s if isinstance(s, FitSummary) else FitSummary.from_json(s)


def tidy(summary) -> "pd.DataFrame":  # noqa: F821
    """The params table: one row per estimand with mean, sd, HDI, P(>0), R-hat and bulk ESS."""
    import pandas as pd

    s = as_summary(summary)
    per = s.diagnostics.get("per_param", {})
    rows = [[name, e.mean, e.sd, e.hdi[0], e.hdi[1], e.p_positive,
             per.get(name, {}).get("rhat"), per.get(name, {}).get("ess_bulk")]
            for name, e in s.params.items()]
    return pd.DataFrame(rows, columns=TIDY_COLUMNS)


def comparison_table(summary) -> "pd.DataFrame":  # noqa: F821
    """Every estimand with a frequentist counterpart: posterior mean and HDI, P(>0), the
    frequentist estimate and CI and where it comes from."""
    import pandas as pd

    s = as_summary(summary)
    rows = []
    for name, c in s.comparison.items():
        p = s.params.get(name)
        rows.append([s.model, name, c.bayesian.point, c.bayesian.hdi[0], c.bayesian.hdi[1],
                     p.p_positive if p is not None else None, c.frequentist.estimate,
                     c.frequentist.ci[0], c.frequentist.ci[1], c.bayesian.sd, c.frequentist.se,
                     c.sd_ratio, c.frequentist.source, c.estimand])
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def sensitivity_row(estimand: str, prior_set: str, e: ParamEntry, passed) -> dict:
    """One row of the prior-sensitivity table: an estimand under one prior set."""
    lo, hi = e.hdi
    return dict(zip(SENSITIVITY_COLUMNS, [estimand, prior_set, e.mean, e.sd, lo, hi,
                                          None if None in (lo, hi) else hi - lo, e.p_positive, passed]))


# ---- a model's further fits (registry ``stages``): saved apart, read into the fit's extras ------

def fit_identity(s: dict) -> dict:
    """What ties a further fit's saved result (``DIR/<model>/<stage>.json``) to the main fit it
    was made for: the model, the data (sha256 of the file and of the column map), the prior set,
    the spec and the sampler settings of that fit's summary.json."""
    data = s.get("data") or {}
    return jsonable({"model": s.get("model"), "data": {k: data.get(k) for k in ("sha256", "map_sha256")},
                     "priors": (s.get("priors") or {}).get("name"), "spec": s.get("spec") or {},
                     "sampler": s.get("sampler") or {}})


def stage_record(s: dict, stage: str, result: dict) -> dict:
    """The JSON of ``DIR/<model>/<stage>.json``: a stage's ``result`` (its ``to_json()``, with an
    ``extras`` entry) and the identity of the fit ``s`` (its summary.json) it was made for."""
    return jsonable({"stage": stage, "fit": fit_identity(s), **result})


def with_stage_extras(s: dict, record: dict) -> dict:
    """The summary ``s`` with the ``extras`` of a stage record merged in, when the record was made
    for this fit (the same :func:`fit_identity`); else ``s`` unchanged (an earlier run's record)."""
    if record.get("fit") != fit_identity(s):
        return s
    return {**s, "extras": {**(s.get("extras") or {}), **(record.get("extras") or {})}}
