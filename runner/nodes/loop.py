"""loop: run a body graph again until `until` holds, at most max_iterations passes.

Each pass sees the previous pass's body results as `previous.<id>` (output null on the first)
and its number as `iteration`. A gate in the body that fails ends that pass unconverged instead
of stopping the run: a failed check is what makes a repair loop go round again.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from runner.engine.context import NodeContext, NodeFailure, NodeStop
from runner.engine.results import NodeResult, Usage
from runner.engine.scheduler import KILLED
from runner.expr.cel import ExprError, truthy
from runner.nodes.flow import item_label, raise_for


def _unconverged_gates(stopped: list[NodeResult]) -> bool:
    """Whether a pass stopped only because body gates failed their checks."""
    return bool(stopped) and all(
        r.kind == "gate"
        and r.status in ("failed", "escalated")
        and isinstance(r.output, dict)
        and r.output.get("passed") is False
        for r in stopped
    )


async def run(ctx: NodeContext) -> Any:
    from runner.engine.child import run_child

    step = ctx.node.loop
    assert step is not None
    # a body is part of its spec: the spec's policies govern its tool calls as they do outside
    body = dataclasses.replace(step.body, policy=ctx.run.plan.policy)
    empty = {"output": None, "status": "skipped", "error": None}
    previous: dict[str, Any] = {bid: dict(empty) for bid in body.nodes}
    seed = {k: v for k, v in ctx.run.results.items() if k not in body.nodes}
    calls: dict[tuple[str, int | None], int] = {}  # attempts count across passes
    passes: list[NodeResult] = []
    ctx.items = passes
    outputs: dict[str, Any] = {}
    for k in range(1, step.max_iterations + 1):
        if ctx.run.services.kill_requested(ctx.run.run_id):
            raise NodeStop("killed", f"before pass {k}: {KILLED}")  # a pass is a kill boundary
        scope = {**ctx.run.scope, **ctx.locals, "previous": previous, "iteration": k}
        child = await run_child(
            ctx,
            body,
            ctx.run.inputs,
            label=f"{item_label(ctx)}#{k}/",
            budget=ctx.run.budget,
            scope=scope,
            seed=seed,
            calls=calls,
        )
        views = {bid: child.views.get(bid, empty) for bid in body.nodes}
        outputs = {bid: v["output"] for bid, v in views.items()}
        usage = Usage()
        for r in child.results:
            usage += r.usage
        passes.append(
            NodeResult(
                node_id=f"{ctx.node_id}#{k}",
                kind="iteration",
                status=child.status,
                output=outputs,
                error=child.reason,
                attempts=1,
                usage=usage,
                items=child.results,
            )
        )
        ctx.detail.iterations = k
        if child.status == "succeeded":
            act = {"inputs": ctx.run.inputs, "nodes": child.views, **scope}
            try:
                done = truthy(step.until.evaluate(act))
            except ExprError as e:
                raise NodeFailure(f"until (pass {k}): {e.message}", kind="config") from None
        elif _unconverged_gates(child.stopped):
            done = False
        else:
            raise_for(child.status, f"pass {k}: {child.reason}")
        if done:
            ctx.detail.converged = True
            return {**outputs, "iterations": k, "converged": True}
        previous = views
    ctx.detail.converged = False
    result = {**outputs, "iterations": step.max_iterations, "converged": False}
    message = (
        f"`until` did not hold after {step.max_iterations} passes ({step.until.source.strip()})"
    )
    if step.on_exhausted == "last":
        return result
    if step.on_exhausted == "fail":
        raise NodeFailure(message, kind="exhausted")
    raise NodeStop("escalated", message, result)
