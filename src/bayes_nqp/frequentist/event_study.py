"""Event studies: the TWFE leads-and-lags regression and two staggered-robust estimators.

TWFE (binned, reference e = −1)::

    y_it = α_i + λ_t + Σ_{e ∈ [−K, L], e ≠ −1} β_e·1{t − G_i = e} (+ γ'X_it) + ε_it

with the end points binned (e ≤ −K counts as −K, e ≥ L as L) and never-treated units at zero
on every dummy. The fact to know first: under staggered adoption with dynamic effects these
β_e mix effects across event times (Sun & Abraham 2021), which is why Sun–Abraham and
Callaway–Sant'Anna are reported beside them.

* ``event_study``: {"<e>": {estimate, se, ci95, pvalue, n_obs, bin}, ..., "pretrend_pvalue"}.
  The reference period "-1" is included with estimate 0, se 0 and ``reference: true`` so that
  plots can draw it; ``bin`` is "le" / "ge" on a binned end point. ``pretrend_pvalue`` is the
  F(m, G−1) test that all leads (e ≤ −2) are zero, unit-clustered (None without any lead).
* ``sun_abraham``: diff-diff's ``SunAbraham`` — the saturated cohort × event-time regression
  against never-treated units (reference e = −1), aggregated over cohorts with cohort shares,
  by event time and overall (post-treatment cells weighted by their treated unit-periods).
  pyfixest 0.60's ``event_study(estimator="saturated")`` fits the same regression (the tests
  check the two agree), but it is marked beta, re-derives cohorts from the observed D (wrong,
  and its ``aggregate()`` crashes, on panels with missing rows), has no covariates and no
  overall ATT; hence diff-diff here.
* ``imputation``: diff-diff's ``ImputationDiD`` (Borusyak, Jaravel & Spiess 2024), the
  frequentist imputation estimator the Bayesian staggered model mirrors;
* ``callaway_santanna``: diff-diff's ``CallawaySantAnna`` (never-treated controls by default,
  doubly robust, analytic unit-clustered SEs), overall ATT and the dynamic aggregation. Its
  pre-period estimates use the varying base period (t vs t−1), so they are not comparable in
  level to the TWFE leads.

SA and CS are unconditional unless ``covariates`` is given; with no never-treated units both
switch to not-yet-treated controls (recorded as ``control_group`` in ``overall``).
Neither robust estimator defines a reference entry, so their ``event_time`` omits −1.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .._logging import root_logger_kept
from ..results import estimate, jsonable
from ._fe import coef_entry, fe_part, feols, terms, wald_pvalue
from .base import SectionResult, section

#: default number of leads K; leads before −K are binned into −K
DEFAULT_LEADS = 4


def _name(e: int) -> str:
    return f"ev_m{-e}" if e < 0 else f"ev_p{e}"


def window(panel, leads: int | None = None, lags: int | None = None) -> tuple[int, int]:
    """(K, L): leads K = min(4, largest lead observed), lags L = largest lag observed."""
    rel = panel.df["rel_time"].dropna()
    max_lead = int(max(0, -rel.min())) if len(rel) else 0
    max_lag = int(max(0, rel.max())) if len(rel) else 0
    K = min(DEFAULT_LEADS if leads is None else int(leads), max_lead)
    L = max_lag if lags is None else min(int(lags), max_lag)
    return K, L


def twfe_event_study(panel, leads: int | None = None, lags: int | None = None,
                     controls: bool = True):
    """Fit the binned TWFE event study. Returns (summary entry, table, fit)."""
    K, L = window(panel, leads, lags)
    df = panel.df.copy()
    rel = df["rel_time"]
    binned = rel.clip(lower=-K, upper=L)
    events = [e for e in range(-K, L + 1) if e != -1]
    names = []
    for e in events:
        col = _name(e)
        df[col] = (binned == e).astype(float)  # NaN rel_time (never treated) → 0 everywhere
        if df[col].any():
            names.append(col)
    fit = feols(df, "y", terms(panel, names, controls), fe_part(panel))
    kept = set(fit.coefnames)
    lead_names = [_name(e) for e in events if e <= -2 and _name(e) in kept]

    out: dict = {}
    rows = []
    for e in range(-K, L + 1):
        bin_ = "le" if (e == -K and (rel < -K).any()) else (
            "ge" if (e == L and (rel > L).any()) else None)
        n = int((binned == e).sum())
        if e == -1:
            entry = estimate(0.0, 0.0, pvalue=None, reference=True, n_obs=n)
        elif _name(e) in kept:
            entry = coef_entry(fit, _name(e), n_obs=n)
        else:
            continue
        if bin_:
            entry["bin"] = bin_
        out[str(e)] = entry
        rows.append({"estimator": "TWFE", "event_time": e, "estimate": entry["estimate"],
                     "se": entry["se"], "ci95_lo": entry["ci95"][0], "ci95_hi": entry["ci95"][1],
                     "pvalue": entry.get("pvalue"), "n_obs": n, "bin": bin_ or "",
                     "reference": e == -1})
    out["pretrend_pvalue"] = wald_pvalue(fit, lead_names) if lead_names else None
    return jsonable(out), pd.DataFrame(rows), fit


def _cohort_frame(panel, covariates: list[str] | None = None) -> tuple[pd.DataFrame, list | None]:
    """diff-diff's frame and covariate names: the covariates copied under generated names
    ``cov0, cov1, …`` so that no user column name reaches diff-diff (see ``_fe.FEFit``)."""
    df = panel.df[["unit", "time", "y", "cohort"]].copy()
    # diff-diff codes never-treated units as first-treated period 0
    df["g"] = df["cohort"].fillna(0)
    if not covariates:
        return df, None
    names = [f"cov{k}" for k in range(len(covariates))]
    for name, col in zip(names, covariates):
        df[name] = panel.df[col].to_numpy()
    return df, names


def sun_abraham(panel, covariates: list[str] | None = None,
                control_group: str = "never_treated") -> tuple[dict, pd.DataFrame]:
    """Sun–Abraham interaction-weighted estimator via diff-diff's ``SunAbraham``.

    The saturated cohort × event-time TWFE regression, aggregated with cohort shares; SEs
    clustered by unit with t(G−1) inference (``df_convention="cluster"``, as fixest).
    """
    with root_logger_kept():
        from diff_diff import SunAbraham

    df, covariates = _cohort_frame(panel, covariates)
    sa = SunAbraham(control_group=control_group, cluster="unit", df_convention="cluster")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sa.fit(df, outcome="y", unit="unit", time="time", first_treat="g",
                     covariates=covariates)
    lo, hi = res.overall_conf_int
    overall = estimate(res.overall_att, res.overall_se, pvalue=res.overall_p_value, ci95=[lo, hi],
                       control_group=control_group)
    event_time = {}
    rows = [{"estimator": "Sun-Abraham", "event_time": "overall", **_row(overall)}]
    for e in sorted(res.event_study_effects):
        r = res.event_study_effects[e]
        if not np.isfinite(r["se"]):
            continue
        ent = estimate(r["effect"], r["se"], pvalue=r["p_value"],
                       ci95=[r["conf_int"][0], r["conf_int"][1]])
        event_time[str(int(e))] = ent
        rows.append({"estimator": "Sun-Abraham", "event_time": int(e), **_row(ent)})
    return {"overall": overall, "event_time": event_time}, pd.DataFrame(rows)


def callaway_santanna(panel, covariates: list[str] | None = None,
                      control_group: str = "never_treated") -> tuple[dict, pd.DataFrame]:
    """Callaway–Sant'Anna via diff-diff: overall ATT and the event-study aggregation."""
    with root_logger_kept():
        from diff_diff import CallawaySantAnna

    df, covariates = _cohort_frame(panel, covariates)
    cs = CallawaySantAnna(control_group=control_group, cluster="unit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = cs.fit(df, outcome="y", unit="unit", time="time", first_treat="g",
                     covariates=covariates)
        es = res.aggregate("event_study").to_dataframe()
    return _overall_and_event_time(res, es, "Callaway-Sant'Anna", control_group)


def borusyak_jaravel_spiess(panel, covariates: list[str] | None = None,
                            control_group: str = "never_treated") -> tuple[dict, pd.DataFrame]:
    """Borusyak–Jaravel–Spiess (2024) imputation estimator via diff-diff's ``ImputationDiD``
    (unit-clustered SEs): the frequentist twin of the Bayesian staggered model's imputation ATT
    (two-way effects fitted on the untreated cells, the treated cells' counterfactuals imputed).
    It uses every untreated cell, so ``control_group`` does not apply (kept for one signature)."""
    from diff_diff import ImputationDiD

    df, covariates = _cohort_frame(panel, covariates)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ImputationDiD(cluster="unit").fit(df, outcome="y", unit="unit", time="time",
                                                first_treat="g", covariates=covariates)
        es = res.aggregate("event_study").to_dataframe()
    return _overall_and_event_time(res, es, "Borusyak-Jaravel-Spiess", "untreated cells (imputation)")


def _overall_and_event_time(res, es: pd.DataFrame, estimator: str, control_group: str) -> tuple[dict, pd.DataFrame]:
    """A diff-diff staggered result as the summary entry {overall, event_time: {"<e>": ...}} and
    its table rows (``es``: its event-study aggregation; the reference period is left out)."""
    lo, hi = res.overall_conf_int
    overall = estimate(res.overall_att, res.overall_se, pvalue=res.overall_p_value, ci95=[lo, hi],
                       control_group=control_group)
    event_time = {}
    rows = [{"estimator": estimator, "event_time": "overall", **_row(overall)}]
    for _, r in es.iterrows():
        if bool(r.get("is_reference", False)) or not np.isfinite(r["se"]):
            continue
        ent = estimate(r["att"], r["se"], pvalue=r["p_value"],
                       ci95=[r["conf_int_lower"], r["conf_int_upper"]])
        event_time[str(int(r["event_time"]))] = ent
        rows.append({"estimator": estimator, "event_time": int(r["event_time"]), **_row(ent)})
    return {"overall": overall, "event_time": event_time}, pd.DataFrame(rows)


def _row(ent: dict) -> dict:
    return {"estimate": ent["estimate"], "se": ent["se"], "ci95_lo": ent["ci95"][0],
            "ci95_hi": ent["ci95"][1], "pvalue": ent.get("pvalue")}


@section("event_study")
def event_study(panel, leads: int | None = None, lags: int | None = None, controls: bool = True,
                covariates: list[str] | None = None, robust: bool = True) -> SectionResult:
    """TWFE event study (+ pretrend test), Sun–Abraham and Callaway–Sant'Anna.

    Options: ``leads``/``lags`` (window, default from the data), ``controls`` (TWFE only),
    ``covariates`` (column names for SA and CS), ``robust=False`` to skip SA and CS.
    """
    panel.require("outcome", "treatment", "staggered", what="the event study")
    es, es_table, _ = twfe_event_study(panel, leads, lags, controls=controls and bool(panel.controls))
    summary: dict = {"event_study": es}
    tables = {"event_study": es_table}
    curves = {"TWFE": es_table}
    if robust:
        # without never-treated units the not-yet-treated are the only clean comparisons
        ctrl = "never_treated" if panel.df["cohort"].isna().any() else "not_yet_treated"
        for key, fn in (("sun_abraham", sun_abraham), ("callaway_santanna", callaway_santanna),
                        ("imputation", borusyak_jaravel_spiess)):
            try:
                summary[key], tables[key] = fn(panel, covariates=covariates, control_group=ctrl)
            except Exception as exc:  # one robust estimator failing does not drop the others
                if key != "imputation":
                    raise
                summary.setdefault("skipped_estimators", {})[key] = f"{type(exc).__name__}: {exc}"
                continue
            curves[tables[key]["estimator"].iat[0]] = tables[key]
    from .plots import event_study_figure

    fig = event_study_figure(curves, panel, pretrend_p=es["pretrend_pvalue"])
    return SectionResult(summary=summary, tables=tables, figures={"event_study": fig})
