"""switch: pick the first case whose condition holds (else the default); skip other branches."""

from __future__ import annotations

from typing import Any

from runner.engine.context import NodeContext, NodeFailure
from runner.expr.cel import ExprError, prepare, truthy


async def run(ctx: NodeContext) -> Any:
    sw = ctx.node.switch
    assert sw is not None
    act = prepare(ctx.activation())
    for i, (expr, targets) in enumerate(sw.cases):
        try:
            hit = truthy(expr.evaluate(act))
        except ExprError as e:
            raise NodeFailure(
                f"case {i} {expr.source.strip()!r}: {e.message}", kind="config"
            ) from None
        if hit:
            return {"branch": i, "chosen": list(targets)}
    return {"branch": "default", "chosen": list(sw.default)}
