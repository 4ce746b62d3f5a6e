"""Activities: an LLM, tool, map, approval, flow or loop node run through the local engine's code.

A node activity calls `runner.engine.run.execute_node`, so budget reservation, policy, dry-run,
idempotency (the SQLite ledger) and taint go through `runner/engine/calls.py` exactly as on the
local backend. The node's own retry and timeout policy runs inside the activity; Temporal's retry
re-runs the activity only when an attempt was lost (a worker died, a heartbeat stopped), which
the idempotency ledger makes safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from runner.engine.budget import BudgetLedger, billed_by_node, run_usage
from runner.engine.context import Envelope, NodeContext, RunState
from runner.engine.hooks import Hooks
from runner.engine.results import NodeResult, RunResult, Usage
from runner.store import Store, is_url, open_store, public_target
from runner.temporal import FINISH_ACTIVITY, NODE_ACTIVITY
from runner.temporal.plans import plan_for
from runner.temporal.types import FinishTask, NodeTask, RunInput

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from runner.trace.observe import RunObserver
    from runner.trace.otel import Tracing

HEARTBEAT_EVERY_S = 1.0

_STORES: dict[str, Store] = {}
_RESPONSES: dict[str, Any] = {}
_TRACING: list[Tracing] = []  # the tracing a worker embedded in a process was given


def store_at(path: str) -> Store:
    """One store connection per path and worker process (writes are short transactions).

    A PostgreSQL store reaches workers as a URL without its password: a worker whose own
    FLOWRUN_STORE names the same database opens it with that (credentials included), else
    libpq takes the password from PGPASSWORD or ~/.pgpass."""
    store = _STORES.get(path)
    if store is None:
        own = os.environ.get("FLOWRUN_STORE")
        target = own if own and is_url(path) and public_target(own) == path else path
        store = _STORES[path] = open_store(target)
    return store


def _responses(path: str | None) -> Any:
    if path is None:
        return None
    if path not in _RESPONSES:
        from runner.models.responses import RecordedResponses

        _RESPONSES[path] = RecordedResponses.load(Path(path))
    return _RESPONSES[path]


def _envelope(run: RunInput, workflow: str | None = None) -> Envelope:
    return Envelope(
        live=bool(run.options.get("live", False)),
        actor=run.actor,
        tenant=run.tenant,
        scopes=tuple(run.options.get("scopes") or ()),
        workflow=workflow,
    )


def export_spans_to(exporter: SpanExporter | None) -> None:
    """Send the spans of the runs this process's workers run to `exporter` (library use and
    tests), instead of the OTLP endpoint the runs were started with; None goes back to that."""
    from runner.trace.otel import setup_tracing

    _TRACING.clear()
    tracing = setup_tracing(exporter=exporter) if exporter is not None else None
    if tracing is not None:
        _TRACING.append(tracing)


def _observer(run: RunInput, store: Store, attempt: int) -> RunObserver:
    """What the local backend's observer records, for the part of the run in this activity.

    The run's recorded options say how it is observed (capture, OTLP endpoint); the worker's
    environment (OTEL_EXPORTER_OTLP_*) applies as it does to `flowrun execute`.
    """
    from runner.trace.observe import CAPTURES, RunObserver, transcript_path
    from runner.trace.otel import setup_tracing

    recorded = run.options.get("observe") or {}
    capture = recorded.get("capture") or "default"
    return RunObserver(
        store=store,
        tracing=_TRACING[0] if _TRACING else setup_tracing(recorded.get("otlp_endpoint")),
        capture=capture if capture in CAPTURES else "default",  # type: ignore[arg-type]
        tenant=run.tenant,
        actor=run.actor,
        attempt=attempt,
        transcript=transcript_path(store.path, run.run_id),
    )


def _usage(spent: dict[str, float]) -> Usage:
    return Usage(
        llm_calls=int(spent.get("llm_calls", 0)),
        tool_calls=int(spent.get("tool_calls", 0)),
        input_tokens=int(spent.get("tokens", 0)),
        cost_usd=float(spent.get("usd", 0.0)),
    )


async def _heartbeat() -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(HEARTBEAT_EVERY_S)


@activity.defn(name=NODE_ACTIVITY)
async def run_node(task: NodeTask) -> dict[str, Any]:
    """Run one node to a result (node errors never raise) and checkpoint it in the store."""
    from runner.engine.run import execute_node

    run = task.run
    beat = asyncio.create_task(_heartbeat())
    try:
        plan = plan_for(run)
        store = store_at(run.store_path)
        budget = BudgetLedger(plan.budget)
        budget.spent_usd = float(task.spent.get("usd", 0.0))
        budget.spent_tokens = int(task.spent.get("tokens", 0))
        budget.llm_calls = int(task.spent.get("llm_calls", 0))
        budget.tool_calls = int(task.spent.get("tool_calls", 0))
        # an earlier attempt of this activity (a worker that died) spent what its rows count:
        # the node's result includes it, and this attempt's calls are reserved on top of it
        rows = [r for r in store.spend_rows(run.run_id) if r["node_id"] == task.node_id]
        budget.count_earlier(rows)
        earlier = budget.node_usage(task.node_id) or Usage()
        budget.spent_usd += earlier.cost_usd
        budget.spent_tokens += earlier.tokens
        budget.llm_calls += earlier.llm_calls
        observer = _observer(run, store, task.attempt)
        observer.join(
            run_id=run.run_id, plan=plan, inputs=run.inputs, opens=task.opens,
            spent=_usage(task.spent),
        )  # fmt: skip
        state = RunState(
            run_id=run.run_id,
            plan=plan,
            inputs=run.inputs,
            budget=budget,
            responses=_responses(run.responses_path),
            hooks=Hooks(),
            services=store,
            telemetry=observer,
            envelope=_envelope(run, plan.name),
        )
        state.views.update(task.views)
        for nid, view in task.views.items():
            state.results[nid] = NodeResult(
                node_id=nid,
                kind=plan.nodes[nid].kind if nid in plan.nodes else "tool",
                status=view["status"],
                output=view.get("output"),
                error=view.get("error"),
            )
        try:
            await observer.node_started(run_id=run.run_id, node_id=task.node_id)
            result = await execute_node(NodeContext(run=state, node=plan.nodes[task.node_id]))
            await observer.node_finished(run_id=run.run_id, result=result)
        finally:
            observer.leave()
        store.save_node(run.run_id, result.node_id, result.status, result.to_json())
        store.flush()  # durable before Temporal records the activity as completed
        return result.to_json()
    except asyncio.CancelledError:
        raise
    except Exception as e:  # an engine bug or an unusable store: fail the node, do not retry
        raise ApplicationError(
            f"node {task.node_id!r}: {type(e).__name__}: {e}",
            type="FlowrunInternal",
            non_retryable=True,
        ) from None
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat


@activity.defn(name=FINISH_ACTIVITY)
async def finish_run(task: FinishTask) -> None:
    """Checkpoint the workflow-evaluated nodes and the run's totals, as the local StoreHooks do."""
    store = store_at(task.store_path)
    for node in task.nodes:
        store.save_node(task.run_id, node["node_id"], node["status"], node)
    result = task.run
    # model usage as the run's spend rows count it: nodes cut off mid-call too
    billed = billed_by_node(store.spend_rows(task.run_id))
    nodes = {n: NodeResult.from_json(v) for n, v in result["nodes"].items()}
    totals = run_usage(nodes, billed)
    store.finish_run(
        task.run_id,
        status=result["status"],
        reason=result["reason"],
        outputs=result["outputs"],
        cost_usd=totals.cost_usd,
        tokens=totals.tokens,
        llm_calls=totals.llm_calls,
        tool_calls=totals.tool_calls,
        add_duration_s=result["duration_s"],
        pid=None,
        finished_at=time.time() if task.terminal else None,
    )
    store.event(task.run_id, "run_finished", status=result["status"], reason=result["reason"])
    store.flush()
    if task.input is not None and task.started_at is not None:
        await _observe_finish(task, store)


async def _observe_finish(task: FinishTask, store: Store) -> None:
    """The attempt's nodes evaluated in the workflow (gates, switches, parked approvals) and
    its end, in the run's transcript and spans, as the local backend records them."""
    run = task.input
    assert run is not None and task.started_at is not None
    plan = plan_for(run)
    result = run_result_from_json(task.run)
    observer = _observer(run, store, task.attempt)
    observer.join(
        run_id=run.run_id, plan=plan, inputs=run.inputs, opens=task.opens, spent=result.usage
    )
    try:
        for node in task.nodes:
            done = NodeResult.from_json(node)
            if done.node_id not in plan.nodes or done.detail.get("activity_error"):
                continue  # a lost activity: the node's own lines were written where it ran
            await observer.node_started(run_id=run.run_id, node_id=done.node_id)
            await observer.node_finished(run_id=run.run_id, result=done)
        await observer.finish_part(
            plan=plan, inputs=run.inputs, result=result, started_at=task.started_at
        )
    finally:
        observer.leave()


def run_result_from_json(d: dict[str, Any]) -> RunResult:
    """Rebuild what the workflow returned (RunResult.to_json) for the CLI's renderers."""

    t = d["totals"]
    return RunResult(
        run_id=d["run_id"],
        workflow=d["workflow"],
        status=d["status"],
        outputs=d["outputs"] or {},
        nodes={k: NodeResult.from_json(v) for k, v in d["nodes"].items()},
        usage=Usage(
            llm_calls=t["llm_calls"],
            tool_calls=t["tool_calls"],
            input_tokens=t["input_tokens"],
            output_tokens=t["output_tokens"],
            cost_usd=t["cost_usd"],
        ),
        started_at=d["started_at"],
        duration_s=d["duration_s"],
        reason=d["reason"],
        profile=d.get("profile"),
    )


ACTIVITIES = (run_node, finish_run)
