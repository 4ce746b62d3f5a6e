"""The one door for operations on runs: create, start, resume, decide, kill, undo, sweep, writes.

The CLI, the web console, the MCP server and the Temporal worker call `Runs`; none of them
imports a backend or the store's SQL. Only this package knows which backend a run is on (its
store row says), and every way a run starts or continues is observed by `runs.observe`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.backends import RESUMABLE, TERMINAL, Backend, backend_name
from runner.engine.run import check_inputs, check_responses, new_run_id
from runner.errors import ExitCode, FlowrunError, UsageError
from runner.runs.observe import Observe, observer
from runner.store import DuplicateRun, NotFound, RunRow, Store, open_store

if TYPE_CHECKING:
    from runner.engine.hooks import Hooks
    from runner.engine.results import RunResult
    from runner.plan.model import Plan
    from runner.runs.identity import Identity

__all__ = [
    "RESUMABLE",
    "STATUS_EXIT",
    "TERMINAL",
    "Decided",
    "NotFound",
    "Observe",
    "Runs",
    "check_inputs",
    "check_responses",
    "check_run_id",
    "compile_plan_of",
    "create_run",
    "end_process",
    "new_run_id",
    "plan_of",
    "preflight",
    "run_in_memory",
]

STATUS_EXIT: dict[str, int] = {
    "succeeded": ExitCode.SUCCEEDED,
    "failed": ExitCode.FAILED,
    "escalated": ExitCode.ESCALATED,
    "budget_exceeded": ExitCode.BUDGET_EXCEEDED,
    "denied": ExitCode.DENIED,
    "waiting": ExitCode.WAITING,
    "killed": ExitCode.KILLED,
}


def end_process(code: int) -> None:
    """End a `flowrun` command that talked to Temporal at once (see `hard_exit_if_needed`)."""
    from runner.temporal import hard_exit_if_needed

    hard_exit_if_needed(code)


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_run_id(run_id: str) -> str:
    """A run id names files (transcripts) and URLs: letters, digits, `.`, `_`, `-`, at most 128,
    starting with a letter or digit — never a path."""
    if not RUN_ID.fullmatch(run_id):
        raise UsageError(
            f"--run-id: {run_id!r} is not a valid run id",
            hint="use letters, digits, '.', '_' and '-' (at most 128), starting with a letter or "
            "digit",
        )
    return run_id


async def run_in_memory(
    plan: Plan,
    inputs: dict[str, Any],
    *,
    responses: Any = None,
    run_id: str | None = None,
    services: Any = None,
    envelope: Any = None,
) -> RunResult:
    """Execute a plan on the local engine with nothing recorded (evals, fuzzing): no store row,
    no transcript; `services` (e.g. MemoryServices) holds the ledger and events instead."""
    from runner.engine.run import execute

    return await execute(
        plan, inputs, responses=responses, run_id=run_id, services=services, envelope=envelope
    )


def preflight(plan: Plan, responses: Any = None) -> None:
    """Before any model call: every model the run can take has its key here (exit 2 at once,
    nothing recorded, instead of a failed run after the whole fallback chain); recorded
    responses and `local/` models need none."""
    if responses is not None:
        return
    from runner.models.credentials import check_credentials
    from runner.plan.routes import plan_models

    check_credentials(plan_models(plan))


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
    """Record a new run (status running, owned by this process) before any node runs."""
    from runner.backends.local import host

    check_run_id(run_id)
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
            host=host(),
            bundle=plan.bundle.to_json() if plan.bundle is not None else None,
        )
    except DuplicateRun:
        raise UsageError(f"a run with id {run_id!r} already exists in {store.location}") from None


def plan_of(row: Any, store: Store | None = None) -> Plan:
    """The run's own plan, compiled from the bundle it was started with (never the files on
    disk now); a run from before bundles, or without its store at hand, from its spec text."""
    plan = compile_plan_of(row, store, row.profile)
    max_usd = (row.options or {}).get("max_usd")
    if max_usd is not None:
        plan = plan.with_max_usd(max_usd)
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


@dataclass(frozen=True)
class Decided:
    """What a decision led to: the run's result when it was followed here, and whether a local
    run still has to be continued (`Runs.resume`) by whoever recorded the decision."""

    run_id: str
    node_id: str
    status: str  # approved | rejected
    backend: str
    result: RunResult | None = None
    needs_resume: bool = False


@dataclass(frozen=True)
class Placement:
    """Where a new run goes: `local`, or a Temporal server and task queue."""

    backend: str = "local"
    address: str | None = None
    namespace: str | None = None
    task_queue: str | None = None
    interpreter_version: int | None = None  # default: this flowrun's (tests pin a newer one)


class Runs:
    """Every operation on the runs of one store; entry points hold one per request or command."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @classmethod
    def open(cls, path: str | Path | None = None, *, create: bool = False) -> Runs:
        """The runs of the store at `path`, a file or a `postgresql://` URL (default:
        $FLOWRUN_STORE or .flowrun/flowrun.db)."""
        if create:
            from runner.options import store_folder

            store_folder(path)
        return cls(open_store(path, create=create))

    def close(self) -> None:
        self.store.close()

    # -- backends ------------------------------------------------------------------------------
    @staticmethod
    def check_backend(backend: str) -> None:
        """Say which extra is missing, or that the backend is unknown, before anything runs."""
        if backend == "temporal":
            from runner.temporal import require_temporalio

            require_temporalio()
        elif backend != "local":
            raise UsageError(f"unknown backend {backend!r}", hint="use local or temporal")

    @staticmethod
    def _new_backend(where: Placement) -> Backend:
        if where.backend == "temporal":
            from runner.backends.temporal import TemporalBackend

            kw: dict[str, Any] = {
                k: v
                for k, v in (
                    ("address", where.address),
                    ("namespace", where.namespace),
                    ("task_queue", where.task_queue),
                    ("interpreter_version", where.interpreter_version),
                )
                if v is not None
            }
            return TemporalBackend(**kw)
        Runs.check_backend(where.backend)
        from runner.backends.local import LocalBackend

        return LocalBackend()

    @staticmethod
    async def check_placement(where: Placement) -> None:
        """Fail (exit 2) when runs cannot be placed there, e.g. no Temporal server answers."""
        await Runs._new_backend(where).check()

    @staticmethod
    def backend_of(row: RunRow) -> Backend:
        """The backend that holds this run: the one its store row was recorded with."""
        if backend_name(row) == "temporal":
            from runner.backends.temporal import TemporalBackend

            return TemporalBackend.of(row)
        from runner.backends.local import LocalBackend

        return LocalBackend()

    # -- start and continue ------------------------------------------------------------------
    async def start(
        self,
        plan: Plan,
        inputs: dict[str, Any],
        *,
        run_id: str,
        responses: Any = None,
        responses_path: str | None = None,
        tenant: str | None = None,
        actor: str | None = None,
        options: dict[str, Any] | None = None,
        where: Placement | None = None,
        observe: Observe | None = None,
        hooks: Hooks | None = None,
    ) -> RunResult:
        """Record a run and execute it until it ends or parks (`flowrun execute`, MCP calls)."""
        how = observe or Observe()
        backend = self._new_backend(where or Placement())
        if backend.name == "local":  # a Temporal run calls models on the worker, with its keys
            preflight(plan, responses)
        await backend.check()  # e.g. Temporal unreachable: nothing is recorded
        from runner.trace.vault import configured_keys

        configured_keys()  # a broken vault key (runner/trace/vault.py) refuses before any record
        create_run(
            self.store,
            plan,
            inputs,
            run_id=run_id,
            responses_path=responses_path,
            tenant=tenant,
            actor=actor,
            options={**(options or {}), **how.options(), **backend.placement(run_id)},
        )
        row = self.store.get_run(run_id)
        obs = observer(self.store, row, how) if backend.name == "local" else None
        result = await backend.start(
            self.store,
            row,
            plan,
            responses=responses,
            hooks=_with(hooks, obs),
            telemetry=obs,
        )
        return await self._noticed(result)

    async def resume(
        self, run_id: str, *, observe: Observe | None = None, hooks: Hooks | None = None
    ) -> RunResult:
        """Continue a run from its checkpoints; completed nodes are not executed again."""
        from runner.models.responses import RecordedResponses

        row = self.store.get_run(run_id)
        if row.status in TERMINAL:
            raise UsageError(
                f"run {run_id!r} already finished ({row.status}); nothing to resume",
                hint="start a new run with `flowrun execute`",
            )
        backend = self.backend_of(row)
        backend.claim(self.store, row)
        try:
            plan = plan_of(row, self.store)
            responses = None
            if row.responses_path:
                responses = RecordedResponses.load(Path(row.responses_path))
            if backend.name == "local":
                preflight(plan, responses)
        except FlowrunError:
            backend.release(self.store, row)
            raise
        attempt = 1 + len(self.store.events(run_id, "run_resumed"))
        obs = observer(self.store, row, observe or Observe(), attempt=attempt)
        result = await backend.resume(
            self.store, row, plan, responses=responses, hooks=_with(hooks, obs), telemetry=obs
        )
        return await self._noticed(result)

    async def _noticed(self, result: RunResult) -> RunResult:
        """A run that parked here tells the approvers (runs/notify.py); never fails the run."""
        if result.status == "waiting":
            from runner.runs.notify import after_park, config_path

            if config_path(self.store) is not None:  # no notify file: nothing to do
                await self.store.barrier()
                await asyncio.to_thread(after_park, self.store, result.run_id)
        return result

    # -- who may act (runner/runs/identity.py) --------------------------------------------------
    def authorize_decision(
        self, run_id: str, node_id: str, who: Identity, *, approve: bool, via: str
    ) -> None:
        """Refuse (Forbidden, audited, nothing changed) unless `who` may decide this approval:
        its tenant, the approval's assignees (names or roles, else the approver role), and
        separation of duties (not the run's own requester unless the spec allows it)."""
        from runner.runs.identity import Forbidden, audit, decision_refusal

        row = self.store.get_run(run_id)
        refusal = decision_refusal(who, row, self.store.approval_get(run_id, node_id))
        action = "approve" if approve else "reject"
        audit(
            self.store,
            who,
            action=action,
            allowed=refusal is None,
            run_id=run_id,
            node_id=node_id,
            via=via,
            reason=refusal[0] if refusal else None,
        )
        if refusal is not None:
            raise Forbidden(f"{action} refused: {refusal[0]}", hint=refusal[1])

    def authorize_operation(
        self, who: Identity, action: str, *, via: str, run_id: str | None = None
    ) -> None:
        """Refuse (Forbidden, audited) unless `who` holds the operator role (and the run's
        tenant): kill, undo, the writes switch."""
        from runner.runs.identity import Forbidden, audit, operation_refusal

        row = self.store.get_run(run_id) if run_id is not None else None
        refusal = operation_refusal(who, row, action)
        audit(
            self.store,
            who,
            action=action,
            allowed=refusal is None,
            run_id=run_id,
            via=via,
            reason=refusal,
        )
        if refusal is not None:
            raise Forbidden(f"{action} refused: {refusal}")

    async def follow(self, run_id: str) -> RunResult:
        """Take a run that a dead process left unfinished to its end or next stop (batches): a
        local run is resumed here from its checkpoints; a Temporal run's workflow goes on by
        itself on the workers, and is followed (or started, if that process died before it)."""
        row = self.store.get_run(run_id)
        backend = self.backend_of(row)
        if backend.name == "local":
            return await self.resume(run_id)
        from runner.backends.temporal import TemporalBackend

        assert isinstance(backend, TemporalBackend)
        return await backend.follow(self.store, row, plan_of(row, self.store))

    # -- decisions -----------------------------------------------------------------------------
    async def decide(
        self,
        run_id: str,
        node_id: str,
        *,
        approve: bool,
        by: str,
        decision: Any = None,
        reason: str | None = None,
        follow: bool = False,
        observe: Observe | None = None,
        recorded: Callable[[str], None] | None = None,
        who: Identity | None = None,
        via: str = "cli",
    ) -> Decided:
        """Record an approval decision once, then let the run go on, on its backend.

        A Temporal run's workflow is woken here; a local run continues when it is resumed.
        With `follow`, the run is followed to its next stop (a local run is resumed in this
        process, as `flowrun approve` does); without it, `needs_resume` tells the caller that a
        local run still waits to be resumed (the console does that in a child process).
        `recorded` hears "approved"/"rejected" as soon as the decision is in the store.
        With `who` (an authenticated identity), it must be allowed to decide (`authorize_decision`)
        and the decision is recorded as its own, whatever `by` says.
        """
        if who is not None:
            self.authorize_decision(run_id, node_id, who, approve=approve, via=via)
            by = who.name
        row = self.store.get_run(run_id)
        local = backend_name(row) == "local" and row.status not in TERMINAL
        if approve and follow and local and not row.responses_path:
            preflight(plan_of(row, self.store))  # a missing key refuses before the decision
        self.record_decision(
            run_id, node_id, approve=approve, by=by, decision=decision, reason=reason
        )
        status = "approved" if approve else "rejected"
        if recorded is not None:
            recorded(status)
        row = self.store.get_run(run_id)
        backend = self.backend_of(row)
        result = await backend.decided(self.store, row, node_id, follow=follow)
        needs_resume = backend.name == "local"
        if needs_resume and follow:
            result = await self.resume(run_id, observe=observe)
            needs_resume = False
        elif result is not None:
            result = await self._noticed(result)
        return Decided(
            run_id=run_id,
            node_id=node_id,
            status=status,
            backend=backend.name,
            result=result,
            needs_resume=needs_resume,
        )

    def record_decision(
        self,
        run_id: str,
        node_id: str,
        *,
        approve: bool,
        by: str,
        decision: Any = None,
        reason: str | None = None,
    ) -> None:
        """Record a decision once; an approval's decision is checked against the node's schema."""
        store = self.store
        row = store.get_run(run_id)
        approval = store.approval_get(run_id, node_id)
        if approval is None or approval.get("status") == "waiting":
            # refused before anything is written: a decision on a run that cannot go on would
            # be on record as taken although nothing ever acted on it (a decided approval says
            # who decided it, below)
            if row.status in TERMINAL:
                raise UsageError(
                    f"run {run_id!r} already finished ({row.status}); "
                    "a decision can no longer apply"
                )
            if row.kill_requested:
                raise UsageError(f"run {run_id!r} is being killed; a decision can no longer apply")
        if approval is None:
            waiting = [a["node_id"] for a in store.inbox() if a["run_id"] == run_id]
            raise NotFound(
                f"run {run_id!r} has no approval at node {node_id!r}",
                hint=f"waiting here: {', '.join(waiting)}"
                if waiting
                else f"the run is {row.status}",
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

    async def sweep(self, *, observe: Observe | None = None) -> list[tuple[str, str]]:
        """Continue every local run whose approval timed out, so its on_timeout applies; first
        send the approval notices that are due (runs/notify.py)."""
        from runner.runs.notify import scan

        now = time.time()
        await asyncio.to_thread(scan, self.store, now=now)
        due = sorted(
            {
                a["run_id"]
                for a in self.store.inbox()
                if a.get("timeout_at") and a["timeout_at"] <= now
            }
        )
        out: list[tuple[str, str]] = []
        for run_id in due:
            result = await self.resume(run_id, observe=observe)
            out.append((run_id, result.status))
        return out

    # -- stop and undo -------------------------------------------------------------------------
    async def kill(self, run_id: str, *, by: str | None) -> str:
        """Stop a run at its next node boundary; a waiting run is stopped at once."""
        row = self.store.get_run(run_id)
        if row.status in TERMINAL:
            raise UsageError(f"run {run_id!r} already finished ({row.status})")
        return await self.backend_of(row).cancel(self.store, row, by=by)

    async def undo(self, run_id: str, *, by: str | None) -> list[dict[str, Any]]:
        """Run the compensations of a run's completed writes, newest first, each at most once."""
        from runner.runs.undo import compensate

        row = self.store.get_run(run_id)
        if self.backend_of(row).busy(row):
            raise UsageError(f"run {run_id!r} is still running; kill it first")
        report = await compensate(self.store, run_id, by=by)
        if any(e.get("status") == "undone" for e in report):
            from runner.runs.autonomy import after_undo

            # an undo can push a tool's undo rate past the spec's threshold: demoted now
            for d in after_undo(self.store, row, plan_of(row, self.store), report):
                report.append(
                    {
                        "node_id": "-",
                        "tool": d["tool"],
                        "key": None,
                        "status": f"autonomy demoted to {d['to']!r}: {d['reason']}",
                    }
                )
        return report

    # -- the writes switch ---------------------------------------------------------------------
    def set_writes(self, on: bool, by: str | None) -> None:
        self.store.set_writes(on, by)

    def writes_enabled(self) -> bool:
        return self.store.writes_enabled()

    # -- reads the entry points need -----------------------------------------------------------
    def get(self, run_id: str) -> RunRow:
        return self.store.get_run(run_id)

    def list_runs(
        self,
        *,
        status: str | None = None,
        workflow: str | None = None,
        tenant: str | None = None,
        limit: int = 50,
    ) -> list[RunRow]:
        return self.store.list_runs(status=status, workflow=workflow, tenant=tenant, limit=limit)

    def workflows(self) -> list[str]:
        """Names of the workflows that have runs in this store, sorted."""
        return self.store.workflows()

    def inbox(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Approvals that wait, oldest first (of one run, if given)."""
        items = self.store.inbox()
        return items if run_id is None else [a for a in items if a["run_id"] == run_id]

    def approval(self, run_id: str, node_id: str) -> dict[str, Any] | None:
        return self.store.approval_get(run_id, node_id)

    def nodes(self, run_id: str) -> dict[str, dict[str, Any]]:
        return self.store.node_results(run_id)

    def effects(self, run_id: str) -> list[dict[str, Any]]:
        return self.store.ledger_for_run(run_id)

    def spend(self, run_id: str) -> list[dict[str, Any]]:
        """Every model call reserved for the run, with what it counts (runner/engine/budget.py)."""
        return self.store.spend_rows(run_id)

    def event(self, run_id: str, type_: str, **data: Any) -> None:
        self.store.event(run_id, type_, **data)


def _with(hooks: Hooks | None, obs: Any) -> Hooks | None:
    """The caller's hooks (progress display) followed by the run's observer."""
    from runner.engine.hooks import HookSet

    parts = [h for h in (hooks, obs) if h is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else HookSet(parts)
