"""The local engine: a ready-set scheduler on one asyncio loop; a node starts once its needs end."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Mapping
from typing import Any

from runner.engine.budget import BudgetLedger, run_usage, with_model_usage
from runner.engine.context import Engine, Envelope, NodeContext, RunState
from runner.engine.crash import crash_point
from runner.engine.hooks import Hooks
from runner.engine.node_exec import execute_node as _execute_node
from runner.engine.results import NodeResult, RunResult
from runner.engine.scheduler import Decisions, Scheduler
from runner.engine.services import MemoryServices, Services
from runner.engine.telemetry import Telemetry
from runner.errors import UsageError
from runner.mcp.pool import close_run_servers
from runner.models.responses import RecordedResponses
from runner.plan import schemas
from runner.plan.compose import llm_node_names
from runner.plan.model import Plan, PlanNode


def new_run_id() -> str:
    return time.strftime("r%Y%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(4)


def check_inputs(plan: Plan, inputs: Any, source: str = "input") -> dict[str, Any]:
    """Validate task input against the spec's `inputs` schema, naming every failing field."""
    if not isinstance(inputs, dict):
        raise UsageError(
            f"{source}: the task input must be a JSON object, not {type(inputs).__name__}"
        )
    problems = schemas.validation_errors(plan.inputs_schema, inputs)
    if problems:
        raise UsageError(
            f"{source}: input does not match the spec's inputs schema: " + "; ".join(problems),
            hint=f"see `inputs` in {plan.loaded.path}",
        )
    return inputs


def check_responses(plan: Plan, responses: RecordedResponses, source: str) -> None:
    """A responses file may only name LLM nodes of this spec (a map's items by index)."""
    llm_nodes = llm_node_names(plan)
    for name in sorted(responses.nodes()):
        if name not in llm_nodes:
            line = responses.lines_for(name)[0]
            import difflib

            near = difflib.get_close_matches(name, sorted(llm_nodes), n=1)
            hint = (
                f"did you mean {near[0]!r}?"
                if near
                else f"LLM nodes: {', '.join(sorted(llm_nodes)) or '(none)'}"
            )
            what = "is not defined in" if name not in plan.nodes else "is not an LLM node of"
            raise UsageError(f"{source}:{line}: node {name!r} {what} {plan.loaded.path}", hint=hint)


async def execute_node(ctx: NodeContext) -> NodeResult:
    """One node run by a scheduler (the local one, or a Temporal activity): its map items,
    subflows and loop passes run on the local engine. A top-level node's model usage is what
    its spend rows count (runner/engine/budget.py): calls cut off in flight and calls an earlier
    execution of the node made before a crash are in it."""
    run = ctx.run
    if run.engine is None:
        run.engine = LOCAL_ENGINE
    res = await _execute_node(ctx)
    if not run.path:
        billed = run.budget.root().node_usage(ctx.node_id)
        if billed is not None:
            res.usage = with_model_usage(res.usage, billed)
    return res


async def execute(
    plan: Plan,
    inputs: dict[str, Any],
    *,
    responses: RecordedResponses | None = None,
    run_id: str | None = None,
    hooks: Hooks | None = None,
    completed: Mapping[str, NodeResult] | None = None,
    services: Services | None = None,
    telemetry: Telemetry | None = None,
    envelope: Envelope | None = None,
) -> RunResult:
    """Run a plan to an outcome. `completed` holds checkpointed results that are not run again."""
    state = RunState(
        run_id=run_id or new_run_id(),
        plan=plan,
        inputs=inputs,
        budget=BudgetLedger(plan.budget),
        responses=responses,
        hooks=hooks or Hooks(),
        services=services or MemoryServices(),
        envelope=envelope or Envelope(),
        telemetry=telemetry or Telemetry(),
        engine=LOCAL_ENGINE,
    )
    started = time.time()
    t0 = time.perf_counter()
    await state.hooks.run_started(run_id=state.run_id, plan=plan, inputs=inputs)
    # what the run spent before: checkpointed nodes, and the spend rows of nodes that will run
    # again (cut off by a crash, or parked): a resumed run counts every call already made
    budget = state.budget
    budget.count_earlier(state.services.spend_rows(state.run_id))
    earlier = budget.node_usages()
    for nid, res in (completed or {}).items():
        state.results[nid] = res
        state.views[nid] = res.view()
        u = with_model_usage(res.usage, earlier.get(nid))
        budget.spent_usd += u.cost_usd
        budget.spent_tokens += u.tokens
        budget.llm_calls += u.llm_calls
        budget.tool_calls += u.tool_calls
    again = {n: u for n, u in earlier.items() if n not in state.results}
    for u in again.values():
        budget.spent_usd += u.cost_usd
        budget.spent_tokens += u.tokens
        budget.llm_calls += u.llm_calls
    sched = Scheduler(plan, inputs, results=state.results, views=state.views, earlier=again or None)
    try:
        async with asyncio.timeout(plan.budget.max_seconds):
            await _drive(state, sched)
    except TimeoutError:
        sched.timed_out()
    finally:
        await close_run_servers(state.run_id)  # MCP servers this run started (runner/mcp)
    result = sched.result(state.run_id, started_at=started, duration_s=time.perf_counter() - t0)
    result.usage = run_usage(result.nodes, budget.node_usages())
    await state.hooks.run_finished(result=result)
    return result


async def _schedule(state: RunState, stop: list[NodeResult]) -> None:
    """Run a child plan's nodes in `state` to their end; its stopping results go to `stop`."""
    sched = Scheduler(
        state.plan, state.inputs, results=state.results, views=state.views, scope=state.scope
    )
    try:
        await _drive(state, sched)
    finally:
        stop.extend(sched.stops)


async def _drive(state: RunState, sched: Scheduler) -> None:
    """Start what the scheduler decides, each node on its own task, until it is done.

    perf (issue 11): a node's own task, once the node has finished, reports its result and
    starts the dependants the scheduler made ready; the driver only waits for the last task to
    end (waiting on every running task after each completion cost O(running) per node)."""
    plan = state.plan
    running: dict[str, asyncio.Task[None]] = {}
    loop = asyncio.get_running_loop()
    idle: asyncio.Future[None] = loop.create_future()  # set when no task runs any more
    hooks, run_id = state.hooks, state.run_id

    async def run_one(node: PlanNode) -> None:
        try:
            await hooks.node_started(run_id=run_id, node_id=node.id)
            res = await execute_node(NodeContext(run=state, node=node))
            await hooks.node_finished(run_id=run_id, result=res)
            if res.usage.llm_calls:
                # a paid answer is durable before anything builds on it (the store group-commits
                # the rest: see runner/store/sqlite.py)
                await state.services.barrier()
            crash_point(f"after:{node.id}")
            await apply(sched.finished(res))
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # a hook or an engine bug: the run ends with it
            if not idle.done():
                idle.set_exception(e)
        finally:
            running.pop(node.id, None)
            if not running and not idle.done():
                idle.set_result(None)

    async def apply(d: Decisions) -> None:
        for res in d.settled:
            await hooks.node_finished(run_id=run_id, result=res)
        start = d.start
        for i, nid in enumerate(start):
            if state.services.kill_requested(run_id):
                sched.killed(before=start[i:])
                return
            crash_point(f"before:{nid}")
            running[nid] = loop.create_task(run_one(plan.nodes[nid]), name=f"node:{nid}")

    try:
        await apply(sched.start())
        if running:
            await idle
    finally:
        tasks = list(running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


LOCAL_ENGINE = Engine(execute_node=_execute_node, schedule=_schedule)
