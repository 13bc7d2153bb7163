"""The study's claims, and the reanalysis' verdict on each, by fixed rules.

Each claim rests on one or more estimands that the claim says are positive. Let ``p`` be the
smallest posterior probability P(>0) among them.

* **supported** — ``p ≥ 0.95``, the fit passed its diagnostic gates, and, where prior-sensitivity
  refits exist, ``p ≥ 0.95`` under every prior set;
* **weaker** — ``0.8 ≤ p < 0.95``; or ``p ≥ 0.95`` under the default priors but not under every
  prior set; or the fit failed its gates (the numbers are then not reliable enough to support);
* **not supported** — ``p < 0.8``;
* **not assessed** — the model was skipped (a role the column map lacks) or failed; the reason
  is given.

Heterogeneity claims rest on the *contrasts* between groups, because "significant here, not
there" is a comparison of p-values, not evidence of a difference: "east and west positive,
central not" is judged by P(east − central > 0) and P(west − central > 0), with the group effects
shown alongside; "large cities negative or not significant, medium and small positive" by
P(medium − large > 0) and P(small − large > 0), plus P(>0) of the medium and small effects.
A contrast stored the other way round (``contrast[g:b-a]``) is flipped: mean and HDI change sign,
P(>0) becomes 1 − P(>0).
"""

from __future__ import annotations

from ..contract import CI, HDI

SUPPORT = 0.95
WEAK = 0.80

REGION_NAMES = ("region", "location", "area", "zone")
SIZE_NAMES = ("size", "city_size", "scale")


def verdict(p_min: float | None, passed: bool, p_min_sets: float | None) -> tuple[str, str]:
    """(verdict, why) from the smallest P(>0), the gates, and the smallest P(>0) over prior sets."""
    if p_min is None:
        return "not assessed", "no estimate"
    if p_min < WEAK:
        return "not supported", f"P(>0) = {p_min:.2f} < {WEAK}"
    if p_min < SUPPORT:
        return "weaker", f"P(>0) = {p_min:.2f}, between {WEAK} and {SUPPORT}"
    if not passed:
        return "weaker", "P(>0) ≥ 0.95, but the fit failed its diagnostic gates"
    if p_min_sets is not None and p_min_sets < SUPPORT:
        return "weaker", (f"P(>0) ≥ {SUPPORT} under the default priors, {p_min_sets:.2f} under "
                          "another prior set")
    return "supported", f"P(>0) ≥ {SUPPORT}" + (" under every prior set" if p_min_sets is not None else "")


def lookup(summary: dict, name: str) -> dict | None:
    """A params entry by name; a contrast is found in either orientation (flipped if needed)."""
    params = summary.get("params", {})
    if name in params:
        e = dict(params[name])
        e["name"] = name
        return e
    if name.startswith("contrast[") and ":" in name and "-" in name:
        g, pair = name[len("contrast["):-1].split(":", 1)
        a, b = pair.split("-", 1)
        other = f"contrast[{g}:{b}-{a}]"
        if other in params:
            e = params[other]
            lo, hi = e[HDI]
            return {"name": name, "mean": -e["mean"], "sd": e.get("sd"), HDI: [-hi, -lo],
                    "p_positive": 1 - e["p_positive"], "flipped_from": other}
    return None


def _sens_p(sens: dict | None, name: str, flipped_from: str | None) -> float | None:
    """The smallest P(>0) of an estimand over the prior sets of a sensitivity run."""
    if not sens:
        return None
    table = sens.get("table", {})
    key = flipped_from or name
    if key not in table:
        return None
    ps = [v.get("p_positive") for v in table[key].values() if v.get("p_positive") is not None]
    if not ps:
        return None
    return min(1 - p for p in ps) if flipped_from else min(ps)


def _find_group(groups: dict, names: tuple, levels: set) -> str | None:
    for g in groups:
        if g.lower() in names:
            return g
    for g, lv in groups.items():
        if levels <= {str(x).lower() for x in lv}:
            return g
    return None


def _levels(fits: dict) -> dict[str, list[str]]:
    """Group name -> levels, read off the heterogeneity model's ``tau[<g>=<level>]`` params."""
    out: dict[str, list[str]] = {}
    for name in fits.get("heterogeneity", {}).get("params", {}):
        if name.startswith("tau[") and "=" in name:
            g, lv = name[4:-1].split("=", 1)
            out.setdefault(g, []).append(lv)
    return out


def _level(levels: list[str], want: str) -> str | None:
    return next((lv for lv in levels if lv.lower() == want), None)


def claims(fits: dict[str, dict], sensitivity: dict[str, dict], status: dict[str, str],
           mediators: list[str], groups: dict[str, list[str]] | None = None,
           threshold: str | None = None) -> list[dict]:
    """The claims with their verdicts.

    ``fits``: model -> summary.json; ``sensitivity``: model -> sensitivity summary.json;
    ``status``: model -> why it is missing (skipped/failed reason) when it is; ``mediators``:
    the map's mediators; ``groups``: group -> levels (default: read off the heterogeneity fit).
    """
    groups = groups or _levels(fits)
    out: list[dict] = []

    def add(cid, text, model, names, extra_names=(), note=""):
        s = fits.get(model)
        if s is None:
            out.append({"id": cid, "claim": text, "model": model, "verdict": "not assessed",
                        "why": status.get(model, f"the {model} model was not run"), "evidence": []})
            return
        ev, ps, psets = [], [], []
        for n in list(names) + list(extra_names):
            e = lookup(s, n)
            if e is None:
                continue
            freq = (s.get("comparison", {}).get(e.get("flipped_from") or n) or {}).get("frequentist")
            if freq and e.get("flipped_from"):
                ci = freq.get(CI) or [None, None]
                freq = {**freq, "estimate": -freq["estimate"] if freq.get("estimate") is not None else None,
                        CI: [-ci[1], -ci[0]] if None not in ci else ci}
            ev.append({**e, "name": n, "frequentist": freq, "used": n in names})
            if n in names:
                ps.append(e["p_positive"])
                sp = _sens_p(sensitivity.get(model), n, e.get("flipped_from"))
                if sp is not None:
                    psets.append(sp)
        if not ps:
            out.append({"id": cid, "claim": text, "model": model, "verdict": "not assessed",
                        "why": f"the {model} fit has none of {', '.join(names)}", "evidence": ev})
            return
        passed = bool(s.get("diagnostics", {}).get("passed"))
        v, why = verdict(min(ps), passed, min(psets) if psets else None)
        out.append({"id": cid, "claim": text, "model": model, "verdict": v,
                    "why": why + (f"; {note}" if note else ""), "evidence": ev})

    add("effect", "The smart-city pilot raised new quality productivity (TWFE DID: significant "
        "positive effect).", "did", ["tau"])
    add("effect_staggered", "The positive effect holds with an estimator robust to staggered "
        "adoption (not in the study: the reanalysis' question).", "staggered", ["att"])

    if mediators:
        for m in mediators:
            add(f"mediation_{m}", f"{m} mediates the effect (positive indirect effect; the study: "
                "human capital and the level of science and technology both mediate).",
                "mediation", [f"indirect[{m}]"], [f"a[{m}]", f"b[{m}]", f"prop_mediated[{m}]"])
    else:
        out.append({"id": "mediation", "claim": "Human capital and science and technology mediate "
                    "the effect.", "model": "mediation", "verdict": "not assessed",
                    "why": status.get("mediation", "the column map names no mediators"), "evidence": []})

    region = _find_group(groups, REGION_NAMES, {"east", "central", "west"})
    if region:
        lv = groups[region]
        east, central, west = (_level(lv, x) for x in ("east", "central", "west"))
        if east:
            add("region_east", "Positive effect in the eastern region.", "heterogeneity",
                [f"tau[{region}={east}]"])
        if west:
            add("region_west", "Positive effect in the western region (the study: stronger "
                "evidence in the west).", "heterogeneity", [f"tau[{region}={west}]"])
        if central and (east or west):
            names = [f"contrast[{region}:{x}-{central}]" for x in (east, west) if x]
            add("region_central", "The central region differs: not significant there, unlike the "
                "east and the west (judged by the contrasts east − central and west − central).",
                "heterogeneity", names, [f"tau[{region}={central}]"])
    else:
        out.append({"id": "region", "claim": "East and west positive, central not.",
                    "model": "heterogeneity", "verdict": "not assessed",
                    "why": status.get("heterogeneity", "no region group (east/central/west) in the "
                                      "column map"), "evidence": []})

    size = _find_group(groups, SIZE_NAMES, {"large", "small"})
    if size:
        lv = groups[size]
        large, medium, small = (_level(lv, x) for x in ("large", "medium", "small"))
        pos = [f"tau[{size}={x}]" for x in (medium, small) if x]
        if pos:
            add("size_medium_small", "Positive effect in medium and small cities.", "heterogeneity", pos)
        if large and pos:
            names = [f"contrast[{size}:{x}-{large}]" for x in (medium, small) if x]
            add("size_large", "Large cities: negative and not significant (judged by the contrasts "
                "medium − large and small − large).", "heterogeneity", names,
                [f"tau[{size}={large}]"])
    else:
        out.append({"id": "size", "claim": "Large cities negative / not significant; medium and "
                    "small positive.", "model": "heterogeneity", "verdict": "not assessed",
                    "why": status.get("heterogeneity", "no size group (large/medium/small) in the "
                                      "column map"), "evidence": []})

    q = threshold or "the threshold variable"
    add("threshold", f"A threshold in {q}: the effect is stronger above it (Hansen panel "
        "threshold).", "threshold", ["slope_diff[2-1]"], ["gamma[1]", "slope[1]", "slope[2]"])
    return out
