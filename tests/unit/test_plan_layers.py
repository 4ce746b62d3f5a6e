"""The compiler's modules import no later layer and no cycle among themselves."""

from __future__ import annotations

import ast
from pathlib import Path

PLAN = Path(__file__).resolve().parents[2] / "runner" / "plan"
# layers after the plan (runner/mcp's lock and contracts are compile-time inputs, allowed)
LATER = ("runner.engine", "runner.nodes", "runner.store", "runner.temporal", "runner.runs",
         "runner.cli", "runner.web", "runner.trace", "runner.backends")  # fmt: skip


def _module(path: Path) -> str:
    rel = path.relative_to(PLAN.parents[1]).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded = {
        line
        for n in ast.walk(tree)
        if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
        for b in n.body
        for line in range(b.lineno, (b.end_lineno or b.lineno) + 1)
    }
    out: set[str] = set()
    for n in ast.walk(tree):
        if getattr(n, "lineno", None) in guarded:
            continue
        if isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
            out.add(n.module)
            out.update(f"{n.module}.{a.name}" for a in n.names)
    return {m for m in out if m.startswith("runner")}


def _graph() -> dict[str, set[str]]:
    files = {_module(f): f for f in PLAN.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, f in files.items():
        deps = set()
        for name in _imports(f):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != mod and not mod.startswith(name + "."):
                deps.add(name)
        graph[mod] = deps
    return graph


def test_plan_imports_no_later_layer() -> None:
    bad = {
        (_module(f), name)
        for f in PLAN.rglob("*.py")
        for name in _imports(f)
        if name.startswith(LATER)
    }
    assert bad == set()


def test_plan_modules_have_no_import_cycle() -> None:
    graph = _graph()
    done: set[str] = set()

    def visit(mod: str, path: tuple[str, ...]) -> None:
        assert mod not in path, " -> ".join((*path[path.index(mod) :], mod))
        if mod in done:
            return
        for dep in sorted(graph[mod]):
            visit(dep, (*path, mod))
        done.add(mod)

    for mod in sorted(graph):
        visit(mod, ())
    assert "runner.plan.kinds" in graph and "runner.plan.compiler" in graph
