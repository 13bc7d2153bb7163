"""The package's modules import each other without cycles (module-level and deferred imports
alike): results flow panel -> model -> estimands -> summary.json -> report, never back."""

from __future__ import annotations

import ast

from bayes_nqp.data import REPO_ROOT

SRC = REPO_ROOT / "src"
PKG = SRC / "bayes_nqp"


def _module_name(path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules]
                targets = subs or [mod]
            for t in targets:
                while t and t not in modules:
                    t = t.rsplit(".", 1)[0] if "." in t else ""
                # a submodule importing its own package's __init__ is not a design cycle
                if t and t != name and not name.startswith(t + "."):
                    graph[name].add(t)
    return graph


def _cycles(graph) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def test_no_import_cycles_between_the_packages_modules():
    # package __init__ files re-export their submodules; edges into them are the submodules'
    graph = {n: {m for m in e if not (PKG / (m.replace("bayes_nqp", "", 1).replace(".", "/").lstrip("/")) / "__init__.py").exists()}
             for n, e in _graph().items()}
    assert _cycles(graph) == []


def test_the_former_cycles_are_gone():
    g = _graph()
    assert "bayes_nqp.bayes.sensitivity" not in g["bayes_nqp.bayes.fit"]
    assert "bayes_nqp.pipeline" not in g["bayes_nqp.report.build"]


def test_bayes_fit_does_not_run_the_replication():
    # the counterpart sections of bn.fit's comparison are the caller's (counterparts.py)
    g = _graph()
    assert not [m for m in g["bayes_nqp.bayes.fit"] if m.startswith("bayes_nqp.frequentist")]
    assert "bayes_nqp.frequentist" in g["bayes_nqp.counterparts"]
