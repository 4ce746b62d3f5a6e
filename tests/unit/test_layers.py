"""The layers of runner/ point one way, and no module imports itself back through others.

    errors, files ─▶ expr, spec, models ─▶ policy ─▶ plan (and what reads plans: graph, diff)
    ─▶ store ─▶ engine (scheduler, envelope, nodes) ─▶ trace ─▶ backends (local, temporal)
    ─▶ runs ─▶ entry points (cli, web, mcp serve, evals, scaffold)

Every import counts, at module level or inside a function (a lazy import is still a
dependency); imports under `if TYPE_CHECKING:` do not. See docs/architecture.md.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[2] / "runner"

# the most specific prefix wins; a module under no prefix is an error (place new packages here)
LAYERS: dict[str, int] = {
    "runner": 0,
    "runner.errors": 0,
    "runner.redact": 0,
    "runner.files": 0,
    "runner.jsontext": 0,
    "runner.pydantic_plugins": 0,
    "runner.signing": 0,
    "runner.expr": 1,
    "runner.spec": 1,
    "runner.models": 1,
    "runner.mcp.client": 1,
    "runner.mcp.lock": 1,
    "runner.policy": 2,
    "runner.plan": 3,
    "runner.mcp.contracts": 3,
    "runner.mcp.locking": 3,
    "runner.graph": 3,
    "runner.diff": 3,
    "runner.summary": 3,
    "runner.store": 4,
    "runner.engine": 5,
    "runner.nodes": 5,
    "runner.mcp.pool": 5,
    "runner.trace": 6,
    "runner.backends": 7,
    "runner.temporal": 7,
    "runner.runs": 8,
    "runner.options": 8,  # checks of command-line options, used by runs/ and the commands
    "runner.trace.replay": 8,
    "runner.evals": 9,
    "runner.progress": 9,
    "runner.scaffold": 9,
    "runner.web": 9,
    "runner.mcp.serve": 9,
    "runner.mcp.operate": 9,
    "runner.cli": 9,
    "runner.batch_cli": 9,
    "runner.budgets_cli": 9,
    "runner.ops_cli": 9,
    "runner.eval_cli": 9,
    "runner.init_cli": 9,
    "runner.mcp_cli": 9,
    "runner.policy_cli": 9,
    "runner.review_cli": 9,
    "runner.readiness_cli": 9,
    "runner.autonomy_cli": 9,
    "runner.shadow_cli": 9,
    "runner.temporal_cli": 9,
    "runner.trace_cli": 9,
    "runner.store_cli": 9,
    "runner.web_cli": 9,
    "runner.users_cli": 9,
    "runner.intake_cli": 9,
    "runner.vault_cli": 9,
}
ENTRY = 9
# what an entry point reaches only through runs/: the backends and the store's SQL
BEHIND_RUNS = (
    "runner.backends",
    "runner.temporal",
    "runner.store.sqlite",
    "runner.store.postgres",
    "runner.engine.run",
)


def _modules() -> dict[str, Path]:
    out = {}
    for f in RUNNER.rglob("*.py"):
        name = ".".join(("runner", *f.relative_to(RUNNER).with_suffix("").parts))
        out[name.removesuffix(".__init__")] = f
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
            for b in n.body:
                skip.update(range(b.lineno, (b.end_lineno or b.lineno) + 1))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for n in ast.walk(tree):
        if getattr(n, "lineno", None) in skip:
            continue
        targets: list[str] = []
        if isinstance(n, ast.Import):
            targets = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (n.level - 1)] + ([base] if base else []))
            targets = [base, *(f"{base}.{a.name}" for a in n.names)]
        for t in targets:
            r = _resolve(t) if t.startswith("runner") else None
            if r and r != name and not name.startswith(r + ".") and r != "runner":
                found.add(r)
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _layer(name: str) -> int | None:
    while name:
        if name in LAYERS:
            return LAYERS[name]
        name = name.rpartition(".")[0]
    return None


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if _layer(m) is None] == []


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
        for m, targets in GRAPH.items()
        for t in sorted(targets)
        if (_layer(t) or 0) > (_layer(m) or 0)
    ]
    assert upward == []


def test_entry_points_reach_backends_and_the_store_only_through_runs() -> None:
    direct = [
        f"{m} imports {t}"
        for m, targets in GRAPH.items()
        if _layer(m) == ENTRY
        for t in sorted(targets)
        if any(t == b or t.startswith(b + ".") for b in BEHIND_RUNS)
    ]
    assert direct == []


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert cycles == []


# SQL a module outside runner/store/ might run: the store's interface has a method for each
# question (runner/store/base.py), so no caller depends on one database's dialect
_SQL = re.compile(
    r"\b(SELECT\b.+\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
    r"CREATE\s+(TABLE|INDEX)|PRAGMA)\b",
    re.IGNORECASE | re.DOTALL,
)
_DRIVERS = ("sqlite3", "psycopg", "psycopg_pool")


def _sql_outside_the_store(name: str, path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for n in ast.walk(tree):
        where = f"{name}:{getattr(n, 'lineno', '?')}"
        if isinstance(n, ast.Attribute) and n.attr in ("conn", "tx"):
            found.append(f"{where} uses .{n.attr}")
        elif isinstance(n, ast.Import | ast.ImportFrom):
            mods = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]
            found += [f"{where} imports {m}" for m in mods if m.split(".")[0] in _DRIVERS]
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and _SQL.search(n.value):
            found.append(f"{where} has SQL {n.value[:40]!r}")
    return found


def test_only_the_store_runs_sql() -> None:
    found = [
        f
        for m, p in sorted(MODULES.items())
        if not (m == "runner.store" or m.startswith("runner.store."))
        for f in _sql_outside_the_store(m, p)
    ]
    assert found == []
