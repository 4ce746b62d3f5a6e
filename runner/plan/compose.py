"""Compiling composition: subflows (`flow:`) and bounded loops (`loop:`), typed in and out.

A subflow is another spec compiled into its own Plan; a loop body is a small Plan whose nodes
share the parent's namespace (they may read outer nodes, which become the loop's deps). Both
stay one node of the outer DAG, so every outer check (cycles, guards, cost) still applies.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from runner.errors import SpecError
from runner.plan import schemas
from runner.plan.bundle import file_key
from runner.plan.cost import estimate_cost
from runner.plan.model import FlowStep, LoopStep, Plan, PlanNode, Route
from runner.spec import LoadedSpec
from runner.spec.loader import PathKey
from runner.spec.models import ApprovalNode, Budget, FlowNode, LoopNode, MapNode
from runner.spec.parse import parse_spec

if TYPE_CHECKING:
    from runner.plan.compile import Compiler

MAX_ITERATIONS = 100
LOOP_RESERVED = ("iterations", "converged")  # keys of a loop's output next to its body ids


class FlowRecursion(Exception):
    """A spec includes itself through subflows; caught by the compiler whose file starts it."""

    def __init__(self, start: str, chain: list[str]) -> None:
        super().__init__(" -> ".join(chain))
        self.start = start
        self.chain = chain


def _entry(c: Compiler) -> tuple[str, str]:
    return str(Path(c.src.path).resolve()), c.src.path


def _flow_where(c: Compiler, node: FlowNode) -> tuple[str, str]:
    resolved = str((c.loaded.directory / node.flow).resolve())
    shown = os.path.normpath(str(Path(c.src.path).parent / node.flow))
    return resolved, shown


def child_plan(c: Compiler, node: FlowNode, path: PathKey) -> Plan | None:
    """The compiled child spec, once per file per compile; problems are reported here once."""
    resolved, shown = _flow_where(c, node)
    chain = [*c.flow_chain, _entry(c)]
    files = [r for r, _ in chain]
    if resolved in files:
        start = files.index(resolved)
        text = [s for _, s in chain[start:]] + [chain[start][1]]
        if resolved == _entry(c)[0]:
            _recursion(c, path, text)
            return None
        raise FlowRecursion(resolved, text)
    key = ("plan", resolved)
    if key in c.flow_plans:
        plan: Plan | None = c.flow_plans[key]
        return plan
    c.flow_plans[key] = None
    p = Path(resolved)
    fkey = file_key(c.base, node.flow)
    if not c.files.is_file(fkey):
        options = c.files.specs_beside(fkey)
        from runner.plan.compile import did_you_mean

        c.error(
            (*path, "flow"),
            "flow-not-found",
            f"subflow {node.flow!r} does not exist ({shown})",
            hint=did_you_mean(p.name, options)
            or "the path is relative to this spec's folder, e.g. flows/kb_answer.yaml",
        )
        return None
    from runner.plan.compile import Compiler

    try:
        src = c.files.load(fkey, shown)
        loaded = LoadedSpec(parse_spec(src), src)
        profile = c.profile if c.profile in loaded.spec.profiles else None
        sub = Compiler(
            loaded,
            profile,
            flow_chain=tuple(chain),
            flow_plans=c.flow_plans,
            sources=c.files,
            spec_key=fkey,
        )
        plan = sub.compile()
    except FlowRecursion as fr:
        if fr.start != _entry(c)[0]:
            raise
        _recursion(c, path, fr.chain)
        return None
    except SpecError as e:
        errors = [d for d in e.diagnostics if d.severity == "error"]
        c.error(
            (*path, "flow"),
            "flow-invalid",
            f"subflow {node.flow!r} does not validate ({len(errors)} "
            f"problem{'s' if len(errors) != 1 else ''} in {shown}, listed with its own lines)",
            hint=f"run `flowrun validate {shown}`",
        )
        c.diags.extend(e.diagnostics)
        return None
    c.diags.extend(plan.warnings)
    for n in _all_nodes(plan):
        if n.kind == "approval":
            c.error(
                (*path, "flow"),
                "flow-invalid",
                f"subflow {node.flow!r} has an approval node ({n.id!r}); approvals wait in the"
                " store and can only be top-level nodes",
                hint="move the approval into the parent spec, before or after this node",
            )
            return None
    c.flow_plans[key] = plan
    return plan


def _recursion(c: Compiler, path: PathKey, chain: list[str]) -> None:
    c.error(
        (*path, "flow"),
        "flow-recursion",
        "subflows include each other: " + " -> ".join(chain),
        hint="a subflow cannot include itself, directly or through others;"
        " for repetition use a bounded `loop:` node",
    )


def _all_nodes(plan: Plan) -> list[PlanNode]:
    out: list[PlanNode] = []
    for n in plan.nodes.values():
        out.append(n)
        if n.loop is not None:
            out.extend(_all_nodes(n.loop.body))
        if n.map is not None:
            out.append(n.map.inner)
    return out


def flow_output_schema(plan: Plan) -> dict[str, Any]:
    """The child's outputs object: a whole `${{ nodes.x.output... }}` binding keeps x's type."""
    from runner.plan.compile import _ref_text

    props: dict[str, Any] = {}
    spec_outputs = plan.loaded.spec.outputs
    for name, cv in plan.outputs.items():
        raw = spec_outputs.get(name)
        sub: Any = {}
        refs = list(cv.refs)
        if (
            isinstance(raw, str)
            and raw.strip().startswith("${{")
            and raw.strip().endswith("}}")
            and len(cv.sites) == 1
            and len(refs) == 1
            and cv.sites[0].source.strip() == _ref_text(refs[0])
        ):
            ref = refs[0]
            if (
                ref.root == "nodes"
                and len(ref.path) >= 2
                and ref.path[1] == "output"
                and ref.path[0] in plan.nodes
            ):
                bad, found = schemas.walk(plan.nodes[str(ref.path[0])].output_schema, ref.path[2:])
                sub = found if bad is None and isinstance(found, dict) else {}
        props[name] = sub
    return {"type": "object", "properties": props, "additionalProperties": False}


def compile_flow(
    c: Compiler,
    node_id: str,
    node: FlowNode,
    path: PathKey,
    roots: frozenset[str],
    locals_schema: Mapping[str, Any] | None,
    deps: set[str],
) -> FlowStep | None:
    from runner.plan.compile import did_you_mean

    inputs = c.bound_value(
        node.inputs,
        (*path, "inputs"),
        roots,
        node_id=node_id,
        deps=deps,
        locals_schema=locals_schema,
    )
    plan = child_plan(c, node, path)
    if plan is None or inputs is None:
        return None
    schema = plan.inputs_schema
    props = schema.get("properties")
    if isinstance(props, dict) and schema.get("additionalProperties") is False:
        for name in node.inputs:
            if name not in props:
                c.error(
                    (*path, "inputs", name),
                    "unknown-arg",
                    f"subflow {node.flow!r} takes no input {name!r}",
                    hint=did_you_mean(name, props) or f"inputs: {', '.join(sorted(props))}",
                    key=True,
                )
    for name in schema.get("required", []) or []:
        if name not in node.inputs:
            c.error(
                (*path, "inputs") if node.inputs else (*path, "flow"),
                "missing-arg",
                f"subflow {node.flow!r} needs input {name!r}",
                key=bool(node.inputs),
            )
    return FlowStep(path=_flow_where(c, node)[1], plan=plan, inputs=inputs)


def _body_compiler(c: Compiler, exclude: str | None, node: LoopNode) -> Compiler:
    """A compiler whose `nodes` are the outer ones plus the body's, sharing diagnostics."""
    from runner.plan.compile import Compiler

    sub = Compiler(
        c.loaded,
        c.profile,
        diags=c.diags,
        flow_chain=c.flow_chain,
        sources=c.files,
        spec_key=c.spec_key,
    )
    sub.flow_plans = c.flow_plans
    merged = {k: v for k, v in c.spec.nodes.items() if k != exclude}
    merged.update(node.loop.body)
    sub.spec = c.spec.model_copy(update={"nodes": merged})
    sub.node_ids = list(merged)
    sub.order_index = {n: i for i, n in enumerate(sub.node_ids)}
    sub._tool_cache = c._tool_cache
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


def output_schema(c: Compiler, node: FlowNode | LoopNode) -> Any:
    """The output type of a subflow or loop node (cached per node: it may compile a child)."""
    key = ("schema", id(node))
    if key in c.flow_plans:
        return c.flow_plans[key]
    schema: Any = None
    if isinstance(node, FlowNode):
        plan = child_plan(c, node, ())
        schema = flow_output_schema(plan) if plan is not None else None
    else:
        sub = _body_compiler(c, None, node)
        props: dict[str, Any] = {bid: sub.output_schema(bid) or {} for bid in node.loop.body}
        props["iterations"] = {"type": "integer", "minimum": 1}
        props["converged"] = {"type": "boolean"}
        schema = {
            "type": "object",
            "properties": props,
            "required": sorted(props),
            "additionalProperties": False,
        }
    c.flow_plans[key] = schema
    return schema


def compile_loop(
    c: Compiler,
    node_id: str,
    node: LoopNode,
    path: PathKey,
    routes: Mapping[str, Route],
    roots: frozenset[str],
    locals_schema: Mapping[str, Any] | None,
    deps: set[str],
) -> LoopStep | None:
    from runner.plan.compile import expr_refs

    spec = node.loop
    lpath = (*path, "loop")
    ok = True
    if spec.max_iterations is None:
        c.error(
            lpath,
            "loop-bound",
            f"loop {node_id!r} has no max_iterations; every loop must be bounded",
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
    body_ids = list(spec.body)
    for bid in body_ids:
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
    if not ok:
        return None
    sub = _body_compiler(c, node_id, node)
    body_roots = roots | {"previous", "iteration"}
    body_locals = {
        **(locals_schema or {}),
        "previous": _previous_schema(sub, spec.body),
        "iteration": {"type": "integer", "minimum": 1},
    }
    compiled: dict[str, PlanNode] = {}
    deps_of: dict[str, set[str]] = {}
    for bid, bnode in spec.body.items():
        bdeps: set[str] = set()
        pn = sub.compile_node(
            bid,
            bnode,
            (*lpath, "body", bid),
            routes,
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
            deps.add(d)
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(body_ids)
    for bid in body_ids:
        for d in deps_of.get(bid, ()):
            if d in body_set:
                graph.add_edge(d, bid)
    if not nx.is_directed_acyclic_graph(graph):
        cycle = [u for u, _ in nx.find_cycle(graph)]
        start = min(cycle, key=body_ids.index)
        i = cycle.index(start)
        cycle = cycle[i:] + cycle[:i]
        text = " -> ".join(f'"{n}"' for n in [*cycle, start])
        c.error(
            (*lpath, "body", start),
            "needs-cycle",
            f"cycle {text} inside loop {node_id!r}",
            hint="a body is a DAG too; read the last pass with previous.<id>.output",
            key=True,
        )
        ok = False
    if not ok or until is None or spec.max_iterations is None:
        return None
    index = {n: i for i, n in enumerate(body_ids)}
    order = tuple(nx.lexicographical_topological_sort(graph, key=lambda n: index[n]))
    final: dict[str, PlanNode] = {}
    from dataclasses import replace

    for bid in order:
        mine = deps_of[bid]
        final[bid] = replace(
            compiled[bid],
            deps=tuple(sorted(mine, key=lambda n: sub.order_index.get(n, 0))),
            switches=tuple(switches_of.get(bid, ())),
        )
    body = Plan(
        loaded=c.loaded,
        profile=c.profile,
        nodes=final,
        order=order,
        graph=graph,
        outputs={},
        routes=routes,
        budget=Budget(),
        inputs_schema=c.spec.inputs,
        cost=estimate_cost(final),
        dependants={n: tuple(sorted(graph.successors(n), key=index.__getitem__)) for n in order},
    )
    return LoopStep(
        body=body,
        until=until,
        max_iterations=spec.max_iterations,
        on_exhausted=spec.on_exhausted,
    )


def map_item_schema(inner: Any, collect: bool) -> Any:
    """A map item's type: the inner output, or `{ok, output, error}` under `collect`."""
    if not collect:
        return inner or {}
    return {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "output": inner or {},
            "error": {"type": ["string", "null"]},
        },
        "required": ["ok", "output", "error"],
        "additionalProperties": False,
    }


def is_collect(node: Any) -> bool:
    return isinstance(node, MapNode) and node.map.on_item_failure == "collect"


def llm_node_names(plan: Plan, prefix: str = "") -> set[str]:
    """Names a responses file may use: LLM nodes, and `outer.inner` inside subflows and loops."""
    names: set[str] = set()
    for n in plan.nodes.values():
        inner = n.map.inner if n.map is not None else n
        if inner.llm is not None:
            names.add(prefix + n.id)
        if inner.flow is not None:
            names |= llm_node_names(inner.flow.plan, f"{prefix}{n.id}.")
        if inner.loop is not None:
            names |= llm_node_names(inner.loop.body, f"{prefix}{n.id}.")
    return names
