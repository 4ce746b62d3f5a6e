"""gate: every CEL check must hold; otherwise the run halts or escalates, as the node says."""

from __future__ import annotations

from typing import Any

from runner.engine.context import NodeContext, NodeFailure, NodeStop
from runner.expr.cel import ExprError, prepare, truthy


class GateStop(NodeStop):
    """A gate whose checks failed: ends the node as `failed` (halt) or `escalated`."""


async def run(ctx: NodeContext) -> Any:
    gate = ctx.node.gate
    assert gate is not None
    act = prepare(ctx.activation())
    failed: list[str] = []
    for expr, message in gate.checks:
        try:
            ok = truthy(expr.evaluate(act))
        except ExprError as e:
            raise NodeFailure(
                f"check {expr.source.strip()!r}: {e.message}", kind="config"
            ) from None
        if not ok:
            failed.append(message)
    output = {"passed": not failed, "failed": failed}
    if failed:
        status = "escalated" if gate.on_fail == "escalate" else "failed"
        raise GateStop(status, "; ".join(failed), output)
    return output
