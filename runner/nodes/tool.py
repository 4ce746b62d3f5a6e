"""tool: bind the arguments, derive the idempotency key, call through the contract."""

from __future__ import annotations

from typing import Any

from runner.engine.calls import call_tool
from runner.engine.context import NodeContext, NodeFailure
from runner.expr.cel import ExprError
from runner.plan.model import ToolStep


def idempotency_key(ctx: NodeContext, step: ToolStep, args: dict[str, Any]) -> str:
    """The tool's key expression over its args, else run id:node id(:map index); stable on retry."""
    if step.idempotency_key is not None:
        try:
            value = step.idempotency_key.evaluate({"args": args, "inputs": ctx.run.inputs})
        except ExprError as e:
            raise NodeFailure(
                f"idempotency_key of tool {step.name!r}: {e.message}", kind="config"
            ) from None
        return value if isinstance(value, str) else str(value)
    key = f"{ctx.run.run_id}:{ctx.run.path}{ctx.node_id}"
    return key if ctx.index is None else f"{key}:{ctx.index}"


async def run(ctx: NodeContext, step: ToolStep | None = None) -> Any:
    step = step or ctx.node.tool
    assert step is not None
    try:
        args = step.args.evaluate(ctx.activation())
    except ExprError as e:
        raise NodeFailure(f"arguments could not be bound: {e.message}", kind="config") from None
    if not isinstance(args, dict):
        raise NodeFailure("arguments must bind to a mapping", kind="config")
    key = idempotency_key(ctx, step, args)
    ctx.detail.idempotency_key = key
    return await call_tool(ctx, step, args, idempotency_key=key)
