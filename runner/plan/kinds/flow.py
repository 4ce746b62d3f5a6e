"""`flow:` nodes: another spec compiled into its own plan, run as one node of this one, typed in
(the child's inputs schema) and out (its outputs, typed from the nodes they bind)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import SpecError
from runner.plan import schemas
from runner.plan.bundle import file_key
from runner.plan.kinds.base import Kind, Site
from runner.plan.model import FlowStep, Plan, PlanNode
from runner.plan.names import did_you_mean, whole_ref
from runner.spec import LoadedSpec
from runner.spec.loader import PathKey
from runner.spec.models import FlowNode
from runner.spec.parse import parse_spec

if TYPE_CHECKING:
    from runner.plan.compiler import Compiler


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
    fkey = file_key(c.base, node.flow)
    if not c.files.is_file(fkey):
        c.error(
            (*path, "flow"),
            "flow-not-found",
            f"subflow {node.flow!r} does not exist ({shown})",
            hint=did_you_mean(Path(resolved).name, c.files.specs_beside(fkey))
            or "the path is relative to this spec's folder, e.g. flows/kb_answer.yaml",
        )
        return None
    try:
        src = c.files.load(fkey, shown)
        loaded = LoadedSpec(parse_spec(src), src)
        profile = c.profile if c.profile in loaded.spec.profiles else None
        plan = c.new(loaded, profile, flow_chain=tuple(chain), spec_key=fkey).compile()
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
    props: dict[str, Any] = {}
    spec_outputs = plan.loaded.spec.outputs
    for name, cv in plan.outputs.items():
        sub: Any = {}
        ref = whole_ref(spec_outputs.get(name), cv)
        if (
            ref is not None
            and ref.root == "nodes"
            and len(ref.path) >= 2
            and ref.path[1] == "output"
            and ref.path[0] in plan.nodes
        ):
            bad, found = schemas.walk(plan.nodes[str(ref.path[0])].output_schema, ref.path[2:])
            sub = found if bad is None and isinstance(found, dict) else {}
        props[name] = sub
    return {"type": "object", "properties": props, "additionalProperties": False}


def compile_flow(c: Compiler, site: Site, node: FlowNode) -> dict[str, Any] | None:
    inputs = c.bound_value(
        node.inputs,
        site.at("inputs"),
        site.roots,
        node_id=site.node_id,
        deps=site.deps,
        locals_schema=site.locals_schema,
    )
    plan = child_plan(c, node, site.path)
    if plan is None or inputs is None:
        return None
    _check_inputs(c, site, node, plan.inputs_schema)
    step = FlowStep(path=_flow_where(c, node)[1], plan=plan, inputs=inputs)
    return {"flow": step, "output_schema": flow_output_schema(plan)}


def _check_inputs(c: Compiler, site: Site, node: FlowNode, schema: dict[str, Any]) -> None:
    """Rules unknown-arg and missing-arg for a subflow's inputs."""
    props = schema.get("properties")
    if isinstance(props, dict) and schema.get("additionalProperties") is False:
        for name in node.inputs:
            if name not in props:
                c.error(
                    site.at("inputs", name),
                    "unknown-arg",
                    f"subflow {node.flow!r} takes no input {name!r}",
                    hint=did_you_mean(name, props) or f"inputs: {', '.join(sorted(props))}",
                    key=True,
                )
    for name in schema.get("required", []) or []:
        if name not in node.inputs:
            c.error(
                site.at("inputs") if node.inputs else site.at("flow"),
                "missing-arg",
                f"subflow {node.flow!r} needs input {name!r}",
                key=bool(node.inputs),
            )


def flow_schema(c: Compiler, node: FlowNode) -> Any:
    """The output type of a subflow node (cached per node: it compiles the child)."""
    key = ("schema", id(node))
    if key not in c.flow_plans:
        plan = child_plan(c, node, ())
        c.flow_plans[key] = flow_output_schema(plan) if plan is not None else None
    return c.flow_plans[key]


KIND = Kind(name="flow", spec_type=FlowNode, compile=compile_flow, output_schema=flow_schema)
