"""Ceilings over many runs at a call: who the call is for, and what a refusal does to the run.

The store reserves a call against every ceiling that selects it in the transaction that
reserves it (runner/store/limits.py); here a refusal becomes what the ceiling declares:
`fail` (the node, and so the run, ends budget_exceeded naming the ceiling), `wait` (the call is
tried again as other calls settle or the window moves, for at most `max_wait`, then fails) or
`escalate` (the run ends escalated).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, TypeVar

from runner.engine.budget import BudgetExceeded
from runner.engine.context import NodeStop
from runner.spec.budgets import CallScope, CeilingReached

if TYPE_CHECKING:
    from runner.engine.context import NodeContext

T = TypeVar("T")
POLL_S = (0.05, 1.0)  # a waiting call tries again after this long, doubling up to the second


def call_scope(
    ctx: NodeContext, kind: Literal["llm", "tool"], tool: str | None = None
) -> CallScope:
    env = ctx.run.envelope
    return CallScope(
        tenant=env.tenant,
        workflow=env.workflow if env.workflow is not None else ctx.run.plan.name,
        kind=kind,
        tool=tool,
    )


async def reserve(ctx: NodeContext, attempt: Callable[[], T]) -> T:
    """`attempt()` (a store reservation) until no ceiling refuses it, as the refusing ceiling
    says; every refusal is an event of the run."""
    started = time.monotonic()
    delay = POLL_S[0]
    waited = False
    while True:
        try:
            got = attempt()
        except CeilingReached as e:
            spec = e.ceiling.spec
            run = ctx.run
            elapsed = time.monotonic() - started
            if spec.on_exceed == "wait" and elapsed < spec.max_wait:
                if not waited:
                    run.services.event(
                        run.run_id, "ceiling_wait", ctx.node_id, ceiling=e.ceiling.id,
                        dim=e.dim, message=e.message,
                    )  # fmt: skip
                    waited = True
                await asyncio.sleep(min(delay, spec.max_wait - elapsed))
                delay = min(delay * 2, POLL_S[1])
                continue
            run.services.event(
                run.run_id, "ceiling_reached", ctx.node_id, ceiling=e.ceiling.id, dim=e.dim,
                on_exceed=spec.on_exceed, message=e.message,
            )  # fmt: skip
            message = e.message + "; the call was not made"
            if spec.on_exceed == "wait":
                message += f" (waited {spec.max_wait:g}s for room)"
            if spec.on_exceed == "escalate":
                raise NodeStop("escalated", message) from None
            raise BudgetExceeded(f"ceiling:{e.ceiling.id}", message) from None
        return got
