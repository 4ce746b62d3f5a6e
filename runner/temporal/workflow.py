"""The generic interpreter workflow: the local scheduler's ready-set loop, deterministically.

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
    from runner.engine.results import STOPPING, NodeResult, RunResult, RunStatus, Usage
    from runner.engine.run import _passed_over, run_outcome, settled_without_running
    from runner.nodes import gate, switch
    from runner.plan.model import Plan, PlanNode
    from runner.temporal import FINISH_ACTIVITY, INTERPRETER_VERSION, NODE_ACTIVITY
    from runner.temporal.plans import plan_for
    from runner.temporal.types import FinishTask, NodeTask, RunInput

PURE = frozenset({"gate", "switch"})
HEARTBEAT_TIMEOUT = timedelta(seconds=10)  # a lost worker is noticed this fast
FINISH_TIMEOUT = timedelta(seconds=60)


def _spends_capped(plan: Plan, node: PlanNode) -> bool:
    """Whether the node's activity can spend something the budget caps (then it runs alone)."""
    b = plan.budget
    llm = b.max_usd is not None or b.max_tokens is not None or b.max_llm_calls is not None
    tools = b.max_tool_calls is not None
    if node.kind == "llm":
        return llm
    if node.kind == "tool":
        return tools
    return node.kind in ("map", "flow", "loop") and (llm or tools)


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
    def __init__(self) -> None:
        self.results: dict[str, NodeResult] = {}
        self.parked: dict[str, str] = {}  # node id -> why it waits (approval summary)
        self.woken: set[str] = set()
        self.settled: dict[str, Any] | None = None  # the run's snapshot when it parks or ends
        self.plan: Plan | None = None
        self.waiting: dict[str, int] = {}
        self.remaining: set[str] = set()
        self.running: set[str] = set()
        self.recorded: set[str] = set()  # node results already checkpointed in the store
        # activities that spend a capped resource run one at a time, each seeing what the ones
        # before it spent: parallel activities cannot see each other's reservations, so without
        # this a fan-out could spend past max_usd (the local backend reserves across them)
        self.budget_lock = asyncio.Lock()
        self.spent_by: dict[str, Usage] = {}  # what each finished activity spent

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
        self.waiting = {nid: len(plan.nodes[nid].deps) for nid in plan.order}
        self.remaining = set(plan.order)
        first = [nid for nid in plan.order if self.waiting[nid] == 0]
        while True:
            t0 = workflow.time()
            started = workflow.now().timestamp()
            stop: list[NodeResult] = []
            killed = False
            try:
                timed_out = await self._round(run, state, first, stop)
            except asyncio.CancelledError:
                killed, timed_out = True, False
            result = self._outcome(run, state, stop, timed_out, killed, started, t0)
            self.settled = result.to_json()
            terminal = result.status != "waiting"
            await self._record(run, result, terminal)
            if terminal:
                return self.settled
            # parked: wait for a decision (the `decide` update), a timeout, or a kill
            try:
                await workflow.wait_condition(
                    lambda: bool(self.woken), timeout=self._next_timeout()
                )
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                result = self._outcome(run, state, [], False, True, started, t0)
                self.settled = result.to_json()
                await self._record(run, result, True)
                return self.settled
            first = sorted(self.woken or set(self.parked), key=plan.order.index)
            for nid in first:
                self.results.pop(nid, None)
                state.results.pop(nid, None)
                state.views.pop(nid, None)
                self.parked.pop(nid, None)
                self.remaining.add(nid)
            self.woken.clear()
            self.settled = None

    def _next_timeout(self) -> timedelta | None:
        """Wake up when the earliest parked approval times out, so its on_timeout applies."""
        assert self.plan is not None
        timeouts: list[float] = []
        for nid in self.parked:
            step = self.plan.nodes[nid].approval
            if step is not None and step.timeout:
                timeouts.append(step.timeout)
        return timedelta(seconds=min(timeouts) + 1) if timeouts else None

    async def _round(
        self, run: RunInput, state: RunState, first: list[str], stop: list[NodeResult]
    ) -> bool:
        """Schedule until nothing more can start; True when max_seconds ran out."""
        plan = state.plan
        running: dict[str, asyncio.Task[NodeResult]] = {}
        try:
            async with asyncio.timeout(plan.budget.max_seconds):
                await self._consider(run, state, first, stop, running)
                while running:
                    await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
                    for nid in [n for n in plan.order if n in running and running[n].done()]:
                        res = running.pop(nid).result()
                        self.running.discard(nid)
                        if not res.detail.get("activity_error"):
                            self.recorded.add(nid)  # the activity checkpointed it
                        await self._consider(
                            run, state, self._finish(state, res, stop), stop, running
                        )
            return False
        except TimeoutError:
            return True
        finally:
            for task in running.values():
                task.cancel()

    def _finish(self, state: RunState, res: NodeResult, stop: list[NodeResult]) -> list[str]:
        plan = state.plan
        self.results[res.node_id] = state.results[res.node_id] = res
        state.views[res.node_id] = res.view()
        self.remaining.discard(res.node_id)
        if res.status == "waiting":
            self.parked[res.node_id] = res.error or "waiting for approval"
            return []
        if res.status in STOPPING and not _passed_over(res):
            stop.append(res)
        ready = []
        for child in plan.dependants.get(res.node_id, ()):
            self.waiting[child] -= 1
            if self.waiting[child] == 0 and child in self.remaining:
                ready.append(child)
        return ready

    async def _consider(
        self,
        run: RunInput,
        state: RunState,
        first: list[str],
        stop: list[NodeResult],
        running: dict[str, asyncio.Task[NodeResult]],
    ) -> None:
        plan = state.plan
        todo = list(reversed(first))
        while todo:
            nid = todo.pop()
            node = plan.nodes[nid]
            res = settled_without_running(state, node)
            if res is None and not stop and node.kind in PURE:
                res = await self._pure(state, node)
            if res is not None:
                todo.extend(reversed(self._finish(state, res, stop)))
            elif not stop:
                self.running.add(nid)
                running[nid] = asyncio.create_task(self._activity(run, state, node))

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
            detail=dict(ctx.detail),
        )

    async def _activity(self, run: RunInput, state: RunState, node: PlanNode) -> NodeResult:
        if not _spends_capped(state.plan, node):
            return await self._dispatch(run, state, node)
        async with self.budget_lock:
            return await self._dispatch(run, state, node)

    async def _dispatch(self, run: RunInput, state: RunState, node: PlanNode) -> NodeResult:
        spent = Usage()
        for used in self.spent_by.values():
            spent += used
        for nid, r in self.results.items():
            if nid not in self.spent_by:
                spent += r.usage
        task = NodeTask(
            run=run,
            node_id=node.id,
            views={d: state.views[d] for d in node.deps if d in state.views},
            spent={
                "usd": spent.cost_usd,
                "tokens": spent.tokens,
                "llm_calls": spent.llm_calls,
                "tool_calls": spent.tool_calls,
            },
        )
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
                detail={"activity_error": True},
            )
        result = NodeResult.from_json(data)
        self.spent_by[node.id] = result.usage
        return result

    def _outcome(
        self,
        run: RunInput,
        state: RunState,
        stop: list[NodeResult],
        timed_out: bool,
        killed: bool,
        started: float,
        t0: float,
    ) -> RunResult:
        plan = state.plan
        status: RunStatus = "killed"
        reason: str | None = None
        outputs: dict[str, Any] = {}
        if killed:
            status, reason = "killed", "killed on request (the workflow was cancelled)"
            # nodes cut off mid-call and nodes parked for approval end killed; others never ran
            for nid in plan.order:
                if nid in self.running or nid in self.parked:
                    self.recorded.discard(nid)
                    self.results[nid] = NodeResult(
                        node_id=nid, kind=plan.nodes[nid].kind, status="killed", error=reason
                    )
        else:
            status, reason, outputs = run_outcome(
                plan, run.inputs, self.results, state.views, stop, timed_out
            )
        self.running.clear()
        usage = Usage()
        for r in self.results.values():
            usage += r.usage
        return RunResult(
            run_id=run.run_id,
            workflow=plan.name,
            status=status,
            outputs=outputs,
            nodes={nid: self.results[nid] for nid in plan.order if nid in self.results},
            usage=usage,
            started_at=started,
            duration_s=workflow.time() - t0,
            reason=reason,
            profile=plan.profile,
        )

    async def _record(self, run: RunInput, result: RunResult, terminal: bool) -> None:
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
        if base not in self.parked or base in self.woken:
            waiting = ", ".join(sorted(set(self.parked) - self.woken)) or "none"
            raise ApplicationError(
                f"the run does not wait for approval at {key!r} (waiting: {waiting})",
                type="NotWaiting",
                non_retryable=True,
            )
        return base
