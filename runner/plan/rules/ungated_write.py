"""ungated-write: every write must sit behind a gate or an approval on every path from the start."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from runner.errors import Diagnostic
from runner.plan.digraph import DiGraph
from runner.plan.gating import guards, ungated_path
from runner.plan.taint import write_step

RULE = "ungated-write"


def _spec_node(compiler: Any, node_id: str) -> Any:
    node = compiler.spec.nodes[node_id]
    return node.map.node if hasattr(node, "map") and not isinstance(node.map, dict) else node


def _unguarded_body_writes(pn: Any) -> list[str]:
    """Write nodes of a loop body (and of loops inside it) with no gate or approval before them
    within the body itself."""
    if pn.loop is None:
        return []
    body = pn.loop.body
    bg = guards(body.graph, body.nodes)
    out: list[str] = []
    for bid in body.order:
        inner = body.nodes[bid]
        if bg.get(bid) or getattr(inner.spec, "ungated", None):
            continue
        if write_step(inner) is not None:
            out.append(bid)
        out.extend(f"{bid}.{n}" for n in _unguarded_body_writes(inner))
    return out


def check(
    compiler: Any, graph: DiGraph[str], nodes: Mapping[str, Any], switches_of: Any
) -> Iterable[Diagnostic]:
    g = guards(graph, nodes)
    if not g:
        return
    for node_id in compiler.node_ids:
        pn = nodes.get(node_id)
        if pn is None or g.get(node_id):
            continue
        body_writes = _unguarded_body_writes(pn)
        if write_step(pn) is None and not body_writes:
            continue
        path = " -> ".join(ungated_path(graph, node_id, g))
        what = (
            f"loop node {node_id!r} (write node{'s' if len(body_writes) > 1 else ''} "
            f"{', '.join(repr(b) for b in body_writes)} in its body)"
            if write_step(pn) is None
            else f"write node {node_id!r}"
        )
        reason = getattr(_spec_node(compiler, node_id), "ungated", None)
        if reason:
            yield compiler.src.diag(
                ("nodes", node_id),
                RULE,
                f"{what} runs without a gate or approval ({path}): {reason}",
                key=True,
                severity="warning",
            )
            continue
        yield compiler.src.diag(
            ("nodes", node_id),
            RULE,
            f"{what} can run without passing a gate or approval: {path}",
            hint=(
                "add a gate or approval before it (needs: [...])"
                if write_step(pn) is not None
                else "add a gate or approval before the loop, or one in its body before the write"
            )
            + ', or state why not with `ungated: "<reason>"`',
            key=True,
        )
