"""Run one node (or map item) to a NodeResult: its kind's runner under its timeout and retries.

Both backends come here for every node: the local scheduler and the Temporal node activity.
Node runners are looked up by kind in `runner.nodes.RUNNERS`, the one place a kind registers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from runner.engine.budget import BudgetExceeded
from runner.engine.context import NodeContext, NodeFailure, NodeStop
from runner.engine.results import NodeResult
from runner.nodes import RUNNERS

# A retry policy's `on` names, and the failure kinds (NodeFailure.kind) each one retries.
RETRY_KINDS = {
    "error": {"error", "invalid_output", "item"},
    "timeout": {"timeout"},
    "provider_error": {"provider_error"},
}


async def execute_node(ctx: NodeContext) -> NodeResult:
    """Run one node (or map item) under its timeout and retry policy; node errors never raise."""
    node = ctx.node
    policy = node.retry
    started = time.time()
    t0 = time.perf_counter()
    attempt = 0
    status = "succeeded"
    output: Any = None
    error: str | None = None
    while True:
        attempt += 1
        try:
            async with asyncio.timeout(node.timeout):
                output = await dispatch(ctx)
            status, error = "succeeded", None
            break
        except TimeoutError:
            status, error, kind = "failed", f"timed out after {node.timeout:g}s", "timeout"
        except NodeFailure as e:
            status, error, kind = "failed", e.message, e.kind
        except BudgetExceeded as e:
            status, error = "budget_exceeded", e.message
            break
        except NodeStop as g:
            status, error, output = g.status, g.message, g.output
            break
        retryable = any(kind in RETRY_KINDS[k] for k in policy.on)
        if not retryable or attempt >= policy.max_attempts:
            break
        delay = min(policy.backoff * policy.multiplier ** (attempt - 1), policy.max_backoff)
        ctx.detail.setdefault("retried", []).append(error)
        await asyncio.sleep(delay)
    detail = dict(ctx.detail)
    items = detail.pop("items", None)
    attempts = detail.get("asks", attempt) if node.kind == "llm" else attempt
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
        items=items,
    )


async def dispatch(ctx: NodeContext) -> Any:
    """One attempt of the node's own runner, chosen by its kind."""
    runner = RUNNERS.get(ctx.node.kind)
    if runner is None:
        raise NodeFailure(f"unknown node kind {ctx.node.kind!r}", kind="config")
    return await runner(ctx)
