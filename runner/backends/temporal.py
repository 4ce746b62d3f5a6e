"""The Temporal backend: a run is one interpreter workflow (runner/temporal/) run by workers.

The store still holds the run (a worker checkpoints into it); this plug starts the workflow,
wakes it after a decision the store recorded, and cancels it. `temporalio` is imported only
when a Temporal run is operated on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.errors import FlowrunError, UsageError
from runner.temporal import (
    DEFAULT_ADDRESS,
    DEFAULT_NAMESPACE,
    DEFAULT_TASK_QUEUE,
    INTERPRETER_VERSION,
    require_temporalio,
)

if TYPE_CHECKING:
    from runner.engine.hooks import Hooks
    from runner.engine.results import RunResult
    from runner.plan.model import Plan
    from runner.store import RunRow, Store
    from runner.temporal.types import RunInput

# options recorded with the run that only say where it lives, not how it behaves
_PLACEMENT_KEYS = ("backend", "temporal")


def run_input(store: Store, row: RunRow, plan: Plan, *, interpreter_version: int) -> RunInput:
    """The workflow's input, from the run's store row and plan bundle: all it needs to replay."""
    from runner.temporal.types import RunInput

    options = {k: v for k, v in (row.options or {}).items() if k not in _PLACEMENT_KEYS}
    return RunInput(
        run_id=row.run_id,
        spec_text=row.spec_text,
        spec_path=row.spec_path,
        spec_digest=row.spec_digest,
        profile=row.profile,
        inputs=row.inputs,
        store_path=store.target,
        responses_path=row.responses_path,
        options=options,
        tenant=row.tenant,
        actor=row.actor,
        interpreter_version=interpreter_version,
        bundle=plan.bundle.to_json() if plan.bundle is not None else None,
    )


class TemporalBackend:
    """Runs are workflows on a Temporal server; `flowrun worker` processes execute them."""

    name = "temporal"

    def __init__(
        self,
        *,
        address: str = DEFAULT_ADDRESS,
        namespace: str = DEFAULT_NAMESPACE,
        task_queue: str = DEFAULT_TASK_QUEUE,
        interpreter_version: int = INTERPRETER_VERSION,
    ) -> None:
        require_temporalio()
        from runner.temporal.client import Target

        self.target = Target(address=address, namespace=namespace, task_queue=task_queue)
        self.interpreter_version = interpreter_version
        self._client: Any = None

    @classmethod
    def of(cls, row: RunRow) -> TemporalBackend:
        """The backend that holds an existing run, as its store row records it."""
        t = (row.options or {}).get("temporal") or {}
        return cls(
            address=t.get("address", DEFAULT_ADDRESS),
            namespace=t.get("namespace", DEFAULT_NAMESPACE),
            task_queue=t.get("task_queue", DEFAULT_TASK_QUEUE),
        )

    async def _connect(self) -> Any:
        from runner.temporal.client import connect

        if self._client is None:
            self._client = await connect(self.target)
        return self._client

    def placement(self, run_id: str) -> dict[str, Any]:
        from runner.temporal.client import workflow_id

        return {
            "backend": "temporal",
            "temporal": {**self.target.to_json(), "workflow_id": workflow_id(run_id)},
        }

    async def check(self) -> None:
        await self._connect()  # unreachable: exit 2 before anything is recorded

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
        """Start the run's workflow and follow it until it ends or parks for an approval."""
        from runner.temporal.activities import run_result_from_json
        from runner.temporal.client import settle, start

        client = await self._connect()
        store.run_ended(row.run_id)  # a worker runs it, through a store of its own,
        store.update_run(row.run_id, pid=None)  # not this process
        handle = await start(
            client,
            run_input(store, row, plan, interpreter_version=self.interpreter_version),
            self.target,
        )
        try:
            snap = await settle(handle, task_queue=self.target.task_queue)
        except FlowrunError as e:
            store.update_run(row.run_id, status="failed", reason=e.message)
            raise
        return _billed(store, run_result_from_json(snap))

    def claim(self, store: Store, row: RunRow) -> RunRow:
        raise UsageError(
            f"run {row.run_id!r} runs on Temporal: a `flowrun worker` continues it",
            hint="decide its approvals with `flowrun approve`/`reject`; stop it with "
            "`flowrun kill`",
        )

    def release(self, store: Store, row: RunRow) -> None:
        return None

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
        """Never reached: `claim` refuses, since the run's workflow is itself durable."""
        self.claim(store, row)
        raise UsageError(f"run {row.run_id!r} runs on Temporal")

    async def decided(
        self, store: Store, row: RunRow, node_id: str, *, follow: bool
    ) -> RunResult | None:
        """Wake the node parked for approval; follow the run to its next stop if asked."""
        from runner.temporal.activities import run_result_from_json
        from runner.temporal.client import decide, settle, workflow_id

        if row.status not in ("waiting", "running"):
            raise UsageError(
                f"run {row.run_id!r} already finished ({row.status}); the decision is recorded only"
            )
        client = await self._connect()
        await decide(client, row.run_id, node_id)
        if not follow:
            return None
        snap = await settle(client.get_workflow_handle(workflow_id(row.run_id)))
        return _billed(store, run_result_from_json(snap))

    async def cancel(self, store: Store, row: RunRow, *, by: str | None) -> str:
        """Cancel the run's workflow; the workflow records `killed` in the store."""
        from runner.temporal.client import cancel

        store.request_kill(row.run_id, by)
        return str(await cancel(await self._connect(), row.run_id))

    def busy(self, row: RunRow) -> bool:
        """A Temporal run that is not parked or finished may be executing on some worker."""
        return row.status == "running"

    # -- following a run another process started (batches, issue 24) --------------------------
    async def follow(self, store: Store, row: RunRow, plan: Plan) -> RunResult:
        """Follow a run's workflow to its end or its next stop: it goes on by itself on the
        workers whatever happened to the process that started it. A run recorded but whose
        workflow never started (that process died in between) is started now."""
        from temporalio.service import RPCError, RPCStatusCode

        from runner.temporal.activities import run_result_from_json
        from runner.temporal.client import settle, workflow_id

        client = await self._connect()
        handle = client.get_workflow_handle(workflow_id(row.run_id))
        try:
            await handle.describe()
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
            return await self.start(store, row, plan, responses=None, hooks=None, telemetry=None)
        snap = await settle(handle, task_queue=self.target.task_queue)
        return _billed(store, run_result_from_json(snap))


def _billed(store: Store, result: RunResult) -> RunResult:
    """The run's totals with its model usage as its spend rows count it (runner/engine/
    budget.py): calls cut off in flight by a kill or max_seconds, which the workflow's own
    totals do not see, are in them, as in the store's record."""
    from runner.engine.budget import billed_by_node, run_usage

    result.usage = run_usage(result.nodes, billed_by_node(store.spend_rows(result.run_id)))
    return result
