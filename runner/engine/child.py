"""Runs a child plan (a subflow, or one pass of a loop body) inside a node of its parent run.

The child shares the parent's run id, services, telemetry and envelope; its budget is either the
parent's ledger itself (a loop pass) or a ledger that charges the parent too (a subflow), so a
child can never spend past what the parent has left. Its node results come back to be nested in
the parent's NodeResult, not recorded as top-level nodes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.engine.budget import BudgetExceeded, BudgetLedger, Reservation
from runner.engine.context import NodeContext, RunState
from runner.engine.hooks import Hooks
from runner.engine.results import STOPPING, NodeResult, RunStatus, severity
from runner.models.responses import Recorded, RecordedResponses
from runner.plan.model import Plan
from runner.policy import PolicySet


class ScopedResponses(RecordedResponses):
    """A parent's recorded responses seen from a child: `draft` is looked up as `revise.draft`."""

    def __init__(self, inner: RecordedResponses, prefix: str, index: int | None) -> None:
        super().__init__(inner.path, ())
        self.inner = inner
        self.prefix = prefix
        self.index = index  # the map item the child runs for, when the child node has none

    def get(self, node: str, index: int | None, attempt: int) -> Recorded | None:
        return self.inner.get(self.prefix + node, self.index if index is None else index, attempt)

    def serves(self, node: str) -> bool:
        return self.inner.serves(self.prefix + node)


@dataclass
class ChildLedger(BudgetLedger):
    """A subflow's own caps, charged to the parent's ledger too: the tighter one wins."""

    parent: BudgetLedger | None = None
    _links: dict[int, Reservation] = field(default_factory=dict)

    def root(self) -> BudgetLedger:
        return self.parent.root() if self.parent is not None else self

    def reserve_llm(self, *, usd: float, tokens: int, model: str) -> Reservation:
        own = super().reserve_llm(usd=usd, tokens=tokens, model=model)
        if self.parent is not None:
            try:
                up = self.parent.reserve_llm(usd=usd, tokens=tokens, model=model)
            except BudgetExceeded as e:
                super().release(own)
                raise BudgetExceeded(e.cap, f"the parent run's budget: {e.message}") from None
            self._links[id(own)] = up
        return own

    def settle_llm(self, r: Reservation, *, usd: float, tokens: int) -> None:
        up = self._links.pop(id(r), None)
        if up is not None and self.parent is not None:
            self.parent.settle_llm(up, usd=usd, tokens=tokens)
        super().settle_llm(r, usd=usd, tokens=tokens)

    def release(self, r: Reservation) -> None:
        up = self._links.pop(id(r), None)
        if up is not None and self.parent is not None:
            self.parent.release(up)
        super().release(r)

    def count_tool(self) -> None:
        super().count_tool()
        if self.parent is not None:
            self.parent.count_tool()

    def reserve_tool(self, tool: str) -> None:
        super().reserve_tool(tool)
        if self.parent is not None:
            try:
                self.parent.reserve_tool(tool)
            except BudgetExceeded as e:
                self.tool_calls -= 1
                raise BudgetExceeded(e.cap, f"the parent run's budget: {e.message}") from None


@dataclass
class ChildRun:
    """How a child plan ended, its node results in plan order, and what expressions see."""

    status: RunStatus
    reason: str | None
    results: list[NodeResult]
    views: dict[str, dict[str, Any]]
    stopped: list[NodeResult]


def _outer_policies(parent: RunState, plan: Plan) -> tuple[tuple[str, PolicySet], ...]:
    """The parent's enclosing policies, plus its own when the child is another spec."""
    if plan.policy is parent.plan.policy:  # a loop pass: the same spec, the same rules
        return parent.outer_policies
    return (*parent.outer_policies, (parent.plan.name, parent.plan.policy))


async def run_child(
    ctx: NodeContext,
    plan: Plan,
    inputs: dict[str, Any],
    *,
    label: str,
    budget: BudgetLedger,
    scope: Mapping[str, Any] | None = None,
    seed: Mapping[str, NodeResult] | None = None,
    calls: dict[tuple[str, int | None], int] | None = None,
) -> ChildRun:
    """Schedule a child plan to its end; `seed` are outer results its nodes may read."""
    parent = ctx.run
    assert parent.engine is not None, "a child plan runs on the engine of its parent"
    responses = (
        ScopedResponses(parent.responses, f"{ctx.node_id}.", ctx.index)
        if parent.responses is not None
        else None
    )
    state = RunState(
        run_id=parent.run_id,
        plan=plan,
        inputs=inputs,
        budget=budget,
        responses=responses,
        hooks=Hooks(),
        services=parent.services,
        telemetry=parent.telemetry,
        envelope=parent.envelope,
        scope=dict(scope or {}),
        path=parent.path + label,
        outer_policies=_outer_policies(parent, plan),
        engine=parent.engine,
    )
    if calls is not None:
        state.calls = calls
    for nid, res in (seed or {}).items():
        state.results[nid] = res
        state.views[nid] = res.view()
    stop: list[NodeResult] = []
    status: RunStatus = "succeeded"
    reason: str | None = None
    try:
        async with asyncio.timeout(plan.budget.max_seconds):
            await parent.engine.schedule(state, stop)
    except TimeoutError:
        status, reason = "budget_exceeded", f"max_seconds {plan.budget.max_seconds:g} reached"
    if status == "succeeded" and stop:
        first = min(stop, key=lambda r: severity(r.status))
        status = STOPPING[first.status]
        reason = f"node {first.node_id!r}: {first.error}"
    results = [state.results[n] for n in plan.order if n in state.results]
    for r in results:
        ctx.usage += r.usage
    views = {n: state.views[n] for n in state.views}
    return ChildRun(status=status, reason=reason, results=results, views=views, stopped=stop)
