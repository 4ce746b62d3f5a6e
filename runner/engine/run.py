"""The local engine: a ready-set scheduler on one asyncio loop; a node starts once its needs end."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Mapping
from typing import Any

from runner.engine.budget import BudgetLedger
from runner.engine.context import Engine, Envelope, NodeContext, RunState
from runner.engine.crash import crash_point
from runner.engine.hooks import Hooks
from runner.engine.node_exec import execute_node as _execute_node
from runner.engine.results import STOPPING, NodeResult, RunResult, RunStatus, Usage, severity
from runner.engine.services import MemoryServices, Services
from runner.engine.telemetry import Telemetry
from runner.errors import UsageError
from runner.expr.cel import ExprError, truthy
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
    """One node run by another driver (a Temporal activity): its map items, subflows and loop
    passes run on the local engine."""
    if ctx.run.engine is None:
        ctx.run.engine = LOCAL_ENGINE
    return await _execute_node(ctx)


def _passed_over(r: NodeResult) -> bool:
    """Skipped, or denied with `on_deny: skip`: dependants treat both as not having run."""
    return r.status == "skipped" or (r.status == "denied" and r.detail.get("on_deny") == "skip")


def _skip_reason(state: RunState, node: PlanNode) -> str | None:
    """Why a node whose needs are done will not run, or None when it should run."""
    for sw in node.switches:
        chosen = state.results[sw].output
        if state.results[sw].status != "succeeded":
            return f"switch {sw!r} did not run"
        if not isinstance(chosen, dict) or node.id not in chosen.get("chosen", ()):
            return f"switch {sw!r} chose another branch"
    deps = [d for d in node.deps if d not in node.switches]
    skipped = [d for d in deps if _passed_over(state.results[d])]
    if node.join == "all" and skipped:
        return f"{skipped[0]!r} was skipped"
    if node.join == "any" and deps and len(skipped) == len(deps):
        return "every node it needs was skipped"
    return None


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
    for nid, res in (completed or {}).items():
        state.results[nid] = res
        state.views[nid] = res.view()
        state.budget.spent_usd += res.usage.cost_usd
        state.budget.spent_tokens += res.usage.tokens
        state.budget.llm_calls += res.usage.llm_calls
        state.budget.tool_calls += res.usage.tool_calls
    stop: list[NodeResult] = []
    try:
        async with asyncio.timeout(plan.budget.max_seconds):
            await _schedule(state, stop)
        timed_out = False
    except TimeoutError:
        timed_out = True
    finally:
        await close_run_servers(state.run_id)  # MCP servers this run started (runner/mcp)
    status, reason, outputs = run_outcome(plan, inputs, state.results, state.views, stop, timed_out)
    usage = Usage()
    for r in state.results.values():
        usage += r.usage
    result = RunResult(
        run_id=state.run_id,
        workflow=plan.name,
        status=status,
        outputs=outputs,
        nodes={nid: state.results[nid] for nid in plan.order if nid in state.results},
        usage=usage,
        started_at=started,
        duration_s=time.perf_counter() - t0,
        reason=reason,
        profile=plan.profile,
    )
    await state.hooks.run_finished(result=result)
    return result


def run_outcome(
    plan: Plan,
    inputs: dict[str, Any],
    results: dict[str, NodeResult],
    views: dict[str, dict[str, Any]],
    stop: list[NodeResult],
    timed_out: bool,
) -> tuple[RunStatus, str | None, dict[str, Any]]:
    """A run's status, reason and outputs from its node results (both backends).

    Under `timed_out`, the nodes that never finished are added to `results` as budget_exceeded.
    """
    status: RunStatus = "succeeded"
    reason: str | None = None
    if timed_out:
        status = "budget_exceeded"
        reason = f"max_seconds {plan.budget.max_seconds:g} reached"
        for nid in plan.order:
            if nid not in results:
                results[nid] = NodeResult(
                    node_id=nid, kind=plan.nodes[nid].kind, status="budget_exceeded", error=reason
                )
    elif stop:
        first = min(stop, key=lambda r: severity(r.status))
        status = STOPPING[first.status]
        if first.status == "denied" and first.detail.get("on_deny") == "escalate":
            status = "escalated"
        reason = f"node {first.node_id!r}: {first.error}"
    else:
        parked = [r for r in results.values() if r.status == "waiting"]
        if parked:
            status = "waiting"
            reason = "; ".join(f"node {r.node_id!r} waits for approval: {r.error}" for r in parked)
    outputs: dict[str, Any] = {}
    if status == "succeeded":
        act = {"inputs": inputs, "nodes": views}
        for name, cv in plan.outputs.items():
            try:
                outputs[name] = cv.evaluate(act)
            except ExprError as e:
                status, reason = "failed", f"output {name!r}: {e.message}"
                break
    return status, reason, outputs


def settled_without_running(state: RunState, node: PlanNode) -> NodeResult | None:
    """A ready node's result when it will not run: skipped (a need skipped, a switch chose
    another branch, `when` false) or failed (`when` could not be evaluated); else None."""
    reason = _skip_reason(state, node)
    if reason is None and node.when is not None:
        try:
            act = NodeContext(run=state, node=node).activation()
            if not truthy(node.when.evaluate(act)):
                reason = "its `when` is false"
        except ExprError as e:
            return NodeResult(
                node_id=node.id, kind=node.kind, status="failed", error=f"when: {e.message}"
            )
    if reason is None:
        return None
    return NodeResult(node_id=node.id, kind=node.kind, status="skipped", detail={"reason": reason})


async def _schedule(state: RunState, stop: list[NodeResult]) -> None:
    """Start every node whose needs are done; stop starting new ones after a stopping outcome.

    perf (issue 11): a node's own task, once the node has finished, records its result and
    starts the dependants it made ready; the scheduler only waits for the last task to end
    (waiting on every running task after each completion cost O(running) per node)."""
    plan = state.plan
    waiting = {
        nid: sum(1 for d in plan.nodes[nid].deps if d not in state.results) for nid in plan.order
    }
    running: dict[str, asyncio.Task[None]] = {}
    remaining = {nid for nid in plan.order if nid not in state.results}
    loop = asyncio.get_running_loop()
    idle: asyncio.Future[None] = loop.create_future()  # set when no task runs any more

    async def run_one(node: PlanNode) -> None:
        try:
            await state.hooks.node_started(run_id=state.run_id, node_id=node.id)
            res = await execute_node(NodeContext(run=state, node=node))
            await state.hooks.node_finished(run_id=state.run_id, result=res)
            if res.usage.llm_calls:
                # a paid answer is durable before anything builds on it (the store group-commits
                # the rest: see runner/store/db.py)
                await state.services.barrier()
            crash_point(f"after:{node.id}")
            await consider(finish(res))
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # a hook or an engine bug: the run ends with it
            if not idle.done():
                idle.set_exception(e)
        finally:
            running.pop(node.id, None)
            if not running and not idle.done():
                idle.set_result(None)

    def finish(res: NodeResult) -> list[str]:
        state.results[res.node_id] = res
        state.views[res.node_id] = res.view()
        remaining.discard(res.node_id)
        if res.status == "waiting":
            return []  # its dependants wait with it; independent branches go on
        if res.status in STOPPING and not _passed_over(res):
            stop.append(res)
        ready = []
        for child in plan.dependants.get(res.node_id, ()):
            waiting[child] -= 1
            if waiting[child] == 0 and child in remaining:
                ready.append(child)
        return ready

    async def consider(first: list[str]) -> None:
        """Nodes whose needs are all done: skip them (cascading), or start them."""
        todo = list(reversed(first))
        while todo:
            nid = todo.pop()
            node = plan.nodes[nid]
            res = settled_without_running(state, node)
            if res is not None:
                await state.hooks.node_finished(run_id=state.run_id, result=res)
                todo.extend(reversed(finish(res)))
            elif not stop:
                if state.services.kill_requested(state.run_id):
                    stop.append(
                        NodeResult(
                            node_id=nid, kind=node.kind, status="killed", error="killed on request"
                        )
                    )
                    continue
                crash_point(f"before:{nid}")
                running[nid] = loop.create_task(run_one(node), name=f"node:{nid}")

    try:
        await consider([nid for nid in plan.order if nid in remaining and waiting[nid] == 0])
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
