"""`switch:` nodes: the first case whose CEL condition holds chooses which nodes run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.expr.cel import CompiledExpr
from runner.plan import schemas
from runner.plan.kinds.base import Kind, Site
from runner.plan.model import SwitchStep
from runner.plan.names import did_you_mean, expr_refs
from runner.spec.loader import PathKey
from runner.spec.models import SwitchNode

if TYPE_CHECKING:
    from runner.plan.compiler import Compiler


def compile_switch(c: Compiler, site: Site, node: SwitchNode) -> dict[str, Any] | None:
    cases: list[tuple[CompiledExpr, tuple[str, ...]]] = []
    ok = True
    for i, case in enumerate(node.switch.cases):
        where = site.at("switch", "cases", i)
        expr = c.cel(case.when, (*where, "when"))
        if expr is None:
            ok = False
            continue
        site.refs(c, expr_refs(case.when, expr), (*where, "when"))
        _targets(c, site.node_id, case.then, (*where, "then"))
        cases.append((expr, tuple(case.then)))
    _targets(c, site.node_id, node.switch.default, site.at("switch", "default"))
    if not ok:
        return None
    return {
        "switch": SwitchStep(cases=tuple(cases), default=tuple(node.switch.default)),
        "output_schema": schemas.SWITCH_OUTPUT,
    }


def _targets(c: Compiler, switch_id: str, targets: list[str], path: PathKey) -> None:
    for i, t in enumerate(targets):
        if t == switch_id:
            c.error((*path, i), "self-reference", f"switch {switch_id!r} lists itself as a branch")
        elif t not in c.spec.nodes:
            c.error(
                (*path, i),
                "unknown-node",
                f"node {t!r} is not defined",
                hint=did_you_mean(t, c.node_ids),
            )


KIND = Kind(
    name="switch",
    spec_type=SwitchNode,
    compile=compile_switch,
    output_schema=lambda c, node: schemas.SWITCH_OUTPUT,
)
