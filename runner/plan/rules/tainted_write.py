"""tainted-write: a write argument bound from untrusted data is checked by a gate, or approved.

What counts as a check is defined in runner/plan/clearing.py (and docs/security.md); taint
itself (through tools, LLM prompts, map items, loop passes and subflows) in runner/plan/taint.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runner.errors import Diagnostic
from runner.expr.refs import ANY_INDEX, Ref
from runner.plan.digraph import DiGraph, is_dag
from runner.plan.taint import TaintPath, plan_taint_paths

RULE = "tainted-write"
CLEARS = (
    "compare it with trusted data (== or in an allowlist), look it up in trusted data, bound it"
    " (<, >) or match an anchored allowlist regex, in a gate it needs; or add an approval"
    " without `when` whose summary shows it (docs/security.md)"
)


def ref_text(ref: Ref) -> str:
    parts = []
    for p in ref.path:
        parts.append("[*]" if p == ANY_INDEX else f"[{p}]" if isinstance(p, int) else f".{p}")
    return ref.root + "".join(parts)


def _diag(compiler: Any, p: TaintPath) -> Diagnostic:
    chain = " -> ".join(p.chain)
    if ":" in p.write:
        flow, _, inner = p.write.rpartition(":")
        what = f"argument {p.arg!r} of write node {inner!r} in the subflow of {flow!r}"
    else:
        what = f"argument {p.arg!r} of write node {p.write!r}"
    checks = [w for w in p.weak if not w.startswith("approval ")]
    asks = [w for w in p.weak if w.startswith("approval ")]
    if p.weak:
        said = [f"{'; '.join(checks)} mentions {ref_text(p.ref)} but does not clear it"]
        said = said if checks else []
        said += [f"{a} does not show {ref_text(p.ref)} in its summary" for a in asks]
        hint = f"{'; '.join(said)}: {CLEARS}"
    else:
        hint = f"check {ref_text(p.ref)}: {CLEARS}"
    return compiler.src.diag(  # type: ignore[no-any-return]
        p.where,
        RULE,
        f"{what} comes from untrusted data ({ref_text(p.ref)}) that no gate before it checks:"
        f" {chain}",
        hint=hint,
        key=True,
    )


def check(
    compiler: Any, graph: DiGraph[str], nodes: Mapping[str, Any], switches_of: Any
) -> Iterable[Diagnostic]:
    if not is_dag(graph):
        return
    order = [n for n in compiler.node_ids if n in nodes]
    seen: set[tuple[str, str]] = set()
    for p in plan_taint_paths(nodes, graph, order):
        if p.checked_by is None and (p.write, p.arg) not in seen:
            seen.add((p.write, p.arg))
            yield _diag(compiler, p)
