"""The Bayesian-vs-frequentist comparison: a pure function of a fit's summary, the replication's
summary and a mapping declared as data in the model's spec (``[[compare]]`` in models/<name>.toml).

What to know first: each ``[[compare]]`` entry says where in the replication summary a
frequentist counterpart of an estimand is found::

    [[compare]]
    param = "tau[{group}={level}]"              # the estimand (a template)
    estimate = "heterogeneity.{group}.{level}.estimate"   # a path into replication/summary.json
    ci = "heterogeneity.{group}.{level}.ci95"   # its interval (or se = "...": a normal interval)
    se = "heterogeneity.{group}.{level}.se"     # its standard error (optional beside ci)
    source = "split-sample TWFE ({group} = {level})"
    when = {effect = "common"}                  # optional: only for fits with these spec options

A path is dotted keys; ``{name}`` in a path runs over the keys of that dict (or the positions
of that list, when ``{name}`` also gives ``{name_1}``, the position counted from 1), and the same
names fill ``param`` and ``source``. A match counts only when the estimate is a number and the
fit has the estimand; for each estimand the first entry that matches wins (so a fallback is
written second). ``unique = true``: the entry applies only when its path matches exactly once;
``same_count = true``: only when it matches as often as the fit has elements of the estimand
variable the matches name (``slope(regime)``, by the fit's ``estimand_index``), so that, say, a replication with two thresholds is not paired with a
model of one. ``when``: the entry applies only when the fit's spec options have those values
(an option the spec does not set does not match), so that a model whose estimand changes with
an option is compared with the matching frequentist number.
"""

from __future__ import annotations

import re

from . import estimands as E
from .contract import CI, ComparisonEntry, Counterpart, as_summary

_VAR = re.compile(r"^\{(\w+)\}$")


def _bindings(node, parts: list[str], env: dict) -> list[tuple[dict, object]]:
    """Every (variable bindings, value) that a dotted path with ``{var}`` segments reaches."""
    if not parts:
        return [(env, node)]
    head, rest = parts[0], parts[1:]
    m = _VAR.match(head)
    if m is None or m.group(1) in env:
        key = env[m.group(1)] if m is not None else head
        if isinstance(node, dict) and key in node:
            return _bindings(node[key], rest, env)
        if isinstance(node, list) and str(key).isdigit() and int(key) < len(node):
            return _bindings(node[int(key)], rest, env)
        return []
    var, out = m.group(1), []
    if isinstance(node, dict):
        for key, child in node.items():
            out += _bindings(child, rest, {**env, var: str(key)})
    elif isinstance(node, list):
        for i, child in enumerate(node):
            out += _bindings(child, rest, {**env, var: str(i), f"{var}_1": str(i + 1)})
    return out


def _get(root, path: str, env: dict):
    found = _bindings(root, path.split("."), env)
    return found[0][1] if found else None


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def compare(fit_summary, replication: dict | None, mapping) -> dict[str, ComparisonEntry]:
    """``{estimand: ComparisonEntry}`` for every estimand of the fit that ``mapping`` (the
    spec's ``[[compare]]`` entries) finds a frequentist counterpart for in ``replication``;
    in the order of the fit's estimands."""
    from .results import Z_INTERVAL

    s = as_summary(fit_summary)
    if not replication:
        return {}
    found: dict[str, ComparisonEntry] = {}
    options = (s.spec or {}).get("options", {})
    for entry in mapping or ():
        if any(options.get(k) != v for k, v in (entry.get("when") or {}).items()):
            continue
        matches = [(env, v) for env, v in _bindings(replication, entry["estimate"].split("."), {})
                   if _number(v)]
        if entry.get("unique") and len(matches) != 1:
            continue
        if entry.get("same_count"):
            names = [entry["param"].format(**env) for env, _ in matches]
            variables = {E.entry(s, n).get("var") for n in names if n in s.params} - {None}
            if len(matches) != sum(len(E.select(s, var=v)) for v in variables):
                continue
        for env, est in matches:
            param = entry["param"].format(**env)
            if param in found or param not in s.params:
                continue
            se = _get(replication, entry["se"], env) if "se" in entry else None
            se = se if _number(se) else None
            if "ci" in entry:
                ci = _get(replication, entry["ci"], env)
            else:
                ci = None if se is None else [est - Z_INTERVAL * se, est + Z_INTERVAL * se]
            f = Counterpart.from_json({"estimate": est, CI: ci, "se": se,
                                       "source": entry.get("source", "").format(**env) or None})
            found[param] = ComparisonEntry(f, s.params[param])
    return {k: found[k] for k in s.params if k in found}

