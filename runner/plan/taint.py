"""Static provenance: which node outputs carry untrusted data, and which write arguments they reach.

Results of tools whose contract says `trust: untrusted`, and LLM output computed from them,
are tainted; gates, switches and approvals produce trusted values. Task inputs are trusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import networkx as nx

from runner.expr.refs import Ref
from runner.expr.templates import template_refs
from runner.plan.model import LLMStep, PlanNode, ToolStep


def _template_refs(step: LLMStep) -> list[Ref]:
    refs = list(template_refs(step.prompt.source))
    if step.system is not None:
        refs += template_refs(step.system.source)
    return refs


def _refs_to(refs: Iterable[Ref], tainted: set[str]) -> list[Ref]:
    return [
        r
        for r in refs
        if r.root == "nodes" and r.path and isinstance(r.path[0], str) and r.path[0] in tainted
    ]


def _reads_untrusted(step: LLMStep | None, tool: ToolStep | None, out: set[str]) -> bool:
    if tool is not None:
        return tool.contract.trust == "untrusted"
    return step is not None and bool(_refs_to(_template_refs(step), out))


def tainted_nodes(
    graph: nx.DiGraph, nodes: Mapping[str, PlanNode], outer: Iterable[str] = ()
) -> set[str]:
    """Nodes whose output carries untrusted data (`outer`: tainted nodes around a loop body)."""
    out: set[str] = set(outer)
    if not nx.is_directed_acyclic_graph(graph):
        return out
    for n in nx.topological_sort(graph):
        pn = nodes.get(n)
        if pn is None:
            continue
        if pn.tool is not None or pn.llm is not None:
            hit = _reads_untrusted(pn.llm, pn.tool, out)
        elif pn.map is not None:
            inner = pn.map.inner
            item = bool(_refs_to(pn.map.over.refs, out)) and inner.llm is not None
            hit = item or _reads_untrusted(inner.llm, inner.tool, out)
        elif pn.kind in ("gate", "switch", "approval"):
            hit = False
        else:  # compound kinds: tainted when anything they read is
            hit = any(d in out for d in graph.predecessors(n))
        if hit:
            out.add(n)
    return out


def write_step(pn: PlanNode) -> ToolStep | None:
    """The write tool a node calls (directly or per map item), if any."""
    step = pn.tool if pn.tool is not None else (pn.map.inner.tool if pn.map is not None else None)
    if step is not None and step.contract.effect == "write":
        return step
    return None


def tool_step(pn: PlanNode) -> ToolStep | None:
    return pn.tool if pn.tool is not None else (pn.map.inner.tool if pn.map is not None else None)


def tainted_args(pn: PlanNode, tainted: set[str]) -> dict[str, list[Ref]]:
    """For a tool node: each argument bound from untrusted data, and the references tainting it."""
    step = tool_step(pn)
    if step is None:
        return {}
    out: dict[str, list[Ref]] = {}
    item_tainted = pn.map is not None and bool(_refs_to(pn.map.over.refs, tainted))
    for site in step.args.sites:
        if not site.path:
            continue
        name = str(site.path[0])
        hits = _refs_to(site.refs, tainted)
        if item_tainted and pn.map is not None:
            hits += [r for r in site.refs if r.root == pn.map.as_]
        if hits:
            out.setdefault(name, []).extend(hits)
    return out


def with_taint(
    nodes: Mapping[str, PlanNode], graph: nx.DiGraph, order_index: Mapping[str, int]
) -> dict[str, PlanNode]:
    """The same nodes, each tool step knowing which of its arguments are tainted."""
    tainted = tainted_nodes(graph, nodes)
    out: dict[str, Any] = {}
    for n, pn in nodes.items():
        args = tuple(sorted(tainted_args(pn, tainted)))
        if pn.tool is not None and args:
            pn = replace(pn, tool=replace(pn.tool, tainted_args=args))
        elif pn.map is not None and pn.map.inner.tool is not None and args:
            inner = replace(pn.map.inner, tool=replace(pn.map.inner.tool, tainted_args=args))
            pn = replace(pn, map=replace(pn.map, inner=inner))
        out[n] = pn
    return out
