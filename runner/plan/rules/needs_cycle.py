"""needs-cycle: the dependency graph must be a DAG; print each cycle from its earliest node."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runner.errors import Diagnostic
from runner.plan.digraph import DiGraph, strongly_connected_components

RULE = "needs-cycle"


def check(
    compiler: Any, graph: DiGraph[str], nodes: Mapping[str, Any], switches_of: Any
) -> Iterable[Diagnostic]:
    order = compiler.order_index
    for scc in strongly_connected_components(graph):
        if len(scc) == 1:
            (only,) = scc
            if not graph.has_edge(only, only):
                continue
        start = min(scc, key=order.__getitem__)
        cycle = _cycle_from(graph, start, scc, order)
        text = " -> ".join(f'"{n}"' for n in [*cycle, cycle[0]])
        yield compiler.src.diag(
            ("nodes", start),
            RULE,
            f"cycle {text}",
            hint="a workflow is a DAG; for a repair loop use a bounded `loop:` node",
            key=True,
        )


def _cycle_from(
    graph: DiGraph[str], start: str, scc: set[str], order: Mapping[str, int]
) -> list[str]:
    """Shortest cycle through start inside its component, deterministic by declaration order."""
    prev: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        nxt: list[str] = []
        for n in frontier:
            for s in sorted(graph.successors(n), key=order.__getitem__):
                if s not in scc:
                    continue
                if s == start:
                    path = [n]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return list(reversed(path))
                if s not in seen:
                    seen.add(s)
                    prev[s] = n
                    nxt.append(s)
        frontier = nxt
    return [start]
