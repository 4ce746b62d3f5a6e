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


def check(
    compiler: Any, graph: nx.DiGraph, nodes: Mapping[str, Any], switches_of: Any
) -> Iterable[Diagnostic]:
    g = guards(graph, nodes)
    if not g:
        return
    tainted = tainted_nodes(graph, nodes)
    for node_id in compiler.node_ids:
        pn = nodes.get(node_id)
        if pn is None or write_step(pn) is None or not g.get(node_id):
            continue  # ungated writes are reported by ungated-write
        guard_nodes = [nodes[x] for x in g[node_id] if x in nodes]
        if any(x.approval is not None and x.approval.when is None for x in guard_nodes):
            continue  # a person always looks at this call
        checked: list[Ref] = []
        for x in guard_nodes:
            if x.gate is not None:
                for expr, _ in x.gate.checks:
                    checked += cel_refs(expr.source)
        for arg, refs in sorted(tainted_args(pn, tainted).items()):
            unchecked = [r for r in refs if not any(_overlaps(r, c) for c in checked)]
            if not unchecked:
                continue
            if getattr(compiler.spec.nodes[node_id], "ungated", None):
                continue
            yield compiler.src.diag(
                ("nodes", node_id),
                RULE,
                f"argument {arg!r} of write node {node_id!r} comes from untrusted data "
                f"({_text(unchecked[0])}) that no gate before it checks",
                hint=f"add a check on {_text(unchecked[0])} to a gate it needs, or an approval "
                "without `when`",
                key=True,
            )
