"""The generic interpreter workflow: the one scheduler (runner/engine/scheduler.py), driven
deterministically; it decides readiness, skips, budget admission and the outcome, as locally.

LLM, tool, map, approval, flow and loop nodes are activities (`flowrun.node`); `when`, gate,
switch and the run's outputs are CEL evaluated here, with no round trip. Time comes from
`workflow.now()`, nothing here draws ids or randomness. Approvals are the `decide` update (with
a validator); a cancellation (`flowrun kill`) ends the run `killed`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from runner.engine.budget import BudgetLedger
    from runner.engine.context import NodeContext, NodeFailure, NodeStop, RunState
    from runner.engine.hooks import Hooks
    from runner.engine.results import NodeDetail, NodeResult, RunResult
    from runner.engine.scheduler import Decisions, Scheduler
    from runner.nodes import gate, switch
    from runner.plan.model import Plan, PlanNode
    from runner.temporal import FINISH_ACTIVITY, INTERPRETER_VERSION, NODE_ACTIVITY
    from runner.temporal.plans import plan_for
    from runner.temporal.types import FinishTask, NodeTask, RunInput

PURE = frozenset({"gate", "switch"})
HEARTBEAT_TIMEOUT = timedelta(seconds=10)  # a lost worker is noticed this fast
FINISH_TIMEOUT = timedelta(seconds=60)
CANCELLED = "killed on request (the workflow was cancelled)"


def _activity_options(node: PlanNode) -> dict[str, Any]:
    """The node's timeout and backoff; flowrun's own retry loop runs inside the activity."""
    r = node.retry
    per_try = node.timeout if node.timeout is not None else 3600.0
    backoffs = sum(
        min(r.backoff * r.multiplier**i, r.max_backoff) for i in range(r.max_attempts - 1)
    )
    return {
        "start_to_close_timeout": timedelta(seconds=per_try * r.max_attempts + backoffs + 60),
        "heartbeat_timeout": HEARTBEAT_TIMEOUT,
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=max(r.backoff, 0.1)),
            backoff_coefficient=max(r.multiplier, 1.0),
            maximum_interval=timedelta(seconds=max(r.max_backoff, r.backoff, 0.1)),
            non_retryable_error_types=["FlowrunInternal"],
        ),
    }


@workflow.defn(name="flowrun.interpret")
class Interpreter:
    """Drives runner/engine/scheduler.py: activities for the nodes it starts, CEL inline for
    gates and switches; budget admission is the scheduler's, so capped nodes run in parallel
    as far as their worst cases fit (no lock)."""

    def __init__(self) -> None:
        self.sched: Scheduler | None = None
        self.woken: set[str] = set()
        self.settled: dict[str, Any] | None = None  # the run's snapshot when it parks or ends
        self.plan: Plan | None = None
        self.recorded: set[str] = set()  # node results already checkpointed in the store
        self.attempt = 1  # one more after each park, as the local backend counts attempts
        self.opened = False  # an activity of this attempt has been dispatched

    # -- the run -------------------------------------------------------------------------------
    @workflow.run
    async def run(self, run: RunInput) -> dict[str, Any]:
        if run.interpreter_version > INTERPRETER_VERSION:
            raise ApplicationError(
                f"run {run.run_id!r} needs interpreter version {run.interpreter_version}; this "
                f"worker has version {INTERPRETER_VERSION}: upgrade the worker's flowrun",
                type="InterpreterTooOld",
                non_retryable=True,
            )
        with workflow.unsafe.sandbox_unrestricted():
            plan = self.plan = plan_for(run)
        state = RunState(
            run_id=run.run_id,
            plan=plan,
            inputs=run.inputs,
            budget=BudgetLedger(plan.budget),
            responses=None,
            hooks=Hooks(),
        )
        sched = self.sched = Scheduler(plan, run.inputs, results=state.results, views=state.views)
        decisions = sched.start()
        while True:
            t0 = workflow.time()
            started = workflow.now().timestamp()
            try:
                if await self._round(run, state, decisions):
                    sched.timed_out()
            except asyncio.CancelledError:
                self._killed(sched)
            if (ended := await self._settle(run, sched, started, t0)) is not None:
                return ended
            # parked: wait for a decision (the `decide` update), a timeout, or a kill
            try:
                await workflow.wait_condition(
                    lambda: bool(self.woken), timeout=self._next_timeout()
                )
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                self._killed(sched)
                ended = await self._settle(run, sched, started, t0)
                assert ended is not None  # a killed run has ended
                return ended
            decisions = sched.wake(sorted(self.woken or set(sched.parked), key=plan.order.index))
            self.woken.clear()
            self.attempt, self.opened = self.attempt + 1, False
            self.settled = None

    async def _settle(
        self, run: RunInput, sched: Scheduler, started: float, t0: float
    ) -> dict[str, Any] | None:
        """Checkpoint the round's RunResult and make it queryable; it, once the run has ended."""
        result = sched.result(run.run_id, started_at=started, duration_s=workflow.time() - t0)
        self.settled = result.to_json()
        terminal = result.status != "waiting"
        await self._record(run, result, terminal, started)
        return self.settled if terminal else None

    def _killed(self, sched: Scheduler) -> None:
        """A cancellation: nodes cut off mid-call and parked nodes end killed (and are saved)."""
        for r in sched.killed(CANCELLED).settled:
            self.recorded.discard(r.node_id)

    def _next_timeout(self) -> timedelta | None:
        """Wake up when the earliest parked approval times out, so its on_timeout applies."""
        assert self.plan is not None and self.sched is not None
        timeouts: list[float] = []
        for nid in self.sched.parked:
            step = self.plan.nodes[nid].approval
            if step is not None and step.timeout:
                timeouts.append(step.timeout)
        return timedelta(seconds=min(timeouts) + 1) if timeouts else None

    async def _round(self, run: RunInput, state: RunState, decisions: Decisions) -> bool:
        """Start what the scheduler decides until it is done; True when max_seconds ran out."""
        plan = state.plan
        running: dict[str, asyncio.Task[NodeResult]] = {}
        try:
            async with asyncio.timeout(plan.budget.max_seconds):
                await self._apply(run, state, decisions, running)
                while running:
                    await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
                    for nid in [n for n in plan.order if n in running and running[n].done()]:
                        res = running.pop(nid).result()
                        if not res.detail.get("activity_error"):
                            self.recorded.add(nid)  # the activity checkpointed it
                        await self._apply(run, state, self._sched.finished(res), running)
            return False
        except TimeoutError:
            return True
        finally:
            for task in running.values():
                task.cancel()

    @property
    def _sched(self) -> Scheduler:
        assert self.sched is not None
        return self.sched

    async def _apply(
        self,
        run: RunInput,
        state: RunState,
        decisions: Decisions,
        running: dict[str, asyncio.Task[NodeResult]],
    ) -> None:
        """Start activities; gates and switches are evaluated here and reported at once."""
        todo = [decisions]
        while todo:
            d = todo.pop(0)
            for nid in d.start:
                node = state.plan.nodes[nid]
                if node.kind in PURE:
                    todo.append(self._sched.finished(await self._pure(state, node)))
                else:
                    spent = self._sched.ledger_start(nid).to_json()
                    running[nid] = asyncio.create_task(self._dispatch(run, state, node, spent))

    async def _pure(self, state: RunState, node: PlanNode) -> NodeResult:
        """A gate or switch: CEL over the views, in the workflow, like the local node runner."""
        ctx = NodeContext(run=state, node=node)
        status, output, error = "succeeded", None, None
        try:
            output = await (gate.run(ctx) if node.kind == "gate" else switch.run(ctx))
        except NodeFailure as e:
            status, error = "failed", e.message
        except NodeStop as g:
            status, error, output = g.status, g.message, g.output
        return NodeResult(
            node_id=node.id,
            kind=node.kind,
            status=status,  # type: ignore[arg-type]
            output=output,
            error=error,
            attempts=1,
            started_at=workflow.now().timestamp(),
            detail=ctx.detail,
        )

    async def _dispatch(
        self, run: RunInput, state: RunState, node: PlanNode, spent: dict[str, float]
    ) -> NodeResult:
        task = NodeTask(
            run=run,
            node_id=node.id,
            views={d: state.views[d] for d in node.deps if d in state.views},
            spent=spent,
            attempt=self.attempt,
            opens=not self.opened,
        )
        self.opened = True
        try:
            data = await workflow.execute_activity(
                NODE_ACTIVITY, task, result_type=dict, **_activity_options(node)
            )
        except ActivityError as e:
            cause = e.cause.message if isinstance(e.cause, ApplicationError) else str(e.cause)
            return NodeResult(
                node_id=node.id,
                kind=node.kind,
                status="failed",
                error=cause,
                detail=NodeDetail(activity_error=True),
            )
        return NodeResult.from_json(data)

    async def _record(
        self, run: RunInput, result: RunResult, terminal: bool, started: float
    ) -> None:
        """One activity per round: checkpoint what the workflow evaluated, and the outcome."""
        pending = [r.to_json() for nid, r in result.nodes.items() if nid not in self.recorded]
        self.recorded.update(result.nodes)
        await workflow.execute_activity(
            FINISH_ACTIVITY,
            FinishTask(
                run_id=run.run_id,
                store_path=run.store_path,
                nodes=pending,
                run=result.to_json(),
                terminal=terminal,
                input=run,
                attempt=self.attempt,
                started_at=started,
                opens=not self.opened,
            ),
            start_to_close_timeout=FINISH_TIMEOUT,
        )

    # -- queries and updates ----------------------------------------------------------------------
    @workflow.query(name="settled")
    def settled_query(self) -> dict[str, Any] | None:
        """The run's outcome once it ended or parked for approval; None while it runs."""
        return self.settled

    @workflow.update(name="decide")
    async def decide(self, node_id: str) -> str:
        """Wake a node parked for approval; the decision itself is recorded in the store."""
        self.woken.add(self._parked_at(node_id))
        return "accepted"

    @decide.validator
    def _validate_decide(self, node_id: str) -> None:
        self._parked_at(node_id)

    def _parked_at(self, key: str) -> str:
        base = key.split("[", 1)[0]
        parked = self.sched.parked if self.sched is not None else {}
        if base not in parked or base in self.woken:
            waiting = ", ".join(sorted(set(parked) - self.woken)) or "none"
            raise ApplicationError(
                f"the run does not wait for approval at {key!r} (waiting: {waiting})",
                type="NotWaiting",
                non_retryable=True,
            )
        return base
