"""The local backend: the asyncio engine in this process, checkpointing every node in the store."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from runner.backends import TERMINAL
from runner.engine.context import Envelope
from runner.engine.hooks import Hooks, HookSet
from runner.engine.results import NodeResult, RunResult
from runner.errors import UsageError
from runner.plan.model import Plan
from runner.store import RunRow, Store


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


def host() -> str:
    return socket.gethostname()


def alive(pid: int | None, on_host: str | None) -> bool:
    """Whether the process recorded for a run still runs (only knowable on its own host)."""
    if pid is None or on_host != host():
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


def envelope_of(row: Any) -> Envelope:
    """The run's identity, scopes and live flag as recorded when it started (kept on resume)."""
    options = row.options or {}
    return Envelope(
        live=bool(options.get("live", False)),
        actor=row.actor,
        tenant=row.tenant,
        scopes=tuple(options.get("scopes") or ()),
        workflow=row.workflow,
    )


def checkpoints(store: Store, run_id: str) -> dict[str, NodeResult]:
    """Results that stand on resume: finished nodes; waiting and unfinished ones run again."""
    out: dict[str, NodeResult] = {}
    for node_id, data in store.node_results(run_id).items():
        if data.get("status") in ("succeeded", "skipped"):
            out[node_id] = NodeResult.from_json(data)
    return out


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
    """Execute a recorded run here, checkpointing every node and the outcome in the store.

    Without `telemetry`, the run's calls are still recorded in the store (no transcript, no
    spans): a live write needs a trace id to be made (docs/readiness.md)."""
    from runner.engine.run import execute

    if telemetry is None:
        from runner.trace.observe import RunObserver

        row = store.get_run(run_id)
        telemetry = RunObserver(store=store, tracing=None, tenant=row.tenant, actor=row.actor)

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


class LocalBackend:
    """Runs execute in the calling process; a waiting run continues wherever it is resumed."""

    name = "local"

    def placement(self, run_id: str) -> dict[str, Any]:
        return {}

    async def check(self) -> None:
        return None

    async def start(
        self,
        store: Store,
        row: RunRow,
        plan: Plan,
        *,
        responses: Any,
        hooks: Hooks | None,
        telemetry: Any,
    ) -> RunResult:
        return await self._run(store, row, plan, responses, hooks, telemetry, completed=None)

    def claim(self, store: Store, row: RunRow) -> RunRow:
        """Take a run over for this process: it must not be running elsewhere."""
        run_id = row.run_id
        if row.status == "running" and alive(row.pid, row.host):
            raise UsageError(f"run {run_id!r} is still running in process {row.pid}")
        if not store.claim_run(run_id, was_status=row.status, was_pid=row.pid, host=host()):
            raise UsageError(f"run {run_id!r} was taken over by another process")
        store.event(run_id, "run_resumed", pid=os.getpid())
        return row

    def release(self, store: Store, row: RunRow) -> None:
        """Give a claimed run back as it was (its plan could not be loaded)."""
        store.update_run(row.run_id, status=row.status, pid=row.pid)

    async def resume(
        self,
        store: Store,
        row: RunRow,
        plan: Plan,
        *,
        responses: Any,
        hooks: Hooks | None,
        telemetry: Any,
    ) -> RunResult:
        completed = checkpoints(store, row.run_id)
        return await self._run(store, row, plan, responses, hooks, telemetry, completed=completed)

    @staticmethod
    async def _run(
        store: Store,
        row: RunRow,
        plan: Plan,
        responses: Any,
        hooks: Hooks | None,
        telemetry: Any,
        *,
        completed: dict[str, NodeResult] | None,
    ) -> RunResult:
        """The run on this process's loop, from `completed` (its checkpoints) when resuming."""
        return await run_durably(
            store,
            plan,
            row.inputs,
            run_id=row.run_id,
            responses=responses,
            hooks=hooks,
            completed=completed,
            telemetry=telemetry,
        )

    async def decided(
        self, store: Store, row: RunRow, node_id: str, *, follow: bool
    ) -> RunResult | None:
        """Nothing to wake: a local run continues when it is resumed (by `runner.runs`)."""
        return None

    async def cancel(self, store: Store, row: RunRow, *, by: str | None) -> str:
        store.request_kill(row.run_id, by)
        if row.status == "waiting" or not alive(row.pid, row.host):
            store.update_run(
                row.run_id,
                status="killed",
                reason=f"killed by {by or 'operator'}",
                finished_at=time.time(),
            )
            return "killed"
        return "kill requested"

    def busy(self, row: RunRow) -> bool:
        """Whether the run is executing right now (undo must wait for it to stop)."""
        return row.status == "running" and alive(row.pid, row.host)
