"""map: run a node (llm, tool, flow, loop) per list item, `max_concurrency` at once, in order.

`on_item_failure: collect` keeps going past failed items: the output is then one
`{ok, output, error}` per item, in input order. Stopping outcomes (budget, kill, escalation,
denial) still stop the map.
"""

from __future__ import annotations

import asyncio
from typing import Any

from runner.engine.context import NodeContext, NodeFailure, NodeStop
from runner.engine.results import NodeResult
from runner.engine.scheduler import KILLED
from runner.expr.cel import ExprError
from runner.spec.models import MapNode


async def run(ctx: NodeContext) -> Any:
    step = ctx.node.map
    assert step is not None and ctx.run.engine is not None
    run_item = ctx.run.engine.execute_node  # each item under its own timeout and retries
    try:
        items = step.over.evaluate(ctx.activation())
    except ExprError as e:
        raise NodeFailure(f"`over` could not be evaluated: {e.message}", kind="config") from None
    if not isinstance(items, list):
        raise NodeFailure(f"`over` must give a list, got {type(items).__name__}", kind="config")
    if len(items) > step.max_items:
        raise NodeFailure(
            f"`over` gave {len(items)} items; max_items is {step.max_items}", kind="config"
        )
    spec = ctx.node.spec
    collect = isinstance(spec, MapNode) and spec.map.on_item_failure == "collect"
    sem = asyncio.Semaphore(step.max_concurrency)
    results: list[NodeResult | None] = [None] * len(items)

    async def one(i: int, item: Any) -> None:
        async with sem:
            if ctx.run.services.kill_requested(ctx.run.run_id):
                # an item boundary is a kill boundary: no item starts after a kill was asked
                killed = NodeResult(
                    node_id=step.inner.id, kind=step.inner.kind, status="killed", error=KILLED
                )
                raise _ItemStopped(i, killed)
            child = NodeContext(
                run=ctx.run, node=step.inner, index=i, locals={step.as_: item, "index": i}
            )
            res = await run_item(child)
            results[i] = res
            ctx.usage += res.usage
            if res.status != "succeeded" and not (collect and res.status == "failed"):
                raise _ItemStopped(i, res)

    try:
        async with asyncio.TaskGroup() as tg:
            for i, item in enumerate(items):
                tg.create_task(one(i, item))
    except* _ItemStopped as group:
        first = min(
            (e for e in group.exceptions if isinstance(e, _ItemStopped)), key=lambda e: e.index
        )
        ctx.items = [r for r in results if r is not None]
        raise first.as_failure() from None
    done = [r for r in results if r is not None]
    ctx.items = done
    if collect:
        failed = [i for i, r in enumerate(done) if r.status != "succeeded"]
        if failed:
            ctx.detail.failed_items = failed
        return [
            {
                "ok": r.status == "succeeded",
                "output": r.output if r.status == "succeeded" else None,
                "error": r.error,
            }
            for r in done
        ]
    return [r.output for r in done]


class _ItemStopped(Exception):
    def __init__(self, index: int, result: NodeResult) -> None:
        super().__init__(result.error)
        self.index = index
        self.result = result

    def as_failure(self) -> Exception:
        """The map ends with its first stopped item's outcome: denied stays denied, and so on."""
        from runner.engine.budget import BudgetExceeded

        message = f"item {self.index}: {self.result.error}"
        if self.result.status == "budget_exceeded":
            return BudgetExceeded("item", message)
        if self.result.status == "failed":
            return NodeFailure(message, kind="item")
        return NodeStop(self.result.status, message)
