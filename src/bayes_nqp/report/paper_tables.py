"""Paper-style regression tables (esttab / fixest ``etable`` form) from saved results only.

One column per specification; under each coefficient its standard error (frequentist columns)
or posterior sd (Bayesian columns) in parentheses, and optionally the 95% interval in brackets;
then N, the number of clusters (units), fixed-effect rows, controls, and for Bayesian columns the
prior set, draws, R-hat and bulk ESS rows and whether the fit passed its gates. Rendered with
``maketables`` (the pyfixest authors' table library: LaTeX and great-tables HTML) and pandas'
Markdown writer, into ``DIR/tables/``::

    from bayes_nqp.report.paper_tables import write_tables
    write_tables("reports")     # DIR/tables/{replication,bayesian}.{tex,md,html}

Numbers are rounded per column to the precision of their uncertainty: at least 3 decimals, and
enough for two significant digits of the SE/sd (at most 6).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import estimands as E
from .. import registry
from .._logging import root_logger_kept
from ..contract import CI
from ..paths import output_root
from ..results import SIMULATED_NOTICE, read_json, write_atomic

log = logging.getLogger(__name__)

#: significance stars of the frequentist columns (two-sided p-values), esttab's default
STARS = ((0.01, "***"), (0.05, "**"), (0.10, "*"))
#: quantities saved among the params that are not posteriors (kept out of the tables)
NOT_POSTERIOR = frozenset(("breakdown_M", "n_thresholds", "rho_breakdown"))
FORMATS = ("tex", "md", "html")


@dataclass
class Column:
    """One specification: its coefficients (name -> estimate entry) and its footer rows."""

    label: str
    coefs: dict[str, dict] = field(default_factory=dict)   # {estimate, se, ci95, pvalue}
    footer: dict[str, str] = field(default_factory=dict)


def decimals(se) -> int:
    """Decimals to show for a number whose uncertainty is ``se``: two significant digits of
    the SE, at least 3 and at most 6 decimals."""
    try:
        se = abs(float(se))
    except (TypeError, ValueError):
        return 3
    if not math.isfinite(se) or se == 0:
        return 3
    return int(min(6, max(3, 1 - math.floor(math.log10(se)))))


def _fmt(v, d: int) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return f"{float(v):.{d}f}"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
        "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text) -> str:
    """Text made safe for LaTeX (model and parameter names come from the user's column names)."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def _stars(p) -> str:
    if p is None:
        return ""
    for cut, s in STARS:
        if p < cut:
            return s
    return ""


def _frame(columns: list[Column], labels: dict[str, str] | None, interval: bool,
           stars: bool) -> pd.DataFrame:
    """The table as a DataFrame: a row-group index (coef / stats) and one column per spec."""
    labels = labels or {}
    names: list[str] = []
    for c in columns:
        names += [n for n in c.coefs if n not in names]
    rows, index = [], []
    for n in names:
        est, unc, ivl = [], [], []
        for c in columns:
            e = c.coefs.get(n)
            if not e or e.get("estimate") is None:
                est.append(""), unc.append(""), ivl.append("")
                continue
            d = decimals(e.get("se"))
            est.append(_fmt(e["estimate"], d) + (_stars(e.get("pvalue")) if stars else ""))
            unc.append(f"({_fmt(e['se'], d)})" if e.get("se") is not None else "")
            ci = e.get(CI)
            ivl.append(f"[{_fmt(ci[0], d)}, {_fmt(ci[1], d)}]" if ci and None not in ci else "")
        rows += [est, unc] + ([ivl] if interval else [])
        index += [("coef", labels.get(n, n)), ("coef", "")] + ([("coef", " ")] if interval else [])
    keys: list[str] = []
    for c in columns:
        keys += [k for k in c.footer if k not in keys]
    for k in keys:
        rows.append([c.footer.get(k, "") for c in columns])
        index.append(("stats", k))
    df = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index),
                      columns=[f"({j + 1})" for j in range(len(columns))])
    df.columns = pd.MultiIndex.from_arrays([[c.label for c in columns], list(df.columns)])
    return df


@dataclass
class PaperTable:
    """A paper-style table: ``.frame`` (the DataFrame), ``.tex()``, ``.markdown()``, ``.html()``."""

    name: str
    frame: pd.DataFrame
    caption: str
    notes: str

    def _mtable(self, frame=None, caption=None, notes=None):
        with root_logger_kept():  # maketables imports pyfixest, whose import configures logging
            from maketables import MTable
        return MTable(self.frame if frame is None else frame, caption=caption or self.caption,
                      notes=notes or self.notes, rgroup_display=False, tab_label=f"tab:{self.name}")

    def tex(self) -> str:
        """LaTeX (booktabs, tabularx, threeparttable, makecell); every label escaped."""
        f = self.frame.map(tex_escape)
        f.index = pd.MultiIndex.from_tuples([(a, tex_escape(b)) for a, b in f.index])
        f.columns = pd.MultiIndex.from_tuples([(tex_escape(a), b) for a, b in f.columns])
        return self._mtable(f, tex_escape(self.caption), tex_escape(self.notes)).make("tex")

    def html(self) -> str:
        return self._mtable().make("html")

    def markdown(self) -> str:
        flat = self.frame.map(lambda v: str(v).replace("*", r"\*"))  # stars are not emphasis
        flat.index = [r for _, r in flat.index]
        flat.columns = [f"{a} {b}" for a, b in flat.columns]
        body = flat.to_markdown(tablefmt="pipe", stralign="center")
        return f"**{self.caption}**\n\n{body}\n\n{self.notes}\n"

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return self.markdown()


# ---- the replication's table -------------------------------------------------------------------

#: (summary key, column label, controls, estimator row); only keys present in the summary show
REPLICATION_COLUMNS = (
    ("did", "TWFE", "No", "TWFE"),
    ("did_controls", "TWFE", "Yes", "TWFE"),
    ("did_unit_mean", "Unit effects", "No", "mean of unit TWFE effects"),
    ("did_unit_mean_controls", "Unit effects", "Yes", "mean of unit TWFE effects"),
    ("sun_abraham", "Sun-Abraham", "No", "Sun and Abraham (2021)"),
    ("callaway_santanna", "Callaway-Sant'Anna", "No", "Callaway and Sant'Anna (2021)"),
)


def _outcome(data: dict, fallback: str = "outcome") -> str:
    return str(data.get("outcome") or fallback)


def replication_table(rep: dict, *, interval: bool = False, treatment: str = "Treatment") -> PaperTable:
    """The replication's main table: the average effect under each frequentist specification."""
    data = rep.get("data", {})
    cols = []
    for key, label, controls, estimator in REPLICATION_COLUMNS:
        e = rep.get(key)
        if not isinstance(e, dict):
            continue
        e = e.get("overall", e)
        if e.get("estimate") is None:
            continue
        n_obs = e.get("n_obs", data.get("n_obs"))
        n_units = e.get("n_units", data.get("n_units"))
        footer = {"Estimator": estimator,
                  "N": f"{int(n_obs):,}" if n_obs else "",
                  "Clusters (units)": f"{int(n_units):,}" if n_units else "",
                  "Unit FE": "Yes", "Year FE": "Yes", "Controls": controls}
        if e.get("n_treated_units"):
            footer["Treated units"] = f"{int(e['n_treated_units']):,}"
        if e.get("control_group"):
            footer["Comparison group"] = str(e["control_group"]).replace("_", "-")
        cols.append(Column(label, {"treatment": e}, footer))
    if not cols:
        raise ValueError("the replication summary holds no average-effect estimate")
    notes = ("Standard errors in parentheses: clustered by unit (CRV1) for TWFE, between-unit for the "
             "mean of the unit effects, the estimators' own for Sun-Abraham and Callaway-Sant'Anna"
             + (", 95% confidence intervals in brackets" if interval else "")
             + ". * p<0.10, ** p<0.05, *** p<0.01 (two-sided).")
    if data.get("simulated"):
        notes += " " + SIMULATED_NOTICE
    return PaperTable("replication", _frame(cols, {"treatment": treatment}, interval, stars=True),
                      "Replication: average effect of the treatment (frequentist)", notes)


# ---- the Bayesian models' table ----------------------------------------------------------------

def _posterior_entries(fs: dict, max_rows: int) -> dict[str, dict]:
    out = {}
    for name, p in fs.get("params", {}).items():
        if E.stem_of(fs, name) in NOT_POSTERIOR or p.get("sd") in (None, 0):
            continue
        out[name] = {"estimate": p.get("mean"), "se": p.get("sd"), CI: p.get("hdi95")}
        if len(out) >= max_rows:
            break
    return out


def bayesian_table(fits: dict[str, dict], *, interval: bool = True, max_rows: int = 8) -> PaperTable:
    """The Bayesian models' table: one column per fitted model (its first ``max_rows``
    estimands), posterior mean with the posterior sd beneath and the 95% HDI in brackets."""
    cols = []
    for name, fs in fits.items():
        d = fs.get("diagnostics", {})
        data, sampler = fs.get("data", {}), fs.get("sampler", {})
        opts = fs.get("spec", {}).get("options", {})
        rhat, ess = d.get("rhat_max"), d.get("ess_bulk_min")
        footer = {"N": f"{int(data['n_obs']):,}" if data.get("n_obs") else "",
                  "Units": f"{int(data['n_units']):,}" if data.get("n_units") else "",
                  "Unit effects": "Yes",
                  "Year effects": {"fixed": "Yes", "pooled": "Pooled"}.get(opts.get("year_effects"), "Yes"),
                  "Prior set": str(fs.get("priors", {}).get("name", "")),
                  "Chains x draws": (f"{sampler.get('chains')} x {sampler.get('draws')}"
                                     if sampler.get("chains") else ""),
                  "R-hat (max)": "" if rhat is None else f"{rhat:.3f}",
                  "ESS bulk (min)": "" if ess is None else f"{ess:,.0f}",
                  "Gates": "passed" if d.get("passed") else "FAILED"}
        try:
            label = registry.info(name).name
        except Exception:  # noqa: BLE001  (a model saved by a registry that no longer knows it)
            label = name
        cols.append(Column(label, _posterior_entries(fs, max_rows), footer))
    if not cols:
        raise ValueError("no Bayesian fit summaries to tabulate")
    notes = ("Posterior means; posterior standard deviations in parentheses"
             + (", 95% highest-density intervals in brackets" if interval else "")
             + ". Gates: R-hat <= 1.01, bulk ESS >= 400, no divergences.")
    if any(fs.get("data", {}).get("simulated") for fs in fits.values()):
        notes += " " + SIMULATED_NOTICE
    return PaperTable("bayesian", _frame(cols, None, interval, stars=False),
                      "Bayesian models: posterior summaries (outcome's original scale)", notes)


# ---- from a results folder ---------------------------------------------------------------------

def read_fits(out: str | Path) -> dict[str, dict]:
    """The saved Bayesian fit summaries of a results folder, in registry order."""
    out = Path(out)
    known = list(registry.names())
    found = [p.parent.name for p in sorted(out.glob("*/summary.json")) if p.parent.name != "replication"]
    order = [n for n in known if n in found] + [n for n in found if n not in known]
    manifest = read_json(out / "manifest.json") if (out / "manifest.json").exists() else {}
    stages = manifest.get("stages", {}) if isinstance(manifest, dict) else {}
    # a fit this run skipped or that errored is not shown even if an older one is on disk
    order = [n for n in order if stages.get(f"fit:{n}", {"status": "done"}).get("status") == "done"]
    fits = {}
    for n in order:
        s = read_json(out / n / "summary.json")
        if isinstance(s, dict) and "params" in s:
            fits[n] = s
    return fits


def tables(out: str | Path) -> dict[str, PaperTable]:
    """The paper tables a results folder supports (replication and/or bayesian)."""
    out = Path(out)
    res = {}
    rp = out / "replication" / "summary.json"
    if rp.exists():
        try:
            res["replication"] = replication_table(read_json(rp))
        except ValueError as exc:
            log.info("no replication table: %s", exc)
    fits = read_fits(out)
    if fits:
        res["bayesian"] = bayesian_table(fits)
    return res


def write_tables(out: str | Path) -> dict[str, Path]:
    """Write DIR/tables/<name>.{tex,md,html}; returns {"<name>.<fmt>": path}."""
    out = Path(out)
    written = {}
    with output_root(out):
        for name, t in tables(out).items():
            for fmt, text in (("tex", t.tex()), ("md", t.markdown()),
                              ("html", f"<!doctype html><meta charset='utf-8'>\n{t.html()}")):
                p = out / "tables" / f"{name}.{fmt}"
                p.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(p, text)
                written[f"{name}.{fmt}"] = p
    return written
