"""unreachable-node: a node that can never run (a false `when`, or exclusive switch branches)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runner.errors import Diagnostic
from runner.plan.digraph import DiGraph, is_dag, topological_sort

RULE = "unreachable-node"


def _branches(node: Any) -> list[frozenset[str]]:
    sw = node.switch
    out = [frozenset(t) for _, t in sw.cases]
    out.append(frozenset(sw.default))
    return out


def check(
    compiler: Any,
    graph: DiGraph[str],
    nodes: Mapping[str, Any],
    switches_of: Mapping[str, list[str]],
) -> Iterable[Diagnostic]:
    if not is_dag(graph):
        return
    dead: dict[str, str] = {}
    for node_id in topological_sort(graph, key=compiler.order_index.__getitem__):
        pn = nodes.get(node_id)
        if pn is None:
            continue
        reason = None
        if pn.when is not None and pn.when.source.strip() == "false":
            reason = "its `when` is always false"
        preds = list(graph.predecessors(node_id))
        if reason is None and preds:
            dead_preds = [p for p in preds if p in dead]
            if pn.join == "all" and dead_preds:
                reason = f"it needs {dead_preds[0]!r}, which can never run"
            elif pn.join == "any" and len(dead_preds) == len(preds):
                reason = "every node it needs can never run"
        if reason is None and pn.join == "all":
            reason = _exclusive(node_id, preds, nodes, switches_of)
        if reason is not None:
            dead[node_id] = reason
            yield compiler.src.diag(
                ("nodes", node_id),
                RULE,
                f"node {node_id!r} can never run: {reason}",
                hint="remove it, fix the condition, or set `join: any` to run after either branch",
                key=True,
            )


def _exclusive(
    node_id: str, preds: list[str], nodes: Mapping[str, Any], switches_of: Mapping[str, list[str]]
) -> str | None:
    """Two needed nodes that sit only on different branches of one switch exclude each other."""
    by_switch: dict[str, list[str]] = {}
    for p in preds:
        for sw in switches_of.get(p, ()):
            by_switch.setdefault(sw, []).append(p)
    for sw, members in by_switch.items():
        if len(members) < 2 or sw not in nodes:
            continue
        branches = _branches(nodes[sw])
        if not any(all(m in b for m in members) for b in branches):
            return f"{members[0]!r} and {members[1]!r} are on different branches of switch {sw!r}"
    return None
