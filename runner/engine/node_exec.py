"""Run one node (or map item) to a NodeResult: its kind's runner inside the node envelope.

Both backends come here for every node: the local scheduler and the Temporal node activity.
Node runners are looked up by kind in `runner.nodes.RUNNERS`, the one place a kind registers.
"""

from __future__ import annotations

import time
from typing import Any

from runner.engine.budget import BudgetExceeded
from runner.engine.calls import node_envelope
from runner.engine.context import NodeContext, NodeFailure, NodeStop
from runner.engine.results import NodeResult
from runner.nodes import RUNNERS


async def execute_node(ctx: NodeContext) -> NodeResult:
    """Run one node (or map item) through the envelope to a result; node errors never raise."""
    started = time.time()
    t0 = time.perf_counter()
    output: Any = None
    error: str | None = None
    try:
        output = await _ENVELOPED(ctx)
        status = "succeeded"
    except NodeFailure as e:
        status, error = "failed", e.message
    except BudgetExceeded as e:
        status, error = "budget_exceeded", e.message
    except NodeStop as g:
        status, error, output = g.status, g.message, g.output
    node = ctx.node
    detail = ctx.detail
    attempts = (detail.asks or ctx.attempts) if node.kind == "llm" else ctx.attempts
    return NodeResult(
        node_id=node.id,
        kind=node.kind,
        status=status,  # type: ignore[arg-type]
        output=output,
        error=error,
        attempts=attempts,
        model=ctx.model,
        usage=ctx.usage,
        started_at=started,
        duration_s=time.perf_counter() - t0,
        detail=detail,
        items=ctx.items,
    )


async def dispatch(ctx: NodeContext) -> Any:
    """One attempt of the node's own runner, chosen by its kind."""
    runner = RUNNERS.get(ctx.node.kind)
    if runner is None:
        raise NodeFailure(f"unknown node kind {ctx.node.kind!r}", kind="config")
    return await runner(ctx)


_ENVELOPED = node_envelope(dispatch)
