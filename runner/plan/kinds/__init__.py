"""Node kinds: one module each, one registry. A new kind is a module with a `KIND` and a line
here (and its spec model in runner/spec/models.py, its runner in runner/nodes/)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.plan.kinds import approval, flow, gate, llm, loop, map, switch, tool
from runner.plan.kinds.base import Kind, Site
from runner.plan.model import NO_RETRY, PlanNode
from runner.plan.names import did_you_mean, expr_refs
from runner.spec.models import node_kind

if TYPE_CHECKING:
    from runner.plan.compiler import Compiler

KINDS: tuple[Kind, ...] = (
    llm.KIND,
    tool.KIND,
    gate.KIND,
    switch.KIND,
    map.KIND,
    approval.KIND,
    flow.KIND,
    loop.KIND,
)
_BY_TYPE: dict[type, Kind] = {k.spec_type: k for k in KINDS}


def kind_of(node: Any) -> Kind | None:
    return _BY_TYPE.get(type(node))


def compile_node(c: Compiler, site: Site, node: Any) -> PlanNode | None:
    """What every kind shares (needs, when, retry, timeout), then the kind's own part."""
    for i, need in enumerate(node.needs):
        if need == site.node_id:
            c.error(site.at("needs", i), "self-reference", f"node {site.node_id!r} needs itself")
        elif need not in c.spec.nodes:
            c.error(
                site.at("needs", i),
                "unknown-node",
                f"node {need!r} is not defined",
                hint=did_you_mean(need, c.node_ids),
            )
        else:
            site.deps.add(need)
    when = None
    if node.when is not None:
        when = c.cel(node.when, site.at("when"))
        if when is not None:
            site.refs(c, expr_refs(node.when, when), site.at("when"))
    fields: dict[str, Any] = dict(
        id=site.node_id,
        kind=node_kind(node),
        spec=node,
        when=when,
        join=node.join,
        retry=node.retry or NO_RETRY,
        timeout=node.timeout,
    )
    kind = kind_of(node)
    own = kind.compile(c, site, node) if kind is not None else {}
    if own is None:
        return None
    return PlanNode(deps=(), switches=(), **{**fields, **own})


def output_schema(c: Compiler, node: Any) -> Any:
    """A node's output type as references to it see it (None: a kind without one)."""
    kind = kind_of(node)
    return kind.output_schema(c, node) if kind is not None else None
