"""Durable runs: record a run in the store, checkpoint every node, resume, approve, kill, undo."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import socket
import time
from pathlib import Path
from typing import Any

from runner.engine.context import Envelope
from runner.engine.hooks import Hooks, HookSet
from runner.engine.results import NodeResult, RunResult
from runner.errors import FlowrunError, RunError, UsageError
from runner.plan.model import Plan
from runner.store.db import NotFound, Store

TERMINAL = frozenset({"succeeded", "failed", "escalated", "budget_exceeded", "denied", "killed"})
RESUMABLE = frozenset({"running", "waiting"})


class StoreHooks(Hooks):
    """Checkpoints each node before its dependants start, and the run's outcome at the end."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def node_finished(self, *, run_id: str, result: NodeResult, **_: Any) -> None:
        self.store.save_node(run_id, result.node_id, result.status, result.to_json())

    async def run_finished(self, *, result: RunResult, **_: Any) -> None:
        u = result.usage
        self.store.finish_run(
            result.run_id,
            status=result.status,
            reason=result.reason,
            outputs=result.outputs,
            cost_usd=u.cost_usd,
            tokens=u.tokens,
            llm_calls=u.llm_calls,
            tool_calls=u.tool_calls,
            add_duration_s=result.duration_s,
            pid=None,
            finished_at=time.time() if result.status in TERMINAL else None,
        )
        self.store.event(result.run_id, "run_finished", status=result.status, reason=result.reason)


def _host() -> str:
    return socket.gethostname()


def create_run(
    store: Store,
    plan: Plan,
    inputs: dict[str, Any],
    *,
    run_id: str,
    responses_path: str | None,
    tenant: str | None = None,
    actor: str | None = None,
    options: dict[str, Any] | None = None,
) -> None:
    src = plan.loaded.source
    spec_path = str(Path(src.path).resolve())
    try:
        store.create_run(
            run_id=run_id,
            workflow=plan.name,
            spec_path=spec_path,
            spec_dir=str(Path(spec_path).parent),
            spec_text=src.text,
            spec_digest=hashlib.sha256(src.text.encode()).hexdigest(),
            profile=plan.profile,
            inputs=inputs,
            responses_path=str(Path(responses_path).resolve()) if responses_path else None,
            options=options or {},
            tenant=tenant,
            actor=actor,
            status="running",
            pid=os.getpid(),
            host=_host(),
            bundle=plan.bundle.to_json() if plan.bundle is not None else None,
        )
    except Exception as e:
        if "UNIQUE" in str(e):
            raise UsageError(f"a run with id {run_id!r} already exists in {store.path}") from None
        raise


async def run_durably(
    store: Store,
    plan: Plan,
    inputs: dict[str, Any],
    *,
    run_id: str,
    responses: Any = None,
    hooks: Hooks | None = None,
    completed: dict[str, NodeResult] | None = None,
    telemetry: Any = None,
) -> RunResult:
    from runner.engine.run import execute

    hs = HookSet([StoreHooks(store), *([hooks] if hooks is not None else [])])
    try:
        result = await execute(
            plan,
            inputs,
            responses=responses,
            run_id=run_id,
            hooks=hs,
            completed=completed,
            services=store,
            telemetry=telemetry,
            envelope=envelope_of(store.get_run(run_id)),
        )
    except BaseException:
        store.run_ended(run_id)
        store.flush()  # what the run recorded before it broke off (group commit, see Store)
        raise
    await store.barrier()  # the outcome is durable before anyone hears of it
    return result


def envelope_of(row: Any) -> Envelope:
    """The run's identity, scopes and live flag as recorded when it started (kept on resume)."""
    options = row.options or {}
    return Envelope(
        live=bool(options.get("live", False)),
        actor=row.actor,
        tenant=row.tenant,
        scopes=tuple(options.get("scopes") or ()),
    )


def _alive(pid: int | None, host: str | None) -> bool:
    if pid is None or host != _host():
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(store: Store, run_id: str) -> Any:
    """Take a run over for this process: it must be resumable and not running elsewhere."""
    row = store.get_run(run_id)
    if row.status in TERMINAL:
        raise UsageError(
            f"run {run_id!r} already finished ({row.status}); nothing to resume",
            hint="start a new run with `flowrun execute`",
        )
    if (row.options or {}).get("backend") == "temporal":  # issue 10: its workflow is durable
        raise UsageError(
            f"run {run_id!r} runs on Temporal: a `flowrun worker` continues it",
            hint="decide its approvals with `flowrun approve`/`reject`; stop it with "
            "`flowrun kill`",
        )
    if row.status == "running" and _alive(row.pid, row.host):
        raise UsageError(f"run {run_id!r} is still running in process {row.pid}")
    with store.tx() as c:
        cur = c.execute(
            "UPDATE runs SET status = 'running', pid = ?, host = ?, updated_at = ? "
            "WHERE run_id = ? AND status = ? AND COALESCE(pid, -1) = COALESCE(?, -1)",
            (os.getpid(), _host(), time.time(), run_id, row.status, row.pid),
        )
        if cur.rowcount != 1:
            raise UsageError(f"run {run_id!r} was taken over by another process")
    store.event(run_id, "run_resumed", pid=os.getpid())
    return row


def plan_of(row: Any, store: Store | None = None) -> Plan:
    """The run's own plan, compiled from the bundle it was started with (never the files on
    disk now); a run from before bundles, or without its store at hand, from its spec text."""
    plan = compile_plan_of(row, store, row.profile)
    max_usd = (row.options or {}).get("max_usd")
    if max_usd is not None:
        plan = tighten_budget(plan, max_usd=max_usd)
    return plan


def compile_plan_of(row: Any, store: Store | None, profile: str | None) -> Plan:
    """The run's files compiled for `profile`, with the run's budget as the spec sets it."""
    from runner.plan.bundle import Bundle
    from runner.plan.compile import compile_bundle, compile_plan
    from runner.spec import load_spec_text

    digest = getattr(row, "bundle_digest", None)
    if store is not None and digest is not None:
        return compile_bundle(Bundle.from_json(store.get_bundle(digest)), row.spec_path, profile)
    return compile_plan(load_spec_text(row.spec_text, row.spec_path), profile)


def tighten_budget(plan: Plan, *, max_usd: float) -> Plan:
    """The same plan with a lower max_usd (a run option); never raises the spec's cap."""
    from dataclasses import replace

    cap = plan.budget.max_usd
    if cap is not None and cap <= max_usd:
        return plan
    return replace(plan, budget=plan.budget.model_copy(update={"max_usd": max_usd}))


def checkpoints(store: Store, run_id: str) -> dict[str, NodeResult]:
    """Results that stand on resume: finished nodes; waiting and unfinished ones run again."""
    out: dict[str, NodeResult] = {}
    for node_id, data in store.node_results(run_id).items():
        if data.get("status") in ("succeeded", "skipped"):
            out[node_id] = NodeResult.from_json(data)
    return out


async def resume(store: Store, run_id: str, *, hooks: Hooks | None = None) -> RunResult:
    """Continue a run from its checkpoints; completed nodes are not executed again."""
    from runner.models.responses import RecordedResponses

    row = claim(store, run_id)
    try:
        plan = plan_of(row, store)
        responses = None
        if row.responses_path:
            responses = RecordedResponses.load(Path(row.responses_path))
    except FlowrunError:
        store.update_run(run_id, status=row.status, pid=row.pid)
        raise
    return await run_durably(
        store,
        plan,
        row.inputs,
        run_id=run_id,
        responses=responses,
        hooks=hooks,
        completed=checkpoints(store, run_id),
    )


def decide(
    store: Store,
    run_id: str,
    node_id: str,
    *,
    approve: bool,
    by: str,
    decision: Any = None,
    reason: str | None = None,
) -> None:
    """Record an approval decision once; the decision is checked against the node's schema."""
    row = store.get_run(run_id)
    approval = store.approval_get(run_id, node_id)
    if approval is None:
        waiting = [a["node_id"] for a in store.inbox() if a["run_id"] == run_id]
        raise NotFound(
            f"run {run_id!r} has no approval at node {node_id!r}",
            hint=f"waiting here: {', '.join(waiting)}" if waiting else f"the run is {row.status}",
        )
    if approve and decision is not None and approval.get("decision_schema"):
        from runner.plan.schemas import validation_errors

        problems = validation_errors(approval["decision_schema"], decision)
        if problems:
            raise UsageError(
                "--decision does not match the node's decision schema: " + "; ".join(problems)
            )
    store.approval_decide(
        run_id,
        node_id,
        status="approved" if approve else "rejected",
        by=by,
        decision=decision,
        reason=reason,
    )


def kill(store: Store, run_id: str, *, by: str | None) -> str:
    """Stop a run at its next node boundary; a waiting run is stopped at once."""
    row = store.get_run(run_id)
    if row.status in TERMINAL:
        raise UsageError(f"run {run_id!r} already finished ({row.status})")
    if (row.options or {}).get("backend") == "temporal":  # issue 10: cancel its workflow
        from runner.temporal_cli import kill_temporal

        return kill_temporal(store, run_id, by=by)
    store.request_kill(run_id, by)
    if row.status == "waiting" or not _alive(row.pid, row.host):
        store.update_run(
            run_id, status="killed", reason=f"killed by {by or 'operator'}", finished_at=time.time()
        )
        return "killed"
    return "kill requested"


def undo(store: Store, run_id: str, *, by: str | None) -> list[dict[str, Any]]:
    """Run the compensations of a run's completed writes, newest first, each at most once."""
    from runner.plan.tools import ImplError, import_callable

    row = store.get_run(run_id)
    if row.status == "running" and _alive(row.pid, row.host):
        raise UsageError(f"run {run_id!r} is still running; kill it first")
    writes = [
        r
        for r in store.ledger_for_run(run_id)
        if r["effect"] == "write" and r["status"] == "done" and not r["undone"]
    ]
    report: list[dict[str, Any]] = []
    for r in sorted(writes, key=lambda r: r.get("done_seq") or 0, reverse=True):
        entry = {"node_id": r["node_id"], "tool": r["tool"], "key": r["key"]}
        if not r["compensate"]:
            entry["status"] = "no compensation declared"
            store.event(run_id, "undo_skipped", r["node_id"], tool=r["tool"], key=r["key"], by=by)
            report.append(entry)
            continue
        try:
            fn = import_callable(r["compensate"], Path(r["spec_dir"] or "."))
            kwargs = _compensation_args(fn, r["args"], r["result"])
            result = fn(**kwargs)
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
        except (ImplError, Exception) as e:
            entry["status"] = f"failed: {type(e).__name__}: {e}"
            store.event(
                run_id,
                "undo_failed",
                r["node_id"],
                tool=r["tool"],
                key=r["key"],
                error=str(e),
                by=by,
            )
            report.append(entry)
            continue
        store.ledger_mark_undone(r["key"])
        store.event(
            run_id, "undo", r["node_id"], tool=r["tool"], key=r["key"], by=by, result=result
        )
        entry["status"] = "undone"
        report.append(entry)
    if not writes:
        store.event(run_id, "undo_nothing", by=by)
    return report


async def _await(x: Any) -> Any:
    return await x


def _compensation_args(fn: Any, args: dict[str, Any], result: Any) -> dict[str, Any]:
    """A compensation receives the fields it names, from the write's result first, then its args."""
    pool = {**(args or {}), **(result if isinstance(result, dict) else {})}
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return pool
    missing = [
        n
        for n, p in params.items()
        if n not in pool
        and p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if missing:
        raise RunError(
            f"compensation needs {', '.join(missing)}, which the write neither took nor returned"
        )
    return {n: pool[n] for n in params if n in pool}
