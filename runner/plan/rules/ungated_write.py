"""ungated-write: every write must sit behind a gate or an approval on every path from the start."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx

from runner.errors import Diagnostic
from runner.plan.gating import guards, ungated_path
from runner.plan.taint import write_step

RULE = "ungated-write"


def _spec_node(compiler: Any, node_id: str) -> Any:
    node = compiler.spec.nodes[node_id]
    return node.map.node if hasattr(node, "map") and not isinstance(node.map, dict) else node


def check(
    compiler: Any, graph: nx.DiGraph, nodes: Mapping[str, Any], switches_of: Any
) -> Iterable[Diagnostic]:
    g = guards(graph, nodes)
    if not g:
        return
    for node_id in compiler.node_ids:
        pn = nodes.get(node_id)
        if pn is None or write_step(pn) is None or g.get(node_id):
            continue
        path = " -> ".join(ungated_path(graph, node_id, g))
        reason = getattr(_spec_node(compiler, node_id), "ungated", None)
        if reason:
            yield compiler.src.diag(
                ("nodes", node_id),
                RULE,
                f"write node {node_id!r} runs without a gate or approval ({path}): {reason}",
                key=True,
                severity="warning",
            )
            continue
        yield compiler.src.diag(
            ("nodes", node_id),
            RULE,
            f"write node {node_id!r} can run without passing a gate or approval: {path}",
            hint="add a gate or approval before it (needs: [...]), or state why not with "
            '`ungated: "<reason>"`',
            key=True,
        )
