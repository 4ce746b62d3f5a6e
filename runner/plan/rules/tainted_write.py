"""tainted-write: a write argument bound from untrusted data is checked by a gate, or approved."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx

from runner.errors import Diagnostic
from runner.expr.refs import Ref, cel_refs
from runner.plan.gating import guards
from runner.plan.taint import tainted_args, tainted_nodes, write_step

RULE = "tainted-write"


def _text(ref: Ref) -> str:
    return ref.root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in ref.path)


def _overlaps(a: Ref, b: Ref) -> bool:
    if a.root != b.root:
        return False
    n = min(len(a.path), len(b.path))
    return n >= 3 and a.path[:n] == b.path[:n] if a.root == "nodes" else a.path[:n] == b.path[:n]


def _findings(
    node: Any,
    guard_nodes: list[Any],
    tainted: set[str],
) -> Iterable[tuple[str, Ref]]:
    """Each tainted argument of a write node that none of its guards checks: (arg, ref)."""
    if write_step(node) is None:
        return
    if any(x.approval is not None and x.approval.when is None for x in guard_nodes):
        return  # a person always looks at this call
    checked: list[Ref] = []
    for x in guard_nodes:
        if x.gate is not None:
            for expr, _ in x.gate.checks:
                checked += cel_refs(expr.source)
    for arg, refs in sorted(tainted_args(node, tainted).items()):
        unchecked = [r for r in refs if not any(_overlaps(r, c) for c in checked)]
        if unchecked:
            yield arg, unchecked[0]


def _diag(compiler: Any, path: tuple[Any, ...], label: str, arg: str, ref: Ref) -> Diagnostic:
    return compiler.src.diag(  # type: ignore[no-any-return]
        path,
        RULE,
        f"argument {arg!r} of write node {label!r} comes from untrusted data "
        f"({_text(ref)}) that no gate before it checks",
        hint=f"add a check on {_text(ref)} to a gate it needs, or an approval without `when`",
        key=True,
    )


def _loop_findings(
    compiler: Any, node_id: str, pn: Any, outer_guards: list[Any], outer_tainted: set[str]
) -> Iterable[Diagnostic]:
    """Writes in a loop body: guarded by the gates around the loop and those before them in
    the body; tainted by outer nodes and by body nodes that read them."""
    body = pn.loop.body
    tainted = tainted_nodes(body.graph, body.nodes, outer_tainted)
    bg = guards(body.graph, body.nodes)
    spec_body = compiler.spec.nodes[node_id].loop.body
    for bid in body.order:
        inner = body.nodes[bid]
        if getattr(spec_body.get(bid), "ungated", None):
            continue
        guard_nodes = outer_guards + [body.nodes[x] for x in bg.get(bid, ()) if x in body.nodes]
        if not guard_nodes:
            continue  # ungated writes are reported by ungated-write
        for arg, ref in _findings(inner, guard_nodes, tainted):
            path = ("nodes", node_id, "loop", "body", bid)
            yield _diag(compiler, path, f"{node_id}.{bid}", arg, ref)


def check(
    compiler: Any, graph: nx.DiGraph, nodes: Mapping[str, Any], switches_of: Any
) -> Iterable[Diagnostic]:
    g = guards(graph, nodes)
    if not g:
        return
    tainted = tainted_nodes(graph, nodes)
    for node_id in compiler.node_ids:
        pn = nodes.get(node_id)
        if pn is None:
            continue
        guard_nodes = [nodes[x] for x in g.get(node_id, ()) if x in nodes]
        if pn.loop is not None:
            yield from _loop_findings(compiler, node_id, pn, guard_nodes, tainted)
            continue
        if write_step(pn) is None or not g.get(node_id):
            continue  # ungated writes are reported by ungated-write
        if getattr(compiler.spec.nodes[node_id], "ungated", None):
            continue
        for arg, ref in _findings(pn, guard_nodes, tainted):
            yield _diag(compiler, ("nodes", node_id), node_id, arg, ref)
