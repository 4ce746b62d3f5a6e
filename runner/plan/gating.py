"""Which gates and approvals must have passed before a node can run.

A node with `join: all` runs only after every node it needs ran, so it inherits the guards of
all of them; a node with `join: any` only those common to every alternative. This is the
dominator relation of the graph, refined by join semantics.
"""

from __future__ import annotations

from collections.abc import Mapping

from runner.plan.digraph import DiGraph, is_dag, topological_sort
from runner.plan.model import PlanNode

GUARD_KINDS = ("gate", "approval")


def guards(graph: DiGraph[str], nodes: Mapping[str, PlanNode]) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    if not is_dag(graph):
        return out
    for n in topological_sort(graph):
        pn = nodes.get(n)
        preds = [p for p in graph.predecessors(n) if p in out]
        g: frozenset[str] = frozenset()
        if preds:
            sets = [out[p] for p in preds]
            if pn is None or pn.join == "all":
                g = frozenset().union(*sets)
            else:
                g = frozenset.intersection(*sets)
        if pn is not None and pn.kind in GUARD_KINDS:
            g = g | {n}
        out[n] = g
    return out


def ungated_path(graph: DiGraph[str], node: str, g: Mapping[str, frozenset[str]]) -> list[str]:
    """A chain of unguarded nodes from an entry to `node`, for the error message."""
    path = [node]
    current = node
    while True:
        preds = sorted(p for p in graph.predecessors(current) if not g.get(p))
        if not preds:
            return list(reversed(path))
        current = preds[0]
        path.append(current)
