"""The whole spec into one Plan: rules on the spec, every node, the graph and its rules,
policies, then the frozen plan in topological order with its worst-case cost."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from runner.errors import SpecError, errors_only
from runner.expr.bindings import CompiledValue
from runner.plan.cost import estimate_cost
from runner.plan.digraph import DiGraph, topological_sort
from runner.plan.model import Plan, PlanNode
from runner.plan.names import NODE_ROOTS
from runner.plan.policies import compile_policies
from runner.plan.rules import graph_rules, no_price, spec_rules
from runner.plan.taint import with_taint

if TYPE_CHECKING:
    from runner.plan.compiler import Compiler


def assemble(c: Compiler) -> Plan:
    """Compile every part; raises SpecError listing every problem found on the way."""
    spec = c.spec
    c.diags.extend(spec_rules(c))
    c.check_schema(spec.inputs, ("inputs",))
    routes = c.resolve_routes(c.profile if c.profile in spec.profiles else None)
    nodes: dict[str, PlanNode] = {}
    deps_of: dict[str, set[str]] = {}
    for node_id, node in spec.nodes.items():
        deps: set[str] = set()
        pn = c.compile_node(
            node_id,
            node,
            ("nodes", node_id),
            routes,
            roots=NODE_ROOTS,
            locals_schema=None,
            deps=deps,
        )
        deps_of[node_id] = deps
        if pn is not None:
            nodes[node_id] = pn
    switches_of: dict[str, list[str]] = {}
    for node_id, pn in nodes.items():
        if pn.switch is not None:
            for t in sorted(pn.switch.targets, key=lambda n: c.order_index.get(n, 0)):
                if t in spec.nodes:
                    switches_of.setdefault(t, []).append(node_id)
                    deps_of[t].add(node_id)
    outputs: dict[str, CompiledValue] = {}
    for name, binding in spec.outputs.items():
        cv = c.bound_value(binding, ("outputs", name), NODE_ROOTS, node_id=None, deps=None)
        if cv is not None:
            outputs[name] = cv
    graph: DiGraph[str] = DiGraph()
    graph.add_nodes_from(c.node_ids)
    for node_id in c.node_ids:
        for d in sorted(deps_of.get(node_id, ()), key=lambda n: c.order_index.get(n, 0)):
            if d in spec.nodes:
                graph.add_edge(d, node_id)
    c.diags.extend(graph_rules(c, graph, nodes, switches_of))
    nodes = with_taint(nodes, graph, c.order_index)
    policy = compile_policies(c)
    # every compiled step is useful only if the whole spec compiled
    errors = errors_only(c.diags)
    if errors:
        raise SpecError(errors)
    order = tuple(topological_sort(graph, key=lambda n: c.order_index[n]))
    final: dict[str, PlanNode] = {}
    for node_id in order:
        pn = nodes[node_id]
        deps_sorted = tuple(sorted(deps_of[node_id], key=lambda n: c.order_index[n]))
        if pn.map is not None:  # each item reads the nodes its map node needs
            inner = replace(pn.map.inner, deps=deps_sorted)
            pn = replace(pn, map=replace(pn.map, inner=inner))
        final[node_id] = replace(pn, deps=deps_sorted, switches=tuple(switches_of.get(node_id, ())))
    dependants = {
        n: tuple(sorted(graph.successors(n), key=lambda x: c.order_index[x])) for n in order
    }
    cost = estimate_cost(final)
    warnings = [d for d in c.diags if d.severity != "error"]
    warnings.extend(no_price.check(c, cost))
    return Plan(
        loaded=c.loaded,
        profile=c.profile,
        nodes=final,
        order=order,
        graph=graph,
        outputs=outputs,
        routes=routes,
        budget=spec.budget,
        inputs_schema=spec.inputs,
        cost=cost,
        warnings=tuple(sorted(warnings)),
        dependants=dependants,
        policy=policy,
    )
