"""Ceilings over many runs at a call: who the call is for, and what a refusal does to the run.

The store reserves a call against every ceiling that selects it in the transaction that
reserves it (runner/store/limits.py); here a refusal becomes what the ceiling declares:
`fail` (the node, and so the run, ends budget_exceeded naming the ceiling), `wait` (the call is
tried again as other calls settle or the window moves, for at most `max_wait`, then fails) or
`escalate` (the run ends escalated).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, TypeVar

from runner.engine.budget import BudgetExceeded
from runner.engine.context import NodeFailure, NodeStop
from runner.spec.budgets import (
    EACH,
    Budgets,
    CallScope,
    CeilingReached,
    RateLimitSpec,
    domain_of,
    window_bounds,
)

if TYPE_CHECKING:
    from runner.engine.context import NodeContext
    from runner.engine.services import Services

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


# ---------------------------------------------------------------------------------------------
# the budgets set in force, as this process last read it


BUDGETS_TTL_S = 1.0  # a set put in force is seen by running processes within this long
_SEEN: dict[int, tuple[float, Budgets]] = {}


def budgets_of(services: Services) -> Budgets:
    """The store's budgets set in force (read at most once a second per store): which tool
    calls must reserve, which rate limits apply. A model call's reservation reads the set in its
    own transaction, never from here."""
    now = time.monotonic()
    hit = _SEEN.get(id(services))
    if hit is not None and now - hit[0] < BUDGETS_TTL_S:
        return hit[1]
    row = services.budgets_get()
    budgets = Budgets() if row is None else Budgets.from_json(row["body"])
    _SEEN[id(services)] = (now, budgets)
    return budgets


def soft_pressure(ctx: NodeContext) -> str | None:
    """Why a model call should take its route's cheaper `downgrade_to` model: the first ceiling
    selecting it that declares `soft` and has spent at least that fraction of a limit (None:
    none has). Read outside the reservation: a downgrade is a preference, the ceiling itself
    is enforced at the reservation."""
    run = ctx.run
    scope = call_scope(ctx, "llm")
    now = time.time()
    for c in budgets_of(run.services).applicable(scope):
        if c.spec.soft is None:
            continue
        start, _ = window_bounds(c.spec.window, now)
        used = run.services.spend_totals(c.bound(scope), start)
        for dim, limit in c.limits().items():
            if dim != "tool_calls" and limit and used[dim] >= c.spec.soft * limit:
                return (
                    f"ceiling {c.describe(scope)} has used {used[dim] / limit:.0%} of "
                    f"max_{dim} (soft {c.spec.soft:.0%})"
                )
    return None


# ---------------------------------------------------------------------------------------------
# rate limits


def rate_keys(
    budgets: Budgets, scope: CallScope, *, tool: str | None = None, model: str | None = None,
    alias: str | None = None, destination: str | None = None,
) -> list[tuple[str, RateLimitSpec, str]]:  # fmt: skip
    """(key, limit, what) of every rate limit that selects this call: a tool's (by its name),
    or a model route's (by its alias or model id); each `"*"` and each destination apart."""
    out = []
    for name, rl in budgets.rate_limits:
        if rl.tool is not None:
            if tool is None or rl.tool not in (EACH, tool):
                continue
            parts = [f"tool={tool}" if rl.tool == EACH else ""]
        else:
            if model is None or rl.model not in (EACH, model, alias):
                continue
            parts = [f"model={model}" if rl.model == EACH else ""]
        if rl.tenant is not None:
            if scope.tenant is None or rl.tenant not in (EACH, scope.tenant):
                continue
            if rl.tenant == EACH:
                parts.append(f"tenant={scope.tenant}")
        what = f"rate limit {name!r} ({rl.limit} {rl.unit} per {rl.per:g}s"
        if rl.destination is not None:
            if destination is None:
                raise NodeFailure(
                    f"rate limit {name!r} counts each destination of {tool!r} apart, but the "
                    "call has none (declare `destination:` on the tool contract)",
                    kind="config",
                )
            dest = domain_of(destination) if rl.destination == "domain" else destination
            parts.append(f"destination={dest}")
            what += f" to {dest}"
        key = name + "|" + "|".join(p for p in parts if p)
        out.append((key, rl, what + ")"))
    return out


async def acquire_rates(ctx: NodeContext, keys: list[tuple[str, RateLimitSpec, str]],
                        amount: int = 1) -> None:  # fmt: skip
    """Take the call's share of each rate limit in the store, waiting (bounded) or failing as
    each declares."""
    run = ctx.run
    svc = run.services
    for key, rl, what in keys:
        n = amount if rl.unit == "tokens" else 1
        started = time.monotonic()
        waited = 0.0
        while True:
            wait = svc.rate_acquire(key, amount=n, limit=rl.limit, per=rl.per)
            if wait <= 0:
                break
            waited = time.monotonic() - started
            if rl.on_limit == "fail" or waited + wait > rl.max_wait:
                svc.event(
                    run.run_id, "rate_limited", ctx.node_id, key=key, waited_s=round(waited, 3)
                )
                why = (
                    "its limit is reached"
                    if rl.on_limit == "fail"
                    else f"there is no room within max_wait {rl.max_wait:g}s"
                    if wait != math.inf
                    else f"{n} is more than the whole limit"
                )
                raise NodeFailure(f"{what}: the call was not made; {why}", kind="rate_limit")
            await asyncio.sleep(wait)
        if waited:
            ctx.detail.retried.append(f"waited {waited:.2f}s for {what}")
            svc.event(run.run_id, "rate_wait", ctx.node_id, key=key, waited_s=round(waited, 3))
