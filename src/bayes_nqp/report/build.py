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

from .. import estimands as E
from .. import registry
from ..contract import CI, FitSummary, HDI, ParamEntry
from ..errors import BayesNQPError
from ..guard import describe_mismatch, same_data
from ..paths import output_root
from ..results import GATES, SIMULATED_NOTICE, read_json, save_figure, write_atomic
from . import figures as F
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


#: an '&' that would be read as an entity reference (``&amp;``, ``&#38;``, ``&#x26;``)
_MD_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
#: a '<' that could open raw HTML, a comment or an autolink
_MD_TAG = re.compile(r"<[A-Za-z/!?]")


def md_escape(s, start: bool = True) -> str:
    """User text as literal Markdown that reads as plain text too: ``a < b``, ``P(>0)`` and
    ``Card & Krueger`` stay as they are, while text that could open raw HTML or an autolink
    (``<b>``, ``<http://…>``) has its angle brackets as HTML entities, and an ``&`` that would
    start an entity reference becomes ``&amp;``; characters that open formatting are backslash-escaped, ``](`` and ``![`` are
    broken (no link or image), newlines become spaces. Brackets alone stay readable
    (``tau[region=east]``). ``start``: also escape a leading ``#``, ``-``, ``+``, ``=`` or
    ``1.`` (a heading or list); not needed inside a table cell. The ``md`` filter of the
    templates."""
    s = "" if s is None else str(s)
    s = _MD_ENTITY.sub("&amp;", s)  # only an '&' that would start an entity reference
    if _MD_TAG.search(s):  # raw HTML or an autolink could start here: no angle bracket stays
        s = s.replace("<", "&lt;").replace(">", "&gt;")
    s = _MD_SPECIAL.sub(r"\\\1", s)
    s = s.replace("](", "]\\(").replace("![", "!\\[").replace("[^", "[\\^")
    if start:
        s = re.sub(r"^(\s*)([#+\-=>]|\d+\.)", r"\1\\\2", s)
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
    pp = e.get("p_positive")
    s = (f"{e['name']}: {fmt(e['mean'])} [{fmt(e[HDI][0])}, {fmt(e[HDI][1])}]"
         + ("" if pp is None else f", P(>0) = {pp:.3f}"))
    if e.get("rope_mass") is not None:
        s += f", P(in ROPE) = {e['rope_mass']:.2f}"
    f = e.get("frequentist")
    if f and f.get("estimate") is not None:
        ci = f.get(CI) or [None, None]
        s += f"; frequentist {fmt(f['estimate'])} [{fmt(ci[0])}, {fmt(ci[1])}]"
    return s


def _headline_number(c: dict) -> str:
    """One number with its interval: the first estimand the claim rests on."""
    used = [e for e in c["evidence"] if e.get("used")]
    if not used:
        return "—"
    e = used[0]
    s = f"{e['name']} = {fmt(e['mean'])} [{fmt(e[HDI][0])}, {fmt(e[HDI][1])}]"
    if c.get("direction") == "null" and e.get("rope_mass") is not None:
        s += f", P(in ROPE ±{fmt(c.get('rope'))}) = {e['rope_mass']:.2f}"
    return s


def _short_reason(c: dict) -> str:
    """One reason: the fragility, else what caps the verdict, else the rule's finding."""
    return c.get("short") or c["why"]


def outcome_sd(out: Path) -> float | None:
    """The outcome's standard deviation, from DIR/data/variables.csv (written by `run`)."""
    p = out / "data" / "variables.csv"
    if not p.exists():
        return None
    try:
        v = _read_csv(p)
        row = v[v["role"] == "outcome"]
        return float(row["sd"].iloc[0]) if len(row) else None
    except Exception:  # an older or hand-made table: the ROPE then needs the claims file
        return None


def _rope_masses(out: Path, claim_set, sd: float | None) -> dict:
    """(model, estimand, rope) -> P(|x| ≤ rope) counted from the saved draws of null claims."""
    import numpy as np

    from .claims import ROPE_SD

    want: dict[str, set] = {}
    for c in claim_set.claims:
        if c.direction != "null":
            continue
        rope = c.rope or claim_set.rope or (ROPE_SD * sd if sd else None)
        if rope:
            want.setdefault(c.model, set()).update((e.lower(), rope) for e in c.estimands)
    found = {}
    for model, items in want.items():
        p = out / model / "estimands.nc"
        if not p.exists():
            continue
        try:
            for name, x in E.read_flat(p).items():
                for est, rope in items:
                    if name.lower() == est:
                        found[(model, name, rope)] = float((np.abs(x.ravel()) <= rope).mean())
        except Exception as exc:  # the normal approximation is used instead
            log.warning("ROPE mass of %s not counted from draws: %s", model, exc)
    return found


VERDICT_CLS = {"supported": "good", "weaker": "warn", "fragile": "warn", "inconclusive": "muted",
               "not supported": "bad", "contradicted": "bad"}


def verdict_rules_table() -> dict:
    """The verdict vocabulary and its rules (claims.VERDICTS), as a report table."""
    from .claims import VERDICTS

    return table(pd.DataFrame(VERDICTS, columns=["verdict", "rule"]), "Verdicts and their rules",
                 [VERDICT_CLS.get(v, "") for v, _ in VERDICTS])


def summary_section(fits, sens, manifest, data_info, claim_set=None, out: Path | None = None,
                    rep: dict | None = None) -> tuple[dict, list[dict]]:
    from .claims import evaluate, standard_claims

    status = {}
    for m in registry.names():
        if m not in fits:
            status[m] = _model_reason(manifest, m, Path(m))
    cmap = dict(data_info.get("map") or {})
    if claim_set is None:
        claim_set = standard_claims(cmap, fits)
    sd = outcome_sd(out) if out is not None else None
    masses = _rope_masses(out, claim_set, sd) if out is not None else {}
    cl = evaluate(claim_set, fits, sens, status, outcome_sd=sd, replication=rep, rope_masses=masses)
    rows, cls = [], []
    for c in cl:
        rows.append({"claim": c["claim"], "verdict": c["verdict"], "estimate [95% HDI]": _headline_number(c),
                     "reason": _short_reason(c)})
        cls.append(VERDICT_CLS.get(c["verdict"], "muted"))
    src = ("the claims file " + Path(claim_set.source).name) if claim_set.source not in (None, "standard") \
        else "the standard claims, worded from the column map (no claims file given)"
    blocks = [
        text(f"Each claim ({src}) and the reanalysis' verdict on it, by the rules in the table "
             "below. Numbers are posterior means and 95% HDIs on the outcome's original scale."),
        table(pd.DataFrame(rows, columns=["claim", "verdict", "estimate [95% HDI]", "reason"]),
              "Claims and verdicts", cls),
    ]
    details = []
    for c in cl:
        inner = [text(f"Verdict: {c['verdict']} — {c['why']}", VERDICT_CLS.get(c["verdict"], "muted")),
                 text(f"Model: {c['model']}; kind: {c.get('kind')}; direction: {c.get('direction')}"
                      + (f"; ROPE ±{fmt(c.get('rope'))}" if c.get("rope") else ""), "muted")]
        inner += [text(("" if e.get("used") else "also: ") + _ev_text(e)) for e in c["evidence"]]
        details.append({"kind": "details", "summary": f"{c['id']}: {c['verdict']}", "blocks": inner})
    blocks.append({"kind": "details", "summary": "Details of every claim (the numbers behind each verdict)",
                   "blocks": details})
    blocks.append(verdict_rules_table())
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
    inner = []
    for p in sorted(csvs, key=lambda x: (order.get(x.stem, 99), x.stem)):
        df = _read_csv(p)
        if len(df) > MAX_ROWS:
            inner.append(text(f"Table {p.stem}: {len(df)} rows, not printed; see "
                              f"{p.relative_to(out).as_posix()}.", "muted"))
            continue
        inner.append(table(df, f"Table: {p.stem}"))
    if inner:
        blocks.append({"kind": "details", "summary": "The replication's tables", "blocks": inner})
    fdir = out / "replication" / "figures"
    figs = [assets.file(p, f"Replication figure: {p.stem}") for p in (sorted(fdir.glob("*.png")) if fdir.exists() else [])]
    if any(figs):
        blocks.append({"kind": "details", "summary": "The replication's figures", "blocks": [f for f in figs if f]})
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


#: quantities (stems) computed from a fit that are not posteriors of an estimand (no sd, R-hat
#: or P(>0))
NOT_POSTERIOR = frozenset(("breakdown_M", "n_thresholds", "rho_breakdown"))
NOT_POSTERIOR_NOTE = ("breakdown_M: the smallest multiple of the largest pre-period deviation that "
                      "would overturn the post-period effect; n_thresholds: the number LOO prefers; "
                      "rho_breakdown[m]: the mediator–outcome error correlation that removes the "
                      "indirect effect")


def is_not_posterior(name: str, s: dict | None = None) -> bool:
    return E.stem_of(s or {}, name) in NOT_POSTERIOR


def modal_table(s: dict) -> pd.DataFrame:
    """The estimands whose posterior is multimodal (or whose mean lies outside its own HDI, or
    that are threshold locations): mode, median, the HDI set as intervals."""
    rows = []
    for name, e in (s.get("params") or {}).items():
        pe = ParamEntry.from_json(e)
        lo, hi = pe.hdi
        outside = None not in (pe.mean, lo, hi) and not (lo <= pe.mean <= hi)
        if not (pe.multimodal or outside or E.stem_of(s, name) == "gamma"):
            continue
        hs = pe.hdi_set or (pe.hdi,)
        rows.append({"param": name, "mode": pe.mode, "median": pe.median,
                     "95% HDI set": " ∪ ".join(f"[{fmt(a)}, {fmt(b)}]" for a, b in hs),
                     "mean (not used)": pe.mean})
    return pd.DataFrame(rows, columns=["param", "mode", "median", "95% HDI set", "mean (not used)"])


def _iv(e: dict | None, lo_key=CI) -> str:
    if not isinstance(e, dict) or e.get("estimate") is None:
        return "—"
    ci = e.get(lo_key) or [None, None]
    return f"{fmt(e['estimate'])} [{fmt(ci[0])}, {fmt(ci[1])}]"


def _sign(x) -> int:
    return 0 if x is None or not isinstance(x, (int, float)) or x == 0 else (1 if x > 0 else -1)


def like_with_like(name: str, s: dict, rep: dict | None) -> dict | None:
    """The Bayesian estimand beside the frequentist estimators of the same estimand, each
    labelled: heterogeneity's group effects beside the TWFE interaction estimate and split-sample
    TWFE; staggered's imputation ATT beside Borusyak–Jaravel–Spiess, Callaway–Sant'Anna and
    Sun–Abraham. A sign difference is stated."""
    if not rep:
        return None
    params = s.get("params") or {}
    rows = []
    groups = [(p, ix) for p, ix in E.select(s, stem="tau") if "group" in ix]
    if groups and rep.get("heterogeneity_interaction"):
        inter, split = rep.get("heterogeneity_interaction") or {}, rep.get("heterogeneity") or {}
        for p, ix in groups:
            e, g, lv = params[p], ix["group"], str(ix["coord"])
            i, sp = (inter.get(g) or {}).get(lv), (split.get(g) or {}).get(lv)
            signs = {_sign(e.get("mean")), _sign((i or {}).get("estimate")), _sign((sp or {}).get("estimate"))} - {0}
            rows.append({"estimand": p, "Bayesian mean [95% HDI]": f"{fmt(e['mean'])} [{fmt(e[HDI][0])}, {fmt(e[HDI][1])}]",
                         "TWFE interaction [95% CI] (same estimand)": _iv(i),
                         "split-sample TWFE [95% CI]": _iv(sp),
                         "note": "the signs differ" if len(signs) > 1 else ""})
        caption = "Group effects: the Bayesian model beside the TWFE interaction estimate and split samples"
    elif "att" in params and (rep.get("imputation") or rep.get("callaway_santanna")):
        e = params["att"]
        for key, label in (("imputation", "Borusyak–Jaravel–Spiess imputation (same estimand)"),
                           ("callaway_santanna", "Callaway–Sant'Anna"), ("sun_abraham", "Sun–Abraham")):
            o = (rep.get(key) or {}).get("overall")
            if not isinstance(o, dict):
                continue
            rows.append({"estimator": label, "overall ATT [95% interval]": _iv(o),
                         "note": "sign differs from the Bayesian ATT" if _sign(o.get("estimate")) * _sign(e.get("mean")) < 0 else ""})
        rows.insert(0, {"estimator": "Bayesian staggered ATT (extended TWFE; posterior mean, 95% HDI)",
                        "overall ATT [95% interval]": f"{fmt(e['mean'])} [{fmt(e[HDI][0])}, {fmt(e[HDI][1])}]",
                        "note": ""})
        caption = "Staggered ATT beside the frequentist staggered-robust estimators"
    if not rows:
        return None
    df = pd.DataFrame(rows)
    return table(df, caption, ["warn" if r.get("note") else "" for r in rows])


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
    derived = pt["param"].map(lambda n: is_not_posterior(n, s))
    post = pt[~derived].reset_index(drop=True)
    blocks.append(table(post, "Posterior (original scale)", _gate_classes(post)))
    if derived.any():
        blocks.append(table(pd.DataFrame({"quantity": pt.loc[derived, "param"],
                                          "value": pt.loc[derived, "mean"]}),
                            "Sensitivity quantities (computed from the fit; not posterior estimands)",
                            note=NOT_POSTERIOR_NOTE))
    modal = modal_table(s)
    if len(modal):
        blocks.append(table(modal, "Multimodal posteriors: mode, median and the 95% highest-density set",
                            note="the mean can lie between the modes; the mode is the point compared"))
    lwl = like_with_like(name, s, rep)
    if lwl is not None:
        blocks.append(lwl)
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
    extra = []
    for key, v in FitSummary.from_json(s).extras.items():
        extra += _extra_blocks(key, v)
    if extra:
        blocks.append({"kind": "details", "summary": f"{name}: further results (the model's own tables)",
                       "blocks": [b for b in extra if b]})
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
    main = df[~df["model"].str.contains(" (prior set ", regex=False)]
    refits = df[df["model"].str.contains(" (prior set ", regex=False)]
    gate_cols = ["model", "passed", "rhat_max", "ess_bulk_min", "ess_tail_min", "divergences", "failures"]
    blocks.append(table(main[gate_cols], "Gates per model (main fits)",
                        ["" if p else "bad" for p in main["passed"]]))
    if len(refits):
        blocks.append(table(refits[gate_cols], "Gates of the prior-sensitivity refits",
                            ["" if p else "bad" for p in refits["passed"]]))
    warn = main[["model", "bfmi_min", "treedepth_saturation", "warnings"]]
    if warn["warnings"].fillna("").astype(str).str.len().gt(0).any():
        blocks.append({"kind": "details", "summary": "Sampler warnings (E-BFMI, tree depth, LOO Pareto k)",
                       "blocks": [table(warn, "Warnings per model")]})
    ps = psense_table(fits)
    if len(ps):
        flagged = ps[ps["diagnosis"].map(lambda d: isinstance(d, str) and d != "ok")]
        blocks.append(text(f"Power-scaling sensitivity (ArviZ psense; cut-off 0.05): {len(flagged)} of "
                           f"{len(ps)} estimand(s) and parameters flagged"
                           + (": " + ", ".join(f"{r.model}/{r.param} ({r.diagnosis})"
                                               for r in flagged.head(8).itertuples())
                              + (" …" if len(flagged) > 8 else "") if len(flagged) else "") + ".",
                           "warn" if len(flagged) else "good"))
        blocks.append({"kind": "details", "summary": "Power-scaling sensitivity per estimand and parameter",
                       "blocks": [text("How much each estimand moves when the prior or the likelihood is "
                                       "power-scaled. 'prior-data conflict': both sensitive; 'strong "
                                       "prior / weak likelihood': only the prior is."), _capped_cls(ps)]})
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
            blocks.append({"kind": "details", "summary": f"{m}: convergence and predictive-check figures",
                           "blocks": fig_blocks})
    return _section("diagnostics", title, blocks)


def _capped_cls(ps: pd.DataFrame) -> dict:
    cls = ["warn" if isinstance(d, str) and d not in ("ok",) else "" for d in ps["diagnosis"]]
    return table(ps, "psense per estimand and free parameter", cls)


def loo_groups(models) -> dict[str, list[str]]:
    """loo_group -> its models (registry ``loo_group``): only models of the same data and
    likelihood are ranked against each other (did, heterogeneity and the event study on the
    outcome; never mediation, whose likelihood includes the mediators, or staggered, which drops
    the treated cells it cannot identify, so its data can differ)."""
    groups: dict[str, list[str]] = {}
    for m in models:
        g = _about(m).loo_group
        if g:
            groups.setdefault(g, []).append(m)
    return groups


def loo_section(out: Path, fits: dict) -> dict:
    title = "Model comparison (LOO)"
    lt = loo_table(fits)
    blocks = [text("PSIS-LOO expected log predictive density. Models are ranked against each other "
                   "only when they model the same data with the same likelihood (the registry's "
                   "loo_group: did, heterogeneity and the event study, on the outcome); mediation "
                   "(whose likelihood includes the mediators) and staggered (which drops the treated cells it "
                   "cannot identify, so its data can differ) "
                   "are never ranked against them. The threshold model's 0, 1 and 2 thresholds are "
                   "compared in a stage of their own (threshold/compare_thresholds.json).")]
    if not lt.empty:
        blocks.append({"kind": "details", "summary": "LOO of every fit (not comparable across groups)",
                       "blocks": [table(lt, "LOO per model",
                                        ["warn" if (k or 0) > 0 else "" for k in lt["pareto_k_bad"].fillna(0)])]})
    try:
        blocks += _loo_compare(out, list(fits))
    except Exception as exc:
        log.warning("LOO comparison failed: %s", exc)
        blocks.append(text(f"LOO comparison could not be computed: {exc}", "warn"))
    thr = False
    for m, s in fits.items():  # a model's own LOO comparison (the threshold model's 0/1/2 thresholds)
        own = (s.get("extras") or {}).get("loo_compare")
        if own:
            thr = True
            blocks.append(table(pd.DataFrame(own), f"{m}: its own LOO comparison (0, 1 and 2 thresholds)"))
    if lt.empty and not thr:
        return _section("loo", title, blocks, status="missing", reason="no fit has a LOO summary")
    return _section("loo", title, blocks)


def _loo_compare(out: Path, models: list[str]) -> list[dict]:
    import xarray as xr
    from ..bayes.diagnostics import loo_compare

    blocks = []
    for gname, members in loo_groups(models).items():
        trees, shapes = {}, {}
        for m in members:
            p = out / m / "posterior.nc"
            if not p.exists():
                continue
            with xr.open_datatree(p, engine="netcdf4") as dt:
                if "log_likelihood" not in dt.children:
                    continue
                ll = dt["log_likelihood"].to_dataset().load()
                post = dt["posterior"].to_dataset().load()  # loo reads the chains' layout from it
            shapes[m] = tuple(sorted((v, tuple(ll[v].shape[2:])) for v in ll.data_vars))
            trees[m] = xr.DataTree.from_dict({"log_likelihood": ll, "posterior": post})
        # a second guard: the pointwise log-likelihoods must be over the same observations
        by_shape: dict[tuple, dict] = {}
        for m, t in trees.items():
            by_shape.setdefault(shapes[m], {})[m] = t
        for same in by_shape.values():
            if len(same) < 2:
                continue
            res = loo_compare(same).reset_index(names="model")  # sub-sampled above 10,000 points
            keep = [c for c in ("model", "rank", "elpd", "p", "elpd_diff", "weight", "se", "dse", "warning",
                        "n_points", "subsample")
                    if c in res.columns]
            blocks.append(table(res[keep], f"LOO comparison of {', '.join(same)} ({gname})"))
    if not blocks:
        blocks.append(text("No two fits of the same data and likelihood with comparable pointwise "
                           "log-likelihoods, so no cross-model comparison is made.", "muted"))
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
        blocks.append({"kind": "details", "summary": f"{m}: the key estimands under each prior set (table)",
                       "blocks": [table(df, f"{m}: key estimands under each prior set",
                                        ["" if p in (True, None) else "bad" for p in df["passed"]])]})
        stab = s.get("stability") or {}
        unstable = [k for k, v in stab.items() if not v.get("stable")]
        blocks.append(text(("P(>0) changes class (≥ 0.95, 0.8–0.95, < 0.8) across prior sets for: "
                            + ", ".join(unstable)) if unstable
                           else "P(>0) stays in the same class (≥ 0.95, 0.8–0.95, < 0.8) under every prior set.",
                           "warn" if unstable else "good"))
        blocks.append(text("The claims' verdicts are re-judged under every set by the verdict rules "
                           "(Summary of findings): a verdict that changes under any set is at most weaker.",
                           "muted"))
        blocks.append(text(f"{s.get('compilations', '—')} compilation(s); reused the compiled model for "
                           f"{', '.join(s.get('reused_compiled') or []) or 'no set'}; {fmt(s.get('seconds'))} s.",
                           "muted"))
        blocks.append(assets.file(out / "sensitivity" / m / "figure.png", f"{m}: estimands by prior set"))
    return _section("sensitivity", title, [b for b in blocks if b])


def multiverse_section(out: Path, mv: dict, assets: _Assets) -> dict:
    """The multiverse of specifications (``DIR/multiverse/``, from ``run --multiverse`` or
    ``bayes-nqp multiverse``): shares, the specification curve, the choices that move the
    estimate most, every specification (collapsed)."""
    specs = mv.get("specs") or []
    lo, hi = (mv.get("estimate_range") or [None, None])[:2]
    blocks = [text(f"The treatment effect over {mv.get('n_specs', len(specs))} specifications (every "
                   "combination of estimator, controls, sample and, for the Bayesian estimators, prior "
                   f"set; {len(mv.get('failed') or [])} failed). Intervals above zero: "
                   f"{fmt(100 * (mv.get('share_positive') or 0))}%; excluding zero: "
                   f"{fmt(100 * (mv.get('share_interval_excludes_zero') or 0))}%; estimates from "
                   f"{fmt(lo)} to {fmt(hi)}. Frequentist specifications show 95% confidence intervals, "
                   "Bayesian ones 95% HDIs: the curve shows how much the conclusion rests on choices, "
                   "not a pooled estimate.")]
    blocks.append(assets.file(out / "multiverse" / "figures" / "spec_curve.png",
                              "Specification curve: estimates with their intervals, sorted; beneath, the choices of each"))
    infl = out / "multiverse" / "influence.csv"
    if infl.exists():
        df = _read_csv(infl)
        if "shift" in df:
            df = df.reindex(df["shift"].abs().sort_values(ascending=False).index).head(8)
        blocks.append(table(df, "The choices that move the estimate most (mean estimate of the specs "
                                "with that choice, and its shift from the mean of all)"))
    if specs:
        rows = pd.DataFrame([{"estimator": x.get("estimator"), "controls": x.get("controls"),
                              "sample": x.get("sample"), "priors": x.get("priors") or "—",
                              "estimate": x.get("estimate"),
                              "95% interval": _interval(x.get("ci95")),
                              "excludes 0": "yes" if x.get("excludes_zero") else "no"} for x in specs])
        blocks.append({"kind": "details", "summary": f"all {len(rows)} specifications (table)",
                       "blocks": [table(rows, "Every specification of the multiverse")]})
    return _section("multiverse", "Multiverse of specifications", [b for b in blocks if b])


def _interval(ci) -> str:
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci and len(ci) == 2 and None not in ci else "—"


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
    # the run's status stays on the page; its record (data, map, options, seeds, stages, specs,
    # priors, versions) is one click below
    return _section("manifest", title, [blocks[0], {"kind": "details", "summary": "The run's record: data, "
                                                    "column map, options, seeds, stages and timings, "
                                                    "specs, prior sets, package versions",
                                                    "blocks": blocks[1:]}])


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


CLAIMS_FILE = "claims.toml"


def claim_set_for(out: Path, claims: str | Path | None = None):
    """The claims a report judges: ``claims`` (a claims file), else the copy a run saved as
    DIR/claims.toml, else None (the standard claims, worded from the column map)."""
    from .claims import load_claims

    if claims is not None:
        return load_claims(claims)
    if (out / CLAIMS_FILE).exists():
        return load_claims(out / CLAIMS_FILE)
    return None


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


def context(out: str | Path, claims: str | Path | None = None) -> dict:
    """Everything the templates show, from the saved results in ``out``; ``claims``: a claims
    file (default: DIR/claims.toml where a run saved one, else the standard claims)."""
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
    claim_set = claim_set_for(out, claims)
    summary, cl = summary_section(shown, sens, manifest, info, claim_set, out, rep)
    if claim_set is None:
        from .claims import standard_claims

        claim_set = standard_claims(info.get("map"), shown)
    sections = [summary, data_section(out, info, assets), replication_section(out, rep, manifest, assets, stale=stale.get("replication"))]
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
                 sensitivity_section(out, sens, manifest, assets)]
    mv_path = out / "multiverse" / "summary.json"
    mv = read_json(mv_path) if mv_path.exists() else None
    if mv is not None and (not ref or same_data(mv.get("data"), ref) is not False):
        sections.append(multiverse_section(out, mv, assets))  # only where one was run on this data
    sections.append(manifest_section(out, manifest, fits))
    from .claims import VERDICT_NAMES

    counts = {v: sum(c["verdict"] == v for c in cl) for v in VERDICT_NAMES}
    counts = {v: n for v, n in counts.items() if n}
    failed = [m for m, s in shown.items() if not s.get("diagnostics", {}).get("passed")]
    return {
        "title": claim_set.title,
        "study": claim_set.citation,
        "data_path": info.get("path"),
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


def build_report(out: str | Path, claims: str | Path | None = None) -> dict[str, Path]:
    """Write DIR/report.html and DIR/report.md from the saved results; returns their paths.
    ``claims``: a claims file (TOML; see :mod:`.claims`); default DIR/claims.toml where the run
    saved one, else the standard claims worded from the column map."""
    out = Path(out)
    with output_root(out):
        ctx = context(out, claims)
        env = _env()
        html = env.get_template("report.html.j2").render(**ctx)
        md = env.get_template("report.md.j2").render(**ctx)
        paths = {"html": write_atomic(out / "report.html", html), "md": write_atomic(out / "report.md", md)}
        # the paper-style tables (esttab form) beside the report: DIR/tables/*.{tex,md,html}
        from .paper_tables import write_tables

        paths.update({f"tables/{k}": v for k, v in write_tables(out).items()})
        return paths
