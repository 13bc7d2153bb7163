"""Build DIR/report.html and DIR/report.md from the saved results of a run folder.

What to know first: nothing is refitted. The report reads ``manifest.json``,
``data/``, ``replication/``, ``<model>/{summary.json, estimands.nc, posterior.nc}``,
``sensitivity/<model>/`` and makes its own convergence and comparison figures from them into
``DIR/report_assets/`` (kept between rebuilds while newer than the results they show). The HTML is
self-contained (figures as base64 PNG, CSS inline, no script); the Markdown links the PNG files by
relative path. Both are rendered from one context by the Jinja2 templates in ``templates/``.

Every section is always there: one whose results are missing says why (the manifest's skip or
failure reason, or that nothing was saved), and a fit that failed its diagnostic gates is shown
in red, never left out.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .. import registry
from ..contract import CI, FitSummary, HDI
from ..errors import BayesNQPError
from ..guard import describe_mismatch, same_data
from ..paths import output_root
from ..results import GATES, SIMULATED_NOTICE, read_json, save_figure, write_atomic
from . import figures as F
from .claims import SUPPORT, WEAK, claims as make_claims
from .tables import (comparison_rows, diagnostics_row, load_fits, load_sensitivity,
                     loo_table, params_table, psense_table, sensitivity_table, gates_text)

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
ASSETS = "report_assets"
#: longer tables are not printed in the report (the CSV is linked instead)
MAX_ROWS = 60

REPLICATION_TABLE_ORDER = ("did", "event_study", "sun_abraham", "callaway_santanna", "heterogeneity",
                           "mediation", "threshold_tests", "threshold_coefs", "placebo")


# ---- formatting ------------------------------------------------------------------------------

def fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "—"
        return f"{v + 0.0:.4g}"  # + 0.0 turns -0.0 into 0.0
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    try:
        if pd.isna(v):
            return "—"
    except (TypeError, ValueError):
        pass
    if hasattr(v, "item"):
        return fmt(v.item())
    if isinstance(v, str) and ("." in v or "e" in v) and len(v) > 8:
        # numbers read back from a CSV column of mixed types arrive as strings
        try:
            return fmt(float(v))
        except ValueError:
            pass
    return str(v)


#: characters that start Markdown formatting anywhere: code, emphasis, strike-through, a table
#: cell's end, the escape itself; '_' only where it can open or close emphasis (not in did_controls)
_MD_SPECIAL = re.compile(r"([\\`*~|]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")


def md_escape(s, start: bool = True) -> str:
    """User text as literal Markdown: ``<``/``>``/``&`` become HTML entities (no raw HTML, no
    autolink), characters that open formatting are backslash-escaped, ``](`` and ``![`` are
    broken (no link or image), newlines become spaces. Brackets alone stay readable
    (``tau[region=east]``). ``start``: also escape a leading ``#``, ``-``, ``+``, ``=`` or
    ``1.`` (a heading or list); not needed inside a table cell. The ``md`` filter of the
    templates."""
    s = "" if s is None else str(s)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = s.replace("](", "]\\(").replace("![", "!\\[").replace("[^", "[\\^")
    if start:
        s = re.sub(r"^(\s*)([#+\-=]|\d+\.)", r"\1\\\2", s)
    return s.replace("\r", " ").replace("\n", " ")


def md_pre(s) -> str:
    """Text inside a ``` fence: a run of three backticks could close the fence, so it is broken."""
    return re.sub("`{3,}", lambda m: "`\u200b" * len(m.group(0)), "" if s is None else str(s))


def _read_csv(path: Path) -> pd.DataFrame:
    """A table written by ``results.save_table``: the simulated-data notice line is skipped. (Not
    ``comment="#"``, which would also cut a user's column name or level holding '#'.)"""
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
    return pd.read_csv(path, skiprows=1 if first.startswith("# ") else 0)


def _md_cell(s: str) -> str:
    return md_escape(s, start=False)


def table(df: pd.DataFrame, caption: str = "", row_cls: list[str] | None = None,
          note: str = "") -> dict:
    """A table block: formatted cells for the HTML template and a Markdown rendering."""
    cols = [str(c) for c in df.columns]
    rows = [[fmt(v) for v in r] for r in df.itertuples(index=False, name=None)]
    if not rows:
        md = "_(empty)_"
    else:
        md = "| " + " | ".join(_md_cell(c) for c in cols) + " |\n"
        md += "|" + "|".join("---" for _ in cols) + "|\n"
        md += "\n".join("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows)
    return {"kind": "table", "caption": caption, "columns": cols, "rows": rows,
            "row_cls": row_cls or [""] * len(rows), "md": md, "note": note}


def text(s: str, cls: str = "") -> dict:
    return {"kind": "text", "text": s, "cls": cls}


def heading(s: str) -> dict:
    return {"kind": "h3", "text": s}


def pre(s: str) -> dict:
    return {"kind": "pre", "text": s}


class _Assets:
    """Figures for the report: files under DIR, embedded as base64 in the HTML."""

    def __init__(self, out: Path):
        self.out = out

    def file(self, path: Path, caption: str) -> dict | None:
        if not path.exists():
            return None
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return {"kind": "figure", "caption": caption, "src": f"data:image/png;base64,{data}",
                "path": path.relative_to(self.out).as_posix()}

    def make(self, name: str, caption: str, maker, newer_than: list[Path] = ()) -> dict | None:
        """Save ``maker()``'s figure as report_assets/<name>.png, unless an asset newer than the
        results it shows is already there (a rebuild then costs no plotting)."""
        path = self.out / ASSETS / f"{name}.png"
        sources = [p for p in newer_than if p.exists()]
        if path.exists() and sources and path.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
            return self.file(path, caption)
        try:
            fig = maker()
        except Exception as exc:  # a figure that cannot be drawn is noted, never fatal
            log.warning("report figure %s failed: %s", name, exc)
            return text(f"Figure '{caption}' could not be drawn: {exc}", "warn")
        if fig is None:
            return None
        save_figure(fig, path)
        return self.file(path, caption)


# ---- sections --------------------------------------------------------------------------------

def _status_of(manifest: dict | None, stage: str) -> dict | None:
    if not manifest:
        return None
    return manifest.get("stages", {}).get(stage)


def _missing_reason(st: dict | None, what: str, path: Path) -> str:
    if st is None:
        return f"no saved results for {what} ({path} missing)"
    status = st.get("status")
    if status == "skipped":
        return f"skipped: {st.get('reason')}"
    if status == "failed":
        return f"failed: {st.get('error')}"
    if status == "interrupted":
        return "the run was interrupted during this stage"
    if status in ("not started", "running"):
        return "not reached: the run stopped before this stage"
    return f"no saved results for {what} ({path} missing)"


def _model_reason(manifest: dict | None, model: str, out: Path) -> str:
    st = _status_of(manifest, f"fit:{model}")
    if st is None and manifest and model not in (manifest.get("options", {}).get("models") or []):
        return "not selected for this run (the run's models option)"
    return _missing_reason(st, f"the {model} model", out / model / "summary.json")


def _section(sid: str, title: str, blocks=None, status: str = "ok", reason: str = "") -> dict:
    return {"id": sid, "title": title, "status": status, "reason": reason, "blocks": blocks or []}


def _ev_text(e: dict) -> str:
    s = (f"{e['name']}: {fmt(e['mean'])} [{fmt(e[HDI][0])}, {fmt(e[HDI][1])}], "
         f"P(>0) = {e['p_positive']:.3f}")
    f = e.get("frequentist")
    if f and f.get("estimate") is not None:
        ci = f.get(CI) or [None, None]
        s += f"; frequentist {fmt(f['estimate'])} [{fmt(ci[0])}, {fmt(ci[1])}]"
    return s


def summary_section(fits, sens, manifest, data_info) -> tuple[dict, list[dict]]:
    status = {}
    for m in registry.names():
        if m not in fits:
            status[m] = _model_reason(manifest, m, Path(m))
    mediators = list((data_info.get("map") or {}).get("mediators", []))
    if not mediators and "mediation" in fits:
        mediators = [n[len("indirect["):-1] for n in fits["mediation"]["params"] if n.startswith("indirect[")]
    cl = make_claims(fits, sens, status, mediators, threshold=(data_info.get("map") or {}).get("threshold"))
    rows, cls = [], []
    for c in cl:
        used = [e for e in c["evidence"] if e.get("used")]
        other = [e for e in c["evidence"] if not e.get("used")]
        rows.append({"claim (study)": c["claim"], "reanalysis": c["verdict"], "why": c["why"],
                     "numbers: posterior mean [95% HDI], P(>0); frequentist [95% CI]":
                         "; ".join(_ev_text(e) for e in used)
                         + ("" if not other else " — also: " + "; ".join(_ev_text(e) for e in other))})
        cls.append({"supported": "good", "weaker": "warn", "not supported": "bad"}.get(c["verdict"], "muted"))
    blocks = [
        text("What the study claimed, and what this reanalysis finds for each claim. Verdicts follow "
             f"fixed rules: supported — P(>0) ≥ {SUPPORT} for every estimand the claim rests on, "
             f"diagnostics passed, and the same under every prior set tried; weaker — P(>0) between "
             f"{WEAK} and {SUPPORT}, or ≥ {SUPPORT} only under some prior sets, or the fit failed "
             f"its diagnostic gates; not supported — P(>0) below {WEAK}. Heterogeneity claims are "
             "judged by the contrasts between groups. Numbers are on the outcome's original scale."),
        table(pd.DataFrame(rows, columns=["claim (study)", "reanalysis", "why",
                                          "numbers: posterior mean [95% HDI], P(>0); frequentist [95% CI]"]),
              "Claims and verdicts", cls),
    ]
    return _section("summary", "Summary of findings", blocks), cl


def data_section(out: Path, data_info: dict, assets: _Assets) -> dict:
    blocks = []
    d = data_info
    if d.get("simulated"):
        blocks.append(text(SIMULATED_NOTICE, "bad"))
    kv = {"file": d.get("path"), "sha256": d.get("sha256"), "observations": d.get("n_obs"),
          "units": d.get("n_units"), "periods": _span(d.get("periods")),
          "balanced": d.get("balanced"), "simulated": d.get("simulated")}
    blocks.append(table(pd.DataFrame({"item": list(kv), "value": list(kv.values())}), "The panel"))
    cmap = d.get("map")
    if cmap:
        blocks.append(table(pd.DataFrame({"role": list(cmap), "column(s)": [fmt(v) if not isinstance(v, dict)
                                                                             else ", ".join(f"{k}={x}" for k, x in v.items())
                                                                             for v in cmap.values()]}),
                            "Column map (roles)"))
    for name in ("variables", "cohorts"):
        p = out / "data" / f"{name}.csv"
        if p.exists():
            blocks.append(table(_read_csv(p), {"variables": "Variables by role",
                                                 "cohorts": "Adoption cohorts (units first treated)"}[name]))
    for p in sorted((out / "data").glob("group_*.csv")) if (out / "data").exists() else []:
        g = _read_csv(p)  # its first column is named after the group (the file: sanitised)
        blocks.append(table(g, f"Units by {g.columns[0] if len(g.columns) else p.stem[len('group_'):]}"))
    if d.get("n_warnings"):
        blocks.append(text(f"{d['n_warnings']} validation warning(s): " + "; ".join(d.get("warnings", [])[:10]), "warn"))
    if len(blocks) <= 2 and not (out / "data").exists():
        blocks.append(text("No data/ folder (not written by `bayes-nqp run`): the data block is taken "
                           "from the saved summaries.", "muted"))
    return _section("data", "Data", blocks)


def _span(periods) -> str | None:
    if not periods:
        return None
    return f"{periods[0]}–{periods[-1]} ({len(periods)})"


def replication_section(out: Path, rep: dict | None, manifest: dict | None, assets: _Assets,
                        stale: str | None = None) -> dict:
    title = "Frequentist replication"
    if rep is None and stale:
        return _section("replication", title, status="missing",
                        reason=f"the saved replication/ was {stale}; it is not combined with this "
                               "run's results")
    if rep is None:
        return _section("replication", title, status="missing",
                        reason=_missing_reason(_status_of(manifest, "replication"), "the replication",
                                               out / "replication" / "summary.json"))
    blocks = [text("The study's estimators, re-run on these data: TWFE DID, event studies (TWFE, "
                   "Sun–Abraham, Callaway–Sant'Anna), split-sample heterogeneity, stepwise mediation, "
                   "Hansen's threshold regression and the placebo test.")]
    head = []
    for key, label in (("did", "TWFE DID"), ("did_controls", "TWFE DID with controls")):
        e = rep.get(key)
        if isinstance(e, dict) and "estimate" in e:
            head.append({"estimand": label, "estimate": e["estimate"], "se": e.get("se"),
                         CI: e.get(CI), "p": e.get("pvalue"), "n_obs": e.get("n_obs")})
    for key, label in (("sun_abraham", "Sun–Abraham overall ATT"), ("callaway_santanna", "Callaway–Sant'Anna overall ATT")):
        e = (rep.get(key) or {}).get("overall")
        if isinstance(e, dict) and "estimate" in e:
            head.append({"estimand": label, "estimate": e["estimate"], "se": e.get("se"),
                         CI: e.get(CI), "p": e.get("pvalue"), "n_obs": e.get("n_obs")})
    pl = rep.get("placebo")
    if isinstance(pl, dict) and "p_value" in pl:
        head.append({"estimand": f"placebo ({pl.get('draws')} random assignments): permutation p",
                     "estimate": pl.get("actual"), "se": pl.get("sd"), CI: None, "p": pl["p_value"],
                     "n_obs": None})
    if head:
        blocks.append(table(pd.DataFrame(head), "Headline estimates"))
    tdir = out / "replication" / "tables"
    csvs = sorted(tdir.glob("*.csv")) if tdir.exists() else []
    order = {n: i for i, n in enumerate(REPLICATION_TABLE_ORDER)}
    for p in sorted(csvs, key=lambda x: (order.get(x.stem, 99), x.stem)):
        df = _read_csv(p)
        if len(df) > MAX_ROWS:
            blocks.append(text(f"Table {p.stem}: {len(df)} rows, not printed; see "
                               f"{p.relative_to(out).as_posix()}.", "muted"))
            continue
        blocks.append(table(df, f"Table: {p.stem}"))
    fdir = out / "replication" / "figures"
    for p in sorted(fdir.glob("*.png")) if fdir.exists() else []:
        blocks.append(assets.file(p, f"Replication figure: {p.stem}"))
    for sec, why in (rep.get("skipped") or {}).items():
        blocks.append(text(f"Section {sec} skipped: {why}", "warn"))
    return _section("replication", title, [b for b in blocks if b])


def _scalar(x) -> bool:
    return not isinstance(x, (dict, list))


def _extra_blocks(key: str, v, depth: int = 0) -> list[dict]:
    """Render a model's extra summary entry generically: scalars as an item/value table, lists of
    equal length as one table (a curve), a table of records as a table, nested tables recursively."""
    if _scalar(v):
        return [text(f"{key}: {fmt(v)}")]
    if isinstance(v, list):
        if v and all(isinstance(x, dict) for x in v):
            return [_capped(pd.DataFrame(v), key)]
        if all(_scalar(x) for x in v):
            return [_capped(pd.DataFrame({key: v}), key)]
        return [text(key, "muted"), pre(_json(v))]
    if not v:
        return []
    blocks = [heading(key)] if depth == 0 else []
    if all(isinstance(x, dict) and x and all(_scalar(y) for y in x.values()) for x in v.values()):
        df = pd.DataFrame.from_dict(v, orient="index")
        df.insert(0, key.split(" · ")[-1], list(v))
        return blocks + [_capped(df, key)]
    scal = {k: x for k, x in v.items() if _scalar(x)}
    lists = {k: x for k, x in v.items() if isinstance(x, list) and x and all(_scalar(y) for y in x)}
    if scal:
        blocks.append(table(pd.DataFrame({"item": list(scal), "value": list(scal.values())}), key))
    by_len: dict[int, dict] = {}
    for k, x in lists.items():
        by_len.setdefault(len(x), {})[k] = x
    for cols in by_len.values():
        blocks.append(_capped(pd.DataFrame(cols), key))
    for k, x in v.items():
        if k in scal or k in lists:
            continue
        if depth >= 3:
            blocks += [text(f"{key} · {k}", "muted"), pre(_json(x))]
        else:
            blocks += _extra_blocks(f"{key} · {k}", x, depth + 1)
    return blocks


def _json(v) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) < 1500 else s[:1500] + " …"


def _capped(df: pd.DataFrame, caption: str) -> dict:
    """A long curve is thinned to MAX_ROWS evenly spaced rows (the full one is in summary.json)."""
    if len(df) > MAX_ROWS:
        idx = sorted(set(int(round(i)) for i in [k * (len(df) - 1) / (MAX_ROWS - 1) for k in range(MAX_ROWS)]))
        return table(df.iloc[idx], caption, note=f"{len(df)} rows, {len(idx)} shown evenly spaced")
    return table(df, caption)


def _gate_classes(df: pd.DataFrame) -> list[str]:
    out = []
    for r in df.itertuples(index=False):
        bad = (r.rhat is not None and not pd.isna(r.rhat) and r.rhat > GATES["rhat_max"]) or \
              (r.ess_bulk is not None and not pd.isna(r.ess_bulk) and r.ess_bulk < GATES["ess_bulk_min"])
        out.append("bad" if bad else "")
    return out


def _about(name: str) -> "registry.ModelInfo":
    """The registry's entry of a model; a folder of an unregistered model gets a bare one."""
    try:
        return registry.info(name)
    except BayesNQPError:
        return registry.ModelInfo(name=name, module="", spec_path=Path(), title=name)


def model_section(out: Path, name: str, s: dict | None, manifest: dict | None, rep: dict | None,
                  assets: _Assets) -> dict:
    about = _about(name)
    title, intro = about.title, about.intro
    if s is None:
        return _section(name, title, [text(intro)], status="missing",
                        reason=_model_reason(manifest, name, out))
    st = _status_of(manifest, f"fit:{name}")
    if st is not None and st.get("status") in ("skipped", "failed", "interrupted", "not started", "running"):
        # results on disk are from an earlier run; this run did not produce them
        return _section(name, title, [text(intro),
                                      text(f"Saved results in {name}/ are from an earlier run and are "
                                           "not shown.", "muted")],
                        status="missing", reason=_missing_reason(st, f"the {name} model", out / name))
    d = s.get("diagnostics", {})
    sim = bool(s.get("data", {}).get("simulated"))
    blocks = [text(intro)]
    if d.get("passed"):
        blocks.append(text(f"Diagnostics passed ({gates_text()}).", "good"))
    else:
        blocks.append(text("Diagnostics FAILED — these numbers are flagged and not reliable: "
                           + "; ".join(d.get("failures", [])), "bad"))
    for w in d.get("warnings", []):
        blocks.append(text(f"Warning: {w}", "warn"))
    pri = s.get("priors", {})
    sam = s.get("sampler", {})
    blocks.append(text(f"Prior set: {pri.get('name', '—')}; sampler: {sam.get('chains')} chains × "
                       f"{sam.get('draws')} draws (tune {sam.get('tune')}), seed {sam.get('seed')}; "
                       f"{fmt(s.get('seconds'))} s.", "muted"))
    pt = params_table(s)
    blocks.append(table(pt, "Posterior (original scale)", _gate_classes(pt)))
    cmp = pd.DataFrame(comparison_rows(name, s))
    if len(cmp):
        blocks.append(table(cmp.drop(columns=["model"]), "Bayesian vs frequentist"))
    else:
        blocks.append(text("No frequentist counterpart in the replication for this model's estimands.", "muted"))
    src = [out / name / "summary.json"]
    for fig in about.figures:  # the report figures the model's spec names (report/figures.py)
        caption, maker = F.REPORT_FIGURES[fig]
        blocks.append(assets.make(f"{name}_{fig}", f"{name}: {caption}",
                                  lambda maker=maker: maker(out / name, s, rep, name, sim),
                                  src + [out / "replication" / "summary.json"]))
    blocks.append(assets.make(f"{name}_forest", "Posterior mean and 95% HDI (blue) against the "
                              "frequentist estimate and 95% CI (grey)",
                              lambda: F.forest_plot(s, f"{name}: estimands", sim), src))
    for key, v in FitSummary.from_json(s).extras.items():
        blocks += _extra_blocks(key, v)
    return _section(name, title, [b for b in blocks if b])


def diagnostics_section(out: Path, fits: dict, sens: dict, assets: _Assets) -> dict:
    title = "Diagnostics"
    if not fits:
        return _section("diagnostics", title, status="missing", reason="no Bayesian fit was saved")
    blocks = [text(f"Gates every fit must pass: {gates_text()}. E-BFMI < 0.3, tree-depth saturation, "
                   "LOO Pareto k > 0.7 and power-scaling flags are warnings. A failed gate is shown in "
                   "red.")]
    rows = [diagnostics_row(m, s) for m, s in fits.items()]
    for m, ss in sens.items():
        for set_name, dd in (ss.get("diagnostics") or {}).items():
            rows.append({"model": f"{m} (prior set {set_name})", "passed": bool(dd.get("passed")),
                         "rhat_max": dd.get("rhat_max"), "ess_bulk_min": dd.get("ess_bulk_min"),
                         "divergences": dd.get("divergences"),
                         "failures": "; ".join(dd.get("failures") or [])})
    df = pd.DataFrame(rows).reindex(columns=["model", "passed", "rhat_max", "ess_bulk_min", "ess_tail_min",
                                             "divergences", "bfmi_min", "treedepth_saturation", "failures",
                                             "warnings"])
    blocks.append(table(df, "Convergence gates, main fits and prior-sensitivity refits",
                        ["" if p else "bad" for p in df["passed"]]))
    ps = psense_table(fits)
    if len(ps):
        blocks.append(heading("Power-scaling sensitivity (psense)"))
        blocks.append(text("How much each estimand moves when the prior or the likelihood is "
                           "power-scaled (ArviZ psense; cut-off 0.05). 'prior-data conflict': both "
                           "sensitive; 'strong prior / weak likelihood': only the prior is."))
        blocks.append(_capped_cls(ps))
    for m, s in fits.items():
        names = list(s.get("params", {}))
        src = [out / m / "estimands.nc", out / m / "summary.json"]
        fig_blocks = [
            assets.make(f"{m}_rank", f"{m}: rank plots of the estimands (uniform = chains agree)",
                        lambda m=m, names=names: F.rank_plot(out / m, names, f"{m}: fractional ranks"), src),
            assets.make(f"{m}_trace", f"{m}: marginal posteriors and traces",
                        lambda m=m, names=names: F.trace_plot(out / m, names, f"{m}: traces"), src),
            assets.make(f"{m}_ppc", f"{m}: posterior predictive check (standardised outcome)",
                        lambda m=m: F.ppc_plot(out / m, f"{m}: posterior predictive vs observed"),
                        [out / m / "posterior.nc"]),
        ]
        fig_blocks = [b for b in fig_blocks if b]
        if fig_blocks:
            blocks.append(heading(f"{m}: convergence and predictive checks"))
            blocks += fig_blocks
    return _section("diagnostics", title, blocks)


def _capped_cls(ps: pd.DataFrame) -> dict:
    cls = ["warn" if isinstance(d, str) and d not in ("ok",) else "" for d in ps["diagnosis"]]
    return table(ps, "psense per estimand and free parameter", cls)


def loo_section(out: Path, fits: dict) -> dict:
    title = "Model comparison (LOO)"
    lt = loo_table(fits)
    if lt.empty:
        return _section("loo", title, status="missing", reason="no fit has a LOO summary")
    blocks = [text("PSIS-LOO expected log predictive density of each fit. Models are compared only "
                   "when their pointwise log-likelihoods are over the same observations (same "
                   "variable and shape): the others model different data or leave out different units.")]
    blocks.append(table(lt, "LOO per model", ["warn" if (k or 0) > 0 else "" for k in lt["pareto_k_bad"].fillna(0)]))
    try:
        blocks += _loo_compare(out, list(fits))
    except Exception as exc:
        log.warning("LOO comparison failed: %s", exc)
        blocks.append(text(f"LOO comparison could not be computed: {exc}", "warn"))
    return _section("loo", title, blocks)


def _loo_compare(out: Path, models: list[str]) -> list[dict]:
    import xarray as xr
    from arviz_stats import compare

    groups: dict[tuple, dict] = {}
    for m in models:
        p = out / m / "posterior.nc"
        if not p.exists():
            continue
        with xr.open_datatree(p, engine="netcdf4") as dt:
            if "log_likelihood" not in dt.children:
                continue
            ll = dt["log_likelihood"].to_dataset().load()
            post = dt["posterior"].to_dataset().load()  # loo reads the chains' layout from it
        key = tuple(sorted((v, tuple(ll[v].shape[2:])) for v in ll.data_vars))
        groups.setdefault(key, {})[m] = xr.DataTree.from_dict({"log_likelihood": ll, "posterior": post})
    blocks = []
    for key, members in groups.items():
        if len(members) < 2:
            continue
        res = compare(members, round_to="none").reset_index(names="model")
        keep = [c for c in ("model", "rank", "elpd", "p", "elpd_diff", "weight", "se", "dse", "warning")
                if c in res.columns]
        blocks.append(table(res[keep], f"LOO comparison of {', '.join(members)}"))
    if not blocks:
        blocks.append(text("No two fits share the same pointwise log-likelihood, so no cross-model "
                           "comparison is made.", "muted"))
    return blocks


def sensitivity_section(out: Path, sens: dict, manifest: dict | None, assets: _Assets) -> dict:
    title = "Prior sensitivity"
    names = list(dict.fromkeys(n for s in sens.values() for n in (s.get("prior_sets") or {})))
    blocks = [text(f"The key estimands refitted under each prior set ({', '.join(names) or '—'}; their "
                   "contents are in the run manifest — in the bundled sets, weak is five times wider "
                   "than default and skeptical centres every effect on zero with scale 0.1 outcome "
                   "sd). A conclusion that holds under all of them does not rest on the prior.")]
    stages = {k[len("sensitivity:"):]: v for k, v in (manifest or {}).get("stages", {}).items()
              if k.startswith("sensitivity:")}
    for m, st in stages.items():
        if m not in sens or st.get("status") != "done":
            blocks.append(text(f"{m}: {_missing_reason(st, f'the {m} sensitivity', out / 'sensitivity' / m)}", "warn"))
    if not sens:
        return _section("sensitivity", title, blocks, status="missing",
                        reason="no prior-sensitivity results were saved")
    for m, s in sens.items():
        st = stages.get(m)
        if st is not None and st.get("status") != "done":
            continue
        blocks.append(heading(m))
        df = sensitivity_table(s)
        blocks.append(table(df, f"{m}: key estimands under each prior set",
                            ["" if p in (True, None) else "bad" for p in df["passed"]]))
        stab = s.get("stability") or {}
        unstable = [k for k, v in stab.items() if not v.get("stable")]
        blocks.append(text(("P(>0) changes class across prior sets for: " + ", ".join(unstable)) if unstable
                           else "P(>0) stays in the same class (≥ 0.95, 0.8–0.95, < 0.8) under every prior set.",
                           "warn" if unstable else "good"))
        blocks.append(text(f"{s.get('compilations', '—')} compilation(s); reused the compiled model for "
                           f"{', '.join(s.get('reused_compiled') or []) or 'no set'}; {fmt(s.get('seconds'))} s.",
                           "muted"))
        blocks.append(assets.file(out / "sensitivity" / m / "figure.png", f"{m}: estimands by prior set"))
    return _section("sensitivity", title, [b for b in blocks if b])


def manifest_section(out: Path, manifest: dict | None, fits: dict) -> dict:
    title = "Run manifest"
    if not manifest:
        from ..provenance import versions

        blocks = [text("No manifest.json: this folder was not written by `bayes-nqp run`. Package "
                       "versions below are those of the machine that built the report.", "warn")]
        v = versions()
        blocks.append(table(pd.DataFrame({"package": list(v), "version": list(v.values())}), "Package versions"))
        return _section("manifest", title, blocks)
    m = manifest
    blocks = []
    status_cls = "good" if m.get("status") == "done" else "bad"
    # the report is written during the run's last stage, so that stage (and the run's total time,
    # which includes it) is left out: a rebuild from the same folder then shows the same numbers
    stages = {k: v for k, v in m.get("stages", {}).items() if k != "report"}
    total = sum(v.get("seconds") or 0 for v in stages.values())
    blocks.append(text(f"Run {m.get('status')}"
                       + (f", stopped at {m['stopped_at']}" if m.get("stopped_at") else "")
                       + f"; started {m.get('started')}; {fmt(total)} s for the analysis stages "
                       "(the report's own stage not counted).", status_cls))
    d = m.get("data", {})
    blocks.append(table(pd.DataFrame({"item": ["file", "sha256", "observations", "units", "simulated"],
                                      "value": [d.get("path"), d.get("sha256"), d.get("n_obs"),
                                                d.get("n_units"), d.get("simulated")]}), "Data"))
    cmap = m.get("map") or {}
    if cmap:
        blocks.append(table(pd.DataFrame({"role": list(cmap), "column(s)": [
            ", ".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else fmt(v)
            for v in cmap.values()]}), "Column map"))
    opts = m.get("options", {})
    blocks.append(table(pd.DataFrame({"option": list(opts), "value": [fmt(v) if not isinstance(v, dict)
                                                                      else json.dumps(v) for v in opts.values()]}),
                        "Options"))
    seeds = m.get("seeds", {})
    blocks.append(table(pd.DataFrame({"what": list(seeds), "seed": [fmt(v) if not isinstance(v, dict)
                                                                    else json.dumps(v) for v in seeds.values()]}),
                        "Seeds"))
    rows, cls = [], []
    for k, st in stages.items():
        rows.append({"stage": k, "status": st.get("status"), "seconds": st.get("seconds"),
                     "where": st.get("dest"), "note": st.get("reason") or st.get("error")
                     or ("failed its diagnostic gates" if st.get("passed") is False else "")})
        cls.append({"failed": "bad", "interrupted": "bad", "skipped": "warn", "not started": "muted"}.get(
            st.get("status"), "bad" if st.get("passed") is False else ""))
    blocks.append(table(pd.DataFrame(rows), "Stages and timings", cls))
    specs = m.get("specs", {})
    if specs:
        srows = []
        for name, sp in specs.items():
            sam = sp.get("sampler", {})
            srows.append({"model": name, "options": json.dumps(sp.get("options", {}), ensure_ascii=False),
                          "draws": sam.get("draws"), "tune": sam.get("tune"), "chains": sam.get("chains"),
                          "target_accept": sam.get("target_accept"), "seed": sam.get("seed")})
        blocks.append(table(pd.DataFrame(srows), "Model specs (models/*.toml; [sampler] table)"))
    sets = m.get("prior_sets", {})
    if sets:
        names = sorted({k for c in sets.values() if isinstance(c, dict) for k in c if k != "error"})
        prow = []
        for n in names:
            row = {"prior": n}
            for sname, c in sets.items():
                p = c.get(n) if isinstance(c, dict) else None
                row[sname] = (p["dist"] + "(" + ", ".join(f"{k}={fmt(v)}" for k, v in p.items() if k != "dist") + ")") if p else "—"
            prow.append(row)
        blocks.append(table(pd.DataFrame(prow), "Prior sets (standardised scale)"))
    v = m.get("versions", {})
    blocks.append(table(pd.DataFrame({"package": list(v), "version": list(v.values())}), "Package versions"))
    return _section("manifest", title, blocks)


# ---- the report ----------------------------------------------------------------------------

def _data_info(out: Path, manifest: dict | None, rep: dict | None, fits: dict) -> dict:
    p = out / "data" / "summary.json"
    if p.exists():
        return read_json(p)
    info = {}
    if manifest:
        info = {**manifest.get("data", {}), "map": manifest.get("map")}
    elif rep and rep.get("data"):
        info = dict(rep["data"])
    elif fits:
        info = dict(next(iter(fits.values())).get("data", {}))
    return info


def _reference_data(out: Path, manifest: dict | None, rep: dict | None, fits: dict) -> dict | None:
    """The data block every shown result must match: the run's (manifest), else data/summary.json,
    else the replication's, else the newest fit's."""
    if manifest and manifest.get("data"):
        return manifest["data"]
    p = out / "data" / "summary.json"
    if p.exists():
        return read_json(p)
    if rep and rep.get("data"):
        return rep["data"]
    if fits:
        newest = max(fits, key=lambda m: (out / m / "summary.json").stat().st_mtime)
        return fits[newest].get("data")
    return None


def context(out: str | Path) -> dict:
    """Everything the templates show, from the saved results in ``out``."""
    out = Path(out)
    if not out.exists():
        raise BayesNQPError(f"no results folder at {out}; run `bayes-nqp run --out {out}` first")
    manifest = read_json(out / "manifest.json") if (out / "manifest.json").exists() else None
    rep_path = out / "replication" / "summary.json"
    rep = read_json(rep_path) if rep_path.exists() else None
    fits = load_fits(out)
    sens = load_sensitivity(out)
    if not fits and rep is None and manifest is None:
        raise BayesNQPError(f"{out} holds no saved results (no manifest.json, replication/ or "
                            "<model>/summary.json); run `bayes-nqp run` first")
    # results made from other data (or another column map) than the run's are never combined:
    # they are left out and their sections say why
    ref = _reference_data(out, manifest, rep, fits)
    stale: dict[str, str] = {}
    if ref:
        for m, s in list(fits.items()):
            if same_data(s.get("data"), ref) is False:
                stale[m] = describe_mismatch(s.get("data") or {}, ref)
                del fits[m]
        sens = {m: s for m, s in sens.items() if same_data(s.get("data"), ref) is not False}
        if rep is not None and same_data(rep.get("data"), ref) is False:
            stale["replication"] = describe_mismatch(rep.get("data") or {}, ref)
            rep = None
    # a fit this run skipped or failed is not shown even if an older one is on disk
    shown = {m: s for m, s in fits.items()
             if (_status_of(manifest, f"fit:{m}") or {"status": "done"}).get("status") == "done"}
    # likewise prior-sensitivity results this run did not (re)write
    sens = {m: s for m, s in sens.items()
            if (_status_of(manifest, f"sensitivity:{m}") or {"status": "done"}).get("status") == "done"}
    info = _data_info(out, manifest, rep, fits)
    simulated = bool(info.get("simulated")) or any(s.get("data", {}).get("simulated") for s in fits.values())
    assets = _Assets(out)
    summary, cl = summary_section(shown, sens, manifest, info)
    sections = [summary, data_section(out, info, assets),
                replication_section(out, rep, manifest, assets, stale=stale.get("replication"))]
    models = list(registry.names()) + [m for m in [*fits, *stale] if m not in registry.names()
                                       and m != "replication"]
    for m in models:
        if m in stale:
            about = _about(m)
            sections.append(_section(m, about.title, [text(about.intro), text(
                f"Saved results in {m}/ were {stale[m]}; they are not combined with this run's "
                "results and not shown.", "bad")], status="missing", reason=f"saved results {stale[m]}"))
            continue
        sections.append(model_section(out, m, fits.get(m), manifest, rep, assets))
    sections += [diagnostics_section(out, shown, sens, assets), loo_section(out, shown),
                 sensitivity_section(out, sens, manifest, assets), manifest_section(out, manifest, fits)]
    counts = {v: sum(c["verdict"] == v for c in cl) for v in ("supported", "weaker", "not supported", "not assessed")}
    failed = [m for m, s in shown.items() if not s.get("diagnostics", {}).get("passed")]
    return {
        "title": "Bayesian reanalysis: smart-city pilots and new quality productivity",
        "study": "Zhu & Chen (2025), Global Academic Frontiers 3(4), 60–80, doi:10.5281/zenodo.17836466",
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "simulated": simulated,
        "notice": SIMULATED_NOTICE,
        "counts": counts,
        "failed_gates": failed,
        "run_status": (manifest or {}).get("status"),
        "stopped_at": (manifest or {}).get("stopped_at"),
        "sections": sections,
    }


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                       autoescape=select_autoescape(enabled_extensions=("html", "html.j2"),
                                                    default_for_string=False),
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["md"] = md_escape
    env.filters["md_pre"] = md_pre
    return env


def build_report(out: str | Path) -> dict[str, Path]:
    """Write DIR/report.html and DIR/report.md from the saved results; returns their paths."""
    out = Path(out)
    with output_root(out):
        ctx = context(out)
        env = _env()
        html = env.get_template("report.html.j2").render(**ctx)
        md = env.get_template("report.md.j2").render(**ctx)
        return {"html": write_atomic(out / "report.html", html), "md": write_atomic(out / "report.md", md)}
