"""flow: run another spec as one node; its outputs are this node's output (docs/composition.md)."""

from __future__ import annotations

from typing import Any

from runner.engine.budget import BudgetExceeded
from runner.engine.context import NodeContext, NodeFailure, NodeStop
from runner.expr.cel import ExprError
from runner.plan import schemas


def item_label(ctx: NodeContext) -> str:
    """Where a child runs inside its parent: `answer/`, or `each[3]/` for a map item."""
    return ctx.node_id + (f"[{ctx.index}]" if ctx.index is not None else "")


def raise_for(status: str, message: str, output: Any = None) -> None:
    """Turn a child's non-success outcome into this node's outcome (same status)."""
    if status == "budget_exceeded":
        raise BudgetExceeded("child", message)
    if status == "failed":
        raise NodeFailure(message, kind="item")
    raise NodeStop(status, message, output)


async def run(ctx: NodeContext) -> Any:
    from runner.engine.child import ChildLedger, run_child

    step = ctx.node.flow
    assert step is not None
    try:
        inputs = step.inputs.evaluate(ctx.activation())
    except ExprError as e:
        raise NodeFailure(f"inputs could not be bound: {e.message}", kind="config") from None
    if not isinstance(inputs, dict):
        raise NodeFailure("subflow inputs must bind to a mapping", kind="config")
    problems = schemas.validation_errors(step.plan.inputs_schema, inputs)
    if problems:
        raise NodeFailure(
            f"inputs do not match {step.path}'s inputs schema: " + "; ".join(problems),
            kind="invalid_args",
        )
    ctx.detail.flow = step.path
    ledger = ChildLedger(caps=step.plan.budget, parent=ctx.run.budget)
    # the child's own caps count what an execution a crash cut off already spent in it (the
    # parent's ledger counts it already: runner/engine/budget.py)
    before = ctx.run.budget.root().earlier_under(ctx.run.path + item_label(ctx) + "/")
    ledger.spent_usd, ledger.spent_tokens = before.cost_usd, before.tokens
    ledger.llm_calls = before.llm_calls
    child = await run_child(ctx, step.plan, inputs, label=item_label(ctx) + "/", budget=ledger)
    ctx.items = child.results
    if child.status != "succeeded":
        raise_for(child.status, f"subflow {step.path}: {child.reason}")
    act = {"inputs": inputs, "nodes": child.views}
    outputs: dict[str, Any] = {}
    for name, cv in step.plan.outputs.items():
        try:
            outputs[name] = cv.evaluate(act)
        except ExprError as e:
            raise NodeFailure(f"subflow output {name!r}: {e.message}", kind="config") from None
    return outputs
