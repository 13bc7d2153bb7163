"""Claims and the reanalysis' verdict on each, by fixed rules written once (:data:`VERDICTS`).

What to know first: a claim is data. A claims file (TOML, ``--claims FILE``; the demo's is
``data/zhu_chen_2025_claims.toml``) gives the study's ``title`` and ``citation`` and a list of
``[[claim]]`` tables::

    [[claim]]
    id = "effect"                       # short, unique
    text = "The pilot raised the outcome (TWFE DID: significant positive effect)."
    model = "did"                       # the registered model whose fit judges it
    estimands = ["tau"]                 # what it rests on (every one must satisfy the rule)
    direction = "positive"              # positive | negative | nonzero | null
    rope = 0.05                         # null claims: half-width on the outcome's scale
    also = ["tau[size=large]"]          # shown alongside, not judged

Without a claims file, :func:`standard_claims` words the standard ones from the column map
(average effect, staggered-robust effect, each mediator, each group contrast, the threshold),
naming the map's outcome and treatment only.

The rules (:func:`judge`), for one estimand with posterior mean, 95% HDI and draws:

* a **directional** claim (positive / negative; a *comparative* claim is a directional claim on
  a contrast such as ``contrast[region:west-east]``) is judged on the two-sided 95% HDI: it lies
  on the claimed side of zero → supported; on the other side → contradicted; else not
  supported. P(>0) is shown, not used as the rule.
* a **nonzero** claim (a difference in either direction): the HDI excludes zero.
* a **null** claim ("no effect", "not significant") uses a region of practical equivalence, the
  ROPE ±r on the outcome's scale (the claim's ``rope``, the file's ``rope``, else
  :data:`ROPE_SD` × the outcome's sd): P(inside the ROPE) ≥ :data:`ROPE_MASS` → supported; the
  HDI entirely outside the ROPE → contradicted; the HDI excludes zero (but overlaps the ROPE) →
  not supported; otherwise (the HDI overlaps the ROPE and zero both) → inconclusive.

Then, for the claim as a whole (the worst verdict over its estimands): a fit that failed its
diagnostic gates, an estimand not refitted under every prior set, or a verdict that changes
under any prior set of the sensitivity stage, caps a supported claim at **weaker**; a
sensitivity analysis that undercuts the identification — the event study's pre-trend
breakdown M < 1 (claims on the two-way models), the mediation ρ-breakdown < 0.1 (that
mediator), a threshold that the LOO comparison of 0/1/2 thresholds does not prefer or whose
bootstrap test does not reject at 5 % — makes a supported or weaker claim **fragile**, with the
reason in words. A missing fit or estimand is **not assessed**, with the reason.

Under a prior set the ROPE mass is the normal approximation from the refit's mean and sd (the
refits keep summaries, not draws); the main fit's is counted from its draws where saved.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .. import estimands as E
from ..contract import HDI
from ..errors import SpecError

#: the default ROPE half-width, in outcome standard deviations
ROPE_SD = 0.1
#: the posterior mass inside the ROPE a "no effect" claim needs
ROPE_MASS = 0.95
#: pre-trend breakdown M below this makes a two-way claim fragile (Rambachan–Roth)
BREAKDOWN_M_MIN = 1.0
#: mediation: a ρ-breakdown below this makes the mediator's claim fragile
RHO_BREAKDOWN_MIN = 0.1
#: the bootstrap test of no threshold must reject at this level
THRESHOLD_ALPHA = 0.05

DIRECTIONS = ("positive", "negative", "nonzero", "null")

#: the verdict vocabulary and its rules: the one table (the report and the README show it)
VERDICTS: tuple[tuple[str, str], ...] = (
    ("supported", "Directional claim: the two-sided 95% HDI lies on the claimed side of zero (a "
                  "comparative claim: the HDI of the contrast itself). Null claim: at least "
                  f"{ROPE_MASS:.0%} of the posterior lies inside the ROPE (default ±{ROPE_SD} outcome "
                  "sd). And: the fit passed its gates, the verdict is the same under every prior set, "
                  "and no sensitivity analysis makes it fragile."),
    ("weaker", "Would be supported, but the fit failed its diagnostic gates, or the verdict changes "
               "under some prior set, or an estimand was not refitted under the other prior sets."),
    ("fragile", f"Would be supported or weaker, but a sensitivity analysis undercuts it: pre-trend "
                f"breakdown M < {BREAKDOWN_M_MIN:g}, mediation ρ-breakdown < {RHO_BREAKDOWN_MIN:g}, "
                f"or a threshold that LOO does not prefer or whose bootstrap test does not reject "
                f"(p ≥ {THRESHOLD_ALPHA:g})."),
    ("inconclusive", "Null claim: the HDI overlaps both the ROPE and zero, and less than "
                     f"{ROPE_MASS:.0%} of the posterior lies inside the ROPE."),
    ("not supported", "Directional claim: the HDI includes zero. Null claim: the HDI excludes "
                      "zero (an effect is found) but overlaps the ROPE."),
    ("contradicted", "Directional claim: the HDI lies on the other side of zero. Null claim: "
                     "the HDI lies entirely outside the ROPE."),
    ("not assessed", "The model was skipped or failed, or its fit lacks the estimand; the reason "
                     "is given."),
)
VERDICT_NAMES = tuple(v for v, _ in VERDICTS)
#: the order in which a claim resting on several estimands takes the worst
_RANK = {v: k for k, v in enumerate(("supported", "weaker", "fragile", "inconclusive",
                                     "not supported", "contradicted", "not assessed"))}

#: the file shipped for the demo
DEMO_CLAIMS = Path(__file__).resolve().parents[3] / "data" / "zhu_chen_2025_claims.toml"


# ---- the claims file ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    model: str
    estimands: tuple[str, ...]
    direction: str = "positive"
    rope: float | None = None
    also: tuple[str, ...] = ()

    def kind(self, summary: dict | None = None) -> str:
        """null, comparative (a claim on a contrast: an estimand whose stem in the fit's
        estimand index is ``contrast``) or directional."""
        if self.direction == "null":
            return "null"
        for n in self.estimands:
            e = lookup(summary, n) if summary else None
            if e and E.stem_of(summary, e.get("flipped_from") or e["name"]) == "contrast":
                return "comparative"
        return "directional"


@dataclass(frozen=True)
class ClaimSet:
    title: str
    citation: str | None
    claims: tuple[Claim, ...]
    rope: float | None = None           # the file's default ROPE (outcome scale)
    source: str | None = None           # the file, or "standard"
    notes: tuple[str, ...] = field(default_factory=tuple)


def load_claims(path: str | Path) -> ClaimSet:
    """Read and check a claims file (the module docstring gives its form)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"claims file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"claims file {path} is not valid TOML: {exc}") from None
    return claims_from_dict(raw, source=str(path))


def claims_from_dict(raw: dict, source: str | None = None) -> ClaimSet:
    where = source or "claims"
    rope = raw.get("rope")
    if rope is not None and not (isinstance(rope, (int, float)) and rope > 0):
        raise SpecError(f"{where}: rope must be a positive number on the outcome's scale, got {rope!r}")
    out, seen = [], set()
    for k, c in enumerate(raw.get("claim") or []):
        missing = [f for f in ("id", "text", "model", "estimands") if f not in c]
        if missing:
            raise SpecError(f"{where}: claim {k + 1} lacks {', '.join(missing)}")
        est = c["estimands"]
        est = [est] if isinstance(est, str) else list(est)
        d = c.get("direction", "positive")
        if d not in DIRECTIONS:
            raise SpecError(f"{where}: claim {c['id']!r}: direction {d!r} is not one of {', '.join(DIRECTIONS)}")
        r = c.get("rope")
        if r is not None and not (isinstance(r, (int, float)) and r > 0):
            raise SpecError(f"{where}: claim {c['id']!r}: rope must be a positive number, got {r!r}")
        if c["id"] in seen:
            raise SpecError(f"{where}: claim id {c['id']!r} is used twice")
        seen.add(c["id"])
        out.append(Claim(str(c["id"]), str(c["text"]), str(c["model"]), tuple(est), d,
                         None if r is None else float(r), tuple(c.get("also") or ())))
    return ClaimSet(str(raw.get("title") or "Bayesian reanalysis"), raw.get("citation"), tuple(out),
                    None if rope is None else float(rope), source)


def standard_claims(cmap: dict | None, fits: dict[str, dict]) -> ClaimSet:
    """The standard claims, worded from the column map (its outcome, treatment, mediators,
    groups, threshold variable) and the levels the heterogeneity fit holds; nothing of any study."""
    cmap = cmap or {}
    y = cmap.get("outcome") or "the outcome"
    d = cmap.get("treatment") or (f"treatment (first treated: {cmap['cohort']})" if cmap.get("cohort")
                                  else "the treatment")
    cl = [Claim("effect", f"The {d} raised {y} (two-way DID: a positive average effect).", "did", ("tau",)),
          Claim("effect_staggered", f"The positive effect of the {d} on {y} holds with an estimator "
                "robust to staggered adoption (imputation ATT).", "staggered", ("att",))]
    meds = list(cmap.get("mediators") or [])
    if not meds and "mediation" in fits:
        meds = [str(ix["coord"]) for _, ix in E.select(fits["mediation"], var="indirect")]
    for m in meds:
        cl.append(Claim(f"mediation_{m}", f"{m} mediates the effect on {y} (a positive indirect effect).",
                        "mediation", (f"indirect[{m}]",), also=(f"a[{m}]", f"b[{m}]", f"prop_mediated[{m}]")))
    hs = fits.get("heterogeneity", {})
    het = hs.get("params", {})
    levels = {(ix.get("group"), str(ix["coord"])): n for n, ix in E.select(hs, stem="tau") if "group" in ix}
    for name, ix in E.select(hs, stem="contrast"):
        g, b, a = ix.get("group"), str(ix.get("minuend")), str(ix.get("subtrahend"))
        cl.append(Claim(f"contrast_{g}_{b}_{a}", f"The effect on {y} differs between {g} = {b} and "
                        f"{g} = {a} (the contrast {b} − {a}).", "heterogeneity", (name,), "nonzero",
                        also=tuple(levels[k] for k in ((g, b), (g, a)) if k in levels)))
    if not het and cmap.get("groups"):
        for g in cmap["groups"]:
            cl.append(Claim(f"contrast_{g}", f"The effect on {y} differs between the levels of {g}.",
                            "heterogeneity", (f"contrast[{g}:*]",), "nonzero"))
    q = cmap.get("threshold")
    if q:
        cl.append(Claim("threshold", f"The effect on {y} changes at a threshold of {q} (larger above it).",
                        "threshold", ("slope_diff[2-1]",), also=("gamma[1]", "slope[1]", "slope[2]")))
    return ClaimSet(f"Bayesian reanalysis: the effect of {d} on {y}", None, tuple(cl), None, "standard")


# ---- estimands -------------------------------------------------------------------------------

def lookup(summary: dict, name: str) -> dict | None:
    """A params entry by name (levels matched case-insensitively); a contrast is found in either
    orientation (flipped if needed: mean and HDI change sign, P(>0) becomes 1 − P(>0))."""
    params = summary.get("params", {}) or {}
    key = _find(params, name)
    if key is not None:
        return {**params[key], "name": key}
    # a contrast named the other way round: the estimand index names each one's reverse
    low = name.lower()
    other = next((k for k, ix in E.select(summary) if str(ix.get("reverse", "")).lower() == low), None)
    if other is not None:
        e = params[other]
        lo, hi = e[HDI]
        return {"name": name, "mean": -e["mean"], "sd": e.get("sd"), HDI: [-hi, -lo],
                "p_positive": None if e.get("p_positive") is None else 1 - e["p_positive"],
                "flipped_from": other}
    return None


def _find(params: dict, name: str) -> str | None:
    if name in params:
        return name
    low = name.lower()
    return next((k for k in params if k.lower() == low), None)


def _normal_mass(mean, sd, lo, hi) -> float | None:
    if mean is None or not sd:
        return None
    z = lambda x: 0.5 * (1 + math.erf((x - mean) / (sd * math.sqrt(2))))  # noqa: E731
    return z(hi) - z(lo)


def judge(entry: dict, direction: str, rope: float | None = None,
          rope_mass: float | None = None) -> tuple[str, str]:
    """The verdict on one estimand (module docstring), with the reason in words."""
    lo, hi = entry[HDI]
    if lo is None or hi is None:
        return "not assessed", "no interval"
    iv = f"95% HDI [{lo:.3g}, {hi:.3g}]"
    if direction in ("positive", "negative"):
        sign = 1 if direction == "positive" else -1
        a, b = sorted((sign * lo, sign * hi))
        if a > 0:
            return "supported", f"{iv} excludes zero on the claimed side"
        if b < 0:
            return "contradicted", f"{iv} lies on the other side of zero"
        return "not supported", f"{iv} includes zero"
    if direction == "nonzero":
        if lo > 0 or hi < 0:
            return "supported", f"{iv} excludes zero"
        return "not supported", f"{iv} includes zero"
    if direction == "null":
        if rope is None:
            return "not assessed", "no ROPE (the outcome's sd is unknown and the claim gives none)"
        mass = rope_mass if rope_mass is not None else _normal_mass(entry.get("mean"), entry.get("sd"), -rope, rope)
        r = f"ROPE ±{rope:.3g}"
        m = "" if mass is None else f"P(in ROPE) = {mass:.2f}"
        if mass is not None and mass >= ROPE_MASS:
            return "supported", f"{m} ≥ {ROPE_MASS} ({r})"
        if lo > rope or hi < -rope:
            return "contradicted", f"{iv} lies outside the {r}"
        if lo > 0 or hi < 0:
            return "not supported", f"{iv} excludes zero (an effect), {m}"
        return "inconclusive", f"{iv} overlaps the {r} and zero; {m} < {ROPE_MASS}"
    raise SpecError(f"unknown claim direction {direction!r}")


def _sens_entries(sens: dict | None, key: str) -> dict[str, dict] | None:
    """prior set -> the estimand's summary under it; None when the estimand was not refitted."""
    if not sens:
        return None
    table = sens.get("table", {}) or {}
    k = _find(table, key)
    return None if k is None else table[k]


def _flip(e: dict) -> dict:
    lo, hi = e[HDI]
    return {**e, "mean": -e["mean"] if e.get("mean") is not None else None, HDI: [-hi, -lo],
            "p_positive": None if e.get("p_positive") is None else 1 - e["p_positive"]}


# ---- fragility ----------------------------------------------------------------------------------

def _parallel_trends(model: str) -> bool:
    """Whether the model is identified by parallel trends (``parallel_trends`` in its [model])."""
    from .. import registry

    try:
        return registry.info(model).parallel_trends
    except Exception:  # an unregistered model folder: no declaration
        return False


def fragility(claim: Claim, fits: dict[str, dict], replication: dict | None) -> list[str]:
    """The sensitivity analyses that undercut a claim, in words (empty: none does). Each is
    found by what the saved fits hold, not by model name: the pre-trend breakdown ``breakdown_M``
    of any fit (for claims on models declaring ``parallel_trends``), the claim's fit's
    ``rho_breakdown[m]`` (for ``indirect[m]``), its ``extras.n_thresholds`` (the LOO comparison
    of 0, 1 and 2 thresholds: the stage ``compare_thresholds``, saved as
    ``DIR/threshold/compare_thresholds.json`` and read into the fit's extras by
    :func:`.tables.load_fits`; a summary.json of before has it in its own extras) and the
    replication's bootstrap p-values of the threshold tests (for a fit that chose a number of
    thresholds)."""
    why = []
    s = fits.get(claim.model, {})
    if _parallel_trends(claim.model):
        for m, f in fits.items():
            es = (f.get("params") or {}).get("breakdown_M")
            M = es.get("mean") if isinstance(es, dict) else None
            if M is not None and M < BREAKDOWN_M_MIN:
                why.append(f"the pre-trend breakdown M = {M:.2f} < {BREAKDOWN_M_MIN:g} ({m}): a violation "
                           "of parallel trends smaller than the largest pre-period deviation would overturn it")
                break
    params = s.get("params") or {}
    rho = {ix["coord"]: n for n, ix in E.select(s, var="rho_breakdown")}
    for e in claim.estimands:
        ix = E.entry(s, _find(params, e) or e)
        if ix.get("var") == "indirect":
            m = ix["coord"]
            rb = params.get(rho.get(m, ""))
            r = rb.get("mean") if isinstance(rb, dict) else None
            if r is not None and abs(r) < RHO_BREAKDOWN_MIN:
                why.append(f"the mediation ρ-breakdown of {m} is {r:.2f} < {RHO_BREAKDOWN_MIN:g}: a "
                           "small mediator–outcome confounding would remove the indirect effect")
    ex = (s.get("extras") or {}).get("n_thresholds")
    if isinstance(ex, dict):
        if ex.get("preferred") == 0:
            why.append("LOO does not prefer a model with a threshold over one without")
        sec = (replication or {}).get(claim.model) or {}
        pv = sec.get("pvalues") or []
        if pv and pv[0] is not None and pv[0] >= THRESHOLD_ALPHA:
            why.append(f"the bootstrap test of no threshold does not reject (p = {pv[0]:.3f} ≥ "
                       f"{THRESHOLD_ALPHA:g})")
    return why


# ---- the claims and their verdicts ---------------------------------------------------------------

def evaluate(claim_set: ClaimSet, fits: dict[str, dict], sensitivity: dict[str, dict],
             status: dict[str, str], outcome_sd: float | None = None,
             replication: dict | None = None, rope_masses: dict | None = None) -> list[dict]:
    """Each claim with its verdict, its reason and its evidence.

    ``fits``: model -> summary.json; ``sensitivity``: model -> sensitivity summary.json;
    ``status``: model -> why it is missing; ``outcome_sd``: the outcome's sd (the default ROPE);
    ``rope_masses``: ``(model, estimand, rope) -> P(in ROPE)`` counted from draws, where known.
    """
    out = []
    for c in claim_set.claims:
        rope = c.rope or claim_set.rope or (ROPE_SD * outcome_sd if outcome_sd else None)
        s = fits.get(c.model)
        base = {"id": c.id, "claim": c.text, "model": c.model, "kind": c.kind(s),
                "direction": c.direction, "rope": rope if c.direction == "null" else None}
        if s is None:
            out.append({**base, "verdict": "not assessed", "why": status.get(c.model, f"the {c.model} model was not run"),
                        "evidence": []})
            continue
        ev, verdicts, whys, caps = [], [], [], []
        for n in list(c.estimands) + list(c.also):
            e = lookup(s, n)
            used = n in c.estimands
            if e is None:
                if used:
                    verdicts.append("not assessed")
                    whys.append(f"the {c.model} fit has no {n}")
                continue
            freq = (s.get("comparison", {}).get(e.get("flipped_from") or e["name"]) or {}).get("frequentist")
            if freq and e.get("flipped_from") and freq.get("estimate") is not None:
                ci = freq.get("ci95") or [None, None]
                freq = {**freq, "estimate": -freq["estimate"], "ci95": [-ci[1], -ci[0]] if None not in ci else ci}
            ev.append({**e, "name": n, "frequentist": freq, "used": used})
            if not used:
                continue
            mass = (rope_masses or {}).get((c.model, e.get("flipped_from") or e["name"], rope))
            v, why = judge(e, c.direction, rope, mass)
            ev[-1]["rope_mass"] = mass if mass is not None else (
                _normal_mass(e.get("mean"), e.get("sd"), -rope, rope) if rope and c.direction == "null" else None)
            verdicts.append(v)
            whys.append(f"{n}: {why}")
            # robustness: the same verdict under every prior set refitted
            sets = _sens_entries(sensitivity.get(c.model), e.get("flipped_from") or e["name"])
            if sets is None:
                caps.append(f"{n} was not refitted under the other prior sets")
            else:
                for set_name, se in sets.items():
                    se = _flip(se) if e.get("flipped_from") else se
                    if se.get(HDI) is None or None in se[HDI]:
                        continue
                    v2, _ = judge(se, c.direction, rope)
                    if v2 != v:
                        caps.append(f"{n} is {v2} under prior set '{set_name}'")
        if not verdicts:
            out.append({**base, "verdict": "not assessed", "why": "no estimand", "evidence": ev})
            continue
        worst = max(verdicts, key=lambda v: _RANK[v])
        why = "; ".join(w for w, v in zip(whys, verdicts) if v == worst) if worst != "supported" else "; ".join(whys)
        verdict, short = worst, why.split("; ")[0]
        if verdict == "supported":
            if not s.get("diagnostics", {}).get("passed"):
                caps.insert(0, "the fit failed its diagnostic gates")
                verdict, why, short = "weaker", why + "; but the fit failed its diagnostic gates", caps[0]
            elif caps:
                verdict, why, short = "weaker", why + "; but " + "; ".join(caps), caps[0]
        if verdict in ("supported", "weaker"):
            frag = fragility(c, fits, replication)
            if frag:
                verdict, why = "fragile", why + "; fragile: " + "; ".join(frag)
                short = "; ".join(f.split(":")[0] for f in frag)
        out.append({**base, "verdict": verdict, "why": why, "short": short, "evidence": ev})
    return out


def claims(fits: dict[str, dict], sensitivity: dict[str, dict], status: dict[str, str],
           mediators: list[str] | None = None, groups=None, threshold: str | None = None,
           claim_set: ClaimSet | None = None, cmap: dict | None = None, **kw) -> list[dict]:
    """The claims with their verdicts: those of ``claim_set``, else the standard ones from the
    column map ``cmap`` (``mediators`` and ``threshold`` fill it in where it is not given)."""
    if claim_set is None:
        cmap = dict(cmap or {})
        if mediators is not None:
            cmap.setdefault("mediators", mediators)
        if threshold is not None:
            cmap.setdefault("threshold", threshold)
        claim_set = standard_claims(cmap, fits)
    return evaluate(claim_set, fits, sensitivity, status, **kw)
