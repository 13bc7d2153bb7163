"""Tables built from saved results only (the summary.json files of a run folder).

Used by the report and by the pipeline's diagnostics and comparison stages, so that the collated
``DIR/diagnostics.md`` / ``DIR/comparison.md`` and the report read the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import registry
from ..contract import (COMPARISON_COLUMNS, SENSITIVITY_COLUMNS, FitSummary, ParamEntry, sensitivity_row,
                        tidy, with_stage_extras)
from ..contract import comparison_table as fit_comparison
from ..guard import same_data
from ..results import GATES, read_json

NOT_MODEL_DIRS = {"replication", "sensitivity", "data", "report_assets"}


def load_fits(out: str | Path, data: dict | None = None) -> dict[str, dict]:
    """model name -> its summary.json, for every complete fit folder under ``out``; with ``data``
    (a ``data`` block: sha256, map_sha256) only the fits made from those data (see
    :func:`bayes_nqp.guard.same_data`). The saved results of a model's further fits (registry
    ``stages``: ``DIR/<model>/<key>.json``, such as the threshold model's LOO comparison) join
    its ``extras`` where they were made for this fit (:func:`~bayes_nqp.contract.with_stage_extras`)."""
    out = Path(out)
    found = {}
    order = registry.names()
    names = list(order) + sorted(p.name for p in out.iterdir()
                                 if p.is_dir() and p.name not in order
                                 and p.name not in NOT_MODEL_DIRS) if out.exists() else []
    for name in names:
        p = out / name / "summary.json"
        if p.exists():
            s = read_json(p)
            if isinstance(s, dict) and "params" in s and "diagnostics" in s:
                if data is not None and same_data(s.get("data"), data) is False:
                    continue
                found[name] = _with_stages(out, name, s)
    return found


def _with_stages(out: Path, name: str, s: dict) -> dict:
    try:
        stages = registry.info(name).stages
    except Exception:  # a folder of a model that is not registered: no declarations
        return s
    for key, _ in stages:
        p = out / name / f"{key}.json"
        if p.exists():
            s = with_stage_extras(s, read_json(p))
    return s


def load_sensitivity(out: str | Path, data: dict | None = None) -> dict[str, dict]:
    base = Path(out) / "sensitivity"
    found = {}
    if base.exists():
        for p in sorted(base.iterdir()):
            if (p / "summary.json").exists():
                s = read_json(p / "summary.json")
                if data is not None and same_data(s.get("data"), data) is False:
                    continue
                found[p.name] = s
    order = {m: i for i, m in enumerate(registry.names())}
    return dict(sorted(found.items(), key=lambda kv: order.get(kv[0], 99)))


def diagnostics_row(model: str, s: dict) -> dict:
    d = s.get("diagnostics", {})
    loo = d.get("loo") if isinstance(d.get("loo"), dict) else {}
    ps = d.get("psense") if isinstance(d.get("psense"), dict) else {}
    flagged = [k for k, v in ps.items() if isinstance(v, dict) and v.get("flagged")]
    return {
        "model": model,
        "passed": bool(d.get("passed")),
        "rhat_max": d.get("rhat_max"),
        "ess_bulk_min": d.get("ess_bulk_min"),
        "ess_tail_min": d.get("ess_tail_min"),
        "divergences": d.get("divergences"),
        "bfmi_min": d.get("bfmi_min"),
        "treedepth_saturation": d.get("treedepth_saturation"),
        "chains": d.get("n_chains"),
        "draws": d.get("n_draws"),
        "loo_elpd": loo.get("elpd"),
        "pareto_k_bad": loo.get("n_pareto_k_bad"),
        "psense_flags": ", ".join(flagged) if flagged else ("error" if "error" in ps else ""),
        "failures": "; ".join(d.get("failures", [])),
        "warnings": "; ".join(d.get("warnings", [])),
    }


def diagnostics_table(out: str | Path, models: list[str] | None = None,
                      data: dict | None = None) -> pd.DataFrame:
    """One row per saved fit (of ``models``, default all): the gates (R-hat ≤ 1.01, bulk ESS ≥
    400, no divergence) and the warnings (E-BFMI, tree depth, LOO Pareto k, power-scaling flags)."""
    rows = [diagnostics_row(m, s) for m, s in load_fits(out, data).items() if models is None or m in models]
    return pd.DataFrame(rows, columns=list(diagnostics_row("", {}).keys()))


def params_table(s: dict) -> pd.DataFrame:
    """The params table of a saved fit (:func:`~bayes_nqp.contract.tidy`)."""
    return tidy(s)


def comparison_rows(model: str, s: dict) -> list[dict]:
    """The comparison table of a saved fit as records (:func:`~bayes_nqp.contract.comparison_table`)."""
    return fit_comparison(FitSummary.from_json({**s, "model": model})).to_dict("records")


def comparison_table(out: str | Path, models: list[str] | None = None,
                     data: dict | None = None) -> pd.DataFrame:
    """Every Bayesian estimand (of ``models``, default all) that has a frequentist counterpart."""
    rows = [r for m, s in load_fits(out, data).items() if models is None or m in models
            for r in comparison_rows(m, s)]
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _diagnostics_table(fits: dict[str, dict], key: str, rows_of, columns: list[str]) -> pd.DataFrame:
    """One table over the models of a block of their summaries' diagnostics: ``rows_of(model,
    block)`` gives the rows of one model's ``diagnostics[key]`` (called only where it is a dict)."""
    rows = [r for m, s in fits.items()
            if isinstance(block := s.get("diagnostics", {}).get(key), dict)
            for r in rows_of(m, block)]
    return pd.DataFrame(rows, columns=columns)


def _psense_rows(m: str, ps: dict) -> list[dict]:
    if "error" in ps and not isinstance(ps["error"], dict):
        return [{"model": m, "param": "", "prior": None, "likelihood": None,
                 "diagnosis": f"not computed: {ps['error']}"}]
    return [{"model": m, "param": k, "prior": v.get("prior"), "likelihood": v.get("likelihood"),
             "diagnosis": v.get("diagnosis")} for k, v in ps.items()]


def psense_table(fits: dict[str, dict]) -> pd.DataFrame:
    return _diagnostics_table(fits, "psense", _psense_rows,
                              ["model", "param", "prior", "likelihood", "diagnosis"])


def _loo_rows(m: str, loo: dict) -> list[dict]:
    return [{"model": m, "elpd": loo.get("elpd"), "se": loo.get("se"), "p_loo": loo.get("p_loo"),
             "n_points": loo.get("n_points"), "pareto_k_max": loo.get("pareto_k_max"),
             "pareto_k_bad": loo.get("n_pareto_k_bad"), "error": loo.get("error")}]


def loo_table(fits: dict[str, dict]) -> pd.DataFrame:
    return _diagnostics_table(fits, "loo", _loo_rows, ["model", "elpd", "se", "p_loo", "n_points",
                                                      "pareto_k_max", "pareto_k_bad", "error"])


def sensitivity_table(s: dict) -> pd.DataFrame:
    rows = []
    diag = s.get("diagnostics", {})
    for est, sets in s.get("table", {}).items():
        for name, e in sets.items():
            rows.append(sensitivity_row(est, name, ParamEntry.from_json(e), diag.get(name, {}).get("passed")))
    return pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)


def gates_text() -> str:
    return (f"R-hat ≤ {GATES['rhat_max']}, bulk ESS ≥ {GATES['ess_bulk_min']}, "
            f"divergences ≤ {GATES['divergences']}")
