"""`loop:` nodes: a bounded repeat of a body of nodes until a CEL condition holds.

The body is a small plan whose nodes share the parent's namespace (they may read outer nodes,
which become the loop's deps); the outer graph stays a DAG, the loop being one node of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from runner.plan.cost import estimate_cost
from runner.plan.digraph import DiGraph, find_cycle, is_dag, topological_sort
from runner.plan.kinds.base import Kind, Site
from runner.plan.model import LoopStep, Plan, PlanNode
from runner.plan.names import expr_refs
from runner.spec.models import ApprovalNode, Budget, LoopNode

if TYPE_CHECKING:
    from runner.plan.compiler import Compiler

MAX_ITERATIONS = 100
LOOP_RESERVED = ("iterations", "converged")  # keys of a loop's output next to its body ids


def _body_compiler(c: Compiler, exclude: str | None, node: LoopNode) -> Compiler:
    """A compiler whose `nodes` are the outer ones plus the body's, sharing diagnostics."""
    sub = c.new(c.loaded, c.profile, diags=c.diags, flow_chain=c.flow_chain, spec_key=c.spec_key)
    merged = {k: v for k, v in c.spec.nodes.items() if k != exclude}
    merged.update(node.loop.body)
    sub.spec = c.spec.model_copy(update={"nodes": merged})
    sub.node_ids = list(merged)
    sub.order_index = {n: i for i, n in enumerate(sub.node_ids)}
    sub.tool_cache = c.tool_cache
    return sub


def _previous_schema(sub: Compiler, body: Mapping[str, Any]) -> dict[str, Any]:
    view = {
        bid: {
            "type": "object",
            "properties": {
                "output": sub.output_schema(bid) or {},
                "status": {"type": "string"},
                "error": {"type": ["string", "null"]},
            },
            "additionalProperties": False,
        }
        for bid in body
    }
    return {"type": "object", "properties": view, "additionalProperties": False}


def loop_schema(c: Compiler, node: LoopNode) -> Any:
    """The output type of a loop node: each body node's output, iterations and converged."""
    key = ("schema", id(node))
    if key not in c.flow_plans:
        sub = _body_compiler(c, None, node)
        props: dict[str, Any] = {bid: sub.output_schema(bid) or {} for bid in node.loop.body}
        props["iterations"] = {"type": "integer", "minimum": 1}
        props["converged"] = {"type": "boolean"}
        c.flow_plans[key] = {
            "type": "object",
            "properties": props,
            "required": sorted(props),
            "additionalProperties": False,
        }
    return c.flow_plans[key]


def _check_shape(c: Compiler, site: Site, node: LoopNode) -> bool:
    """Rules loop-bound and invalid-value for the body's ids and kinds."""
    spec = node.loop
    lpath = site.at("loop")
    ok = True
    if spec.max_iterations is None:
        c.error(
            lpath,
            "loop-bound",
            f"loop {site.node_id!r} has no max_iterations; every loop must be bounded",
            hint="add e.g. `max_iterations: 3` (1 to 100) and `on_exhausted: escalate|fail|last`",
            key=True,
        )
        ok = False
    elif not 1 <= spec.max_iterations <= MAX_ITERATIONS:
        c.error(
            (*lpath, "max_iterations"),
            "loop-bound",
            f"max_iterations is {spec.max_iterations}; it must be 1 to {MAX_ITERATIONS}",
            hint="the worst-case cost multiplies by max_iterations: keep it small",
        )
        ok = False
    for bid in spec.body:
        where = (*lpath, "body", bid)
        if bid in c.spec.nodes:
            c.error(
                where,
                "invalid-value",
                f"body node {bid!r} has the id of a node outside the loop",
                hint="rename it; body and outer nodes share the `nodes.` namespace",
                key=True,
            )
            ok = False
        elif bid in LOOP_RESERVED:
            c.error(
                where,
                "invalid-value",
                f"a body node cannot be called {bid!r}: the loop's output uses that key",
                key=True,
            )
            ok = False
        if isinstance(spec.body[bid], ApprovalNode):
            c.error(
                where,
                "invalid-value",
                "approval nodes cannot run inside a loop body",
                hint="put the approval after the loop",
                key=True,
            )
            ok = False
    return ok


def compile_loop(c: Compiler, site: Site, node: LoopNode) -> dict[str, Any] | None:
    if not _check_shape(c, site, node):
        return None
    spec = node.loop
    lpath = site.at("loop")
    sub = _body_compiler(c, site.node_id, node)
    body_roots = site.roots | {"previous", "iteration"}
    body_locals = {
        **(site.locals_schema or {}),
        "previous": _previous_schema(sub, spec.body),
        "iteration": {"type": "integer", "minimum": 1},
    }
    ok = True
    compiled: dict[str, PlanNode] = {}
    deps_of: dict[str, set[str]] = {}
    for bid, bnode in spec.body.items():
        bdeps: set[str] = set()
        pn = sub.compile_node(
            bid,
            bnode,
            (*lpath, "body", bid),
            site.routes,
            roots=body_roots,
            locals_schema=body_locals,
            deps=bdeps,
        )
        deps_of[bid] = bdeps
        if pn is None:
            ok = False
        else:
            compiled[bid] = pn
    switches_of: dict[str, list[str]] = {}
    for bid, pn in compiled.items():
        if pn.switch is None:
            continue
        for t in sorted(pn.switch.targets, key=lambda x: sub.order_index.get(x, 0)):
            if t not in spec.body:
                c.error(
                    (*lpath, "body", bid, "switch"),
                    "invalid-value",
                    f"switch {bid!r} in a loop body can only choose body nodes, not {t!r}",
                )
                ok = False
                continue
            switches_of.setdefault(t, []).append(bid)
            deps_of[t].add(bid)
    until_deps: set[str] = set()
    until = c.cel(spec.until, (*lpath, "until"))
    if until is None:
        ok = False
    else:
        sub.check_refs(
            expr_refs(spec.until, until),
            (*lpath, "until"),
            body_roots,
            node_id=None,
            deps=until_deps,
            locals_schema=body_locals,
        )
    body_set = set(spec.body)
    for d in [*until_deps, *(x for s in deps_of.values() for x in s)]:
        if d not in body_set:
            site.deps.add(d)
    graph = _body_graph(c, site, list(spec.body), deps_of)
    if graph is None or not ok or until is None or spec.max_iterations is None:
        return None
    body = _body_plan(c, sub, site, graph, compiled, deps_of, switches_of)
    step = LoopStep(
        body=body,
        until=until,
        max_iterations=spec.max_iterations,
        on_exhausted=spec.on_exhausted,
    )
    return {"loop": step, "output_schema": loop_schema(c, node)}


def _body_graph(
    c: Compiler, site: Site, body_ids: list[str], deps_of: Mapping[str, set[str]]
) -> DiGraph[str] | None:
    """The body's own DAG; a cycle inside it is rule needs-cycle, printed from its first node."""
    graph: DiGraph[str] = DiGraph()
    graph.add_nodes_from(body_ids)
    body_set = set(body_ids)
    for bid in body_ids:
        for d in deps_of.get(bid, ()):
            if d in body_set:
                graph.add_edge(d, bid)
    if is_dag(graph):
        return graph
    cycle = find_cycle(graph)
    start = min(cycle, key=body_ids.index)
    i = cycle.index(start)
    cycle = cycle[i:] + cycle[:i]
    text = " -> ".join(f'"{n}"' for n in [*cycle, start])
    c.error(
        site.at("loop", "body", start),
        "needs-cycle",
        f"cycle {text} inside loop {site.node_id!r}",
        hint="a body is a DAG too; read the last pass with previous.<id>.output",
        key=True,
    )
    return None


def _body_plan(
    c: Compiler,
    sub: Compiler,
    site: Site,
    graph: DiGraph[str],
    compiled: Mapping[str, PlanNode],
    deps_of: Mapping[str, set[str]],
    switches_of: Mapping[str, list[str]],
) -> Plan:
    index = {n: i for i, n in enumerate(graph.nodes)}
    order = tuple(topological_sort(graph, key=lambda n: index[n]))
    final: dict[str, PlanNode] = {}
    for bid in order:
        final[bid] = replace(
            compiled[bid],
            deps=tuple(sorted(deps_of[bid], key=lambda n: sub.order_index.get(n, 0))),
            switches=tuple(switches_of.get(bid, ())),
        )
    return Plan(
        loaded=c.loaded,
        profile=c.profile,
        nodes=final,
        order=order,
        graph=graph,
        outputs={},
        routes=site.routes,
        budget=Budget(),
        inputs_schema=c.spec.inputs,
        cost=estimate_cost(final),
        dependants={n: tuple(sorted(graph.successors(n), key=index.__getitem__)) for n in order},
    )


KIND = Kind(name="loop", spec_type=LoopNode, compile=compile_loop, output_schema=loop_schema)
