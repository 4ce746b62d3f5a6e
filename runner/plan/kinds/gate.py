"""`gate:` nodes: CEL checks that must all hold, or the run follows `on_fail`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.expr.cel import CompiledExpr
from runner.plan import schemas
from runner.plan.kinds.base import Kind, Site
from runner.plan.model import GateStep
from runner.plan.names import expr_refs
from runner.spec.models import GateNode

if TYPE_CHECKING:
    from runner.plan.compiler import Compiler


def compile_gate(c: Compiler, site: Site, node: GateNode) -> dict[str, Any] | None:
    checks: list[tuple[CompiledExpr, str]] = []
    ok = True
    for i, check in enumerate(node.gate):
        where = site.at("gate", i, "check")
        expr = c.cel(check.check, where)
        if expr is None:
            ok = False
            continue
        site.refs(c, expr_refs(check.check, expr), where)
        checks.append((expr, check.message))
    if not ok:
        return None
    return {
        "gate": GateStep(checks=tuple(checks), on_fail=node.on_fail),
        "output_schema": schemas.GATE_OUTPUT,
    }


KIND = Kind(
    name="gate",
    spec_type=GateNode,
    compile=compile_gate,
    output_schema=lambda c, node: schemas.GATE_OUTPUT,
)
