"""The Temporal backend's commands: `flowrun worker`, and what execute/approve/kill route here."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from runner.errors import FlowrunError, UsageError
from runner.temporal import (
    DEFAULT_ADDRESS,
    DEFAULT_NAMESPACE,
    DEFAULT_TASK_QUEUE,
    INTERPRETER_VERSION,
    hard_exit_if_needed,
    require_temporalio,
)


def backend_of(row: Any) -> str:
    """The backend a run was started on, as recorded in its store row."""
    return str((row.options or {}).get("backend") or "local")


def _target(row: Any) -> Any:
    from runner.temporal.client import Target

    return Target.from_json((row.options or {}).get("temporal") or {})


def execute_temporal(
    *,
    plan: Any,
    inputs: dict[str, Any],
    store: Any,
    run_id: str,
    responses: str | None,
    tenant: str | None,
    actor: str | None,
    options: dict[str, Any],
    address: str,
    namespace: str,
    task_queue: str,
    interpreter_version: int = INTERPRETER_VERSION,
) -> Any:
    """Record the run, start its interpreter workflow, follow it until it ends or parks."""
    require_temporalio()
    from runner.store.runtime import create_run
    from runner.temporal.activities import run_result_from_json
    from runner.temporal.client import Target, connect, settle, start, workflow_id
    from runner.temporal.types import RunInput

    target = Target(address=address, namespace=namespace, task_queue=task_queue)

    async def go() -> dict[str, Any]:
        client = await connect(target)  # unreachable: exit 2 before anything is recorded
        create_run(
            store,
            plan,
            inputs,
            run_id=run_id,
            responses_path=responses,
            tenant=tenant,
            actor=actor,
            options={
                **options,
                "backend": "temporal",
                "temporal": {**target.to_json(), "workflow_id": workflow_id(run_id)},
            },
        )
        store.run_ended(run_id)  # a worker runs it, through a store of its own,
        store.update_run(run_id, pid=None)  # not this process
        text = plan.loaded.source.text
        run = RunInput(
            run_id=run_id,
            spec_text=text,
            spec_path=str(Path(plan.loaded.source.path).resolve()),
            spec_digest=hashlib.sha256(text.encode()).hexdigest(),
            profile=plan.profile,
            inputs=inputs,
            store_path=str(Path(store.path).resolve()),
            responses_path=str(Path(responses).resolve()) if responses else None,
            options=options,
            tenant=tenant,
            actor=actor,
            interpreter_version=interpreter_version,
            bundle=plan.bundle.to_json() if plan.bundle is not None else None,
        )
        handle = await start(client, run, target)
        try:
            return await settle(handle, task_queue=target.task_queue)
        except Exception as e:
            from runner.errors import FlowrunError

            if isinstance(e, FlowrunError):
                store.update_run(run_id, status="failed", reason=e.message)
            raise

    return run_result_from_json(_run(go()))


def decide_temporal(store: Any, run_id: str, node_id: str, *, wait: bool) -> Any:
    """After the store recorded a decision: wake the parked node; follow the run unless told not."""
    require_temporalio()
    from runner.temporal.activities import run_result_from_json
    from runner.temporal.client import connect, decide, settle, workflow_id

    row = store.get_run(run_id)
    if row.status not in ("waiting", "running"):
        raise UsageError(
            f"run {run_id!r} already finished ({row.status}); the decision is recorded only"
        )

    async def go() -> dict[str, Any] | None:
        client = await connect(_target(row))
        await decide(client, run_id, node_id)
        if not wait:
            return None
        return await settle(client.get_workflow_handle(workflow_id(run_id)))

    snap = _run(go())
    return run_result_from_json(snap) if snap is not None else None


def kill_temporal(store: Any, run_id: str, *, by: str | None) -> str:
    """Cancel the run's workflow; the workflow records `killed` in the store."""
    require_temporalio()
    from runner.temporal.client import cancel, connect

    row = store.get_run(run_id)
    store.request_kill(run_id, by)

    async def go() -> str:
        return await cancel(await connect(_target(row)), run_id)

    return str(_run(go()))


def _run(coro: Any) -> Any:
    """asyncio.run for a command; an error after connecting is shown and ends the process."""
    try:
        return asyncio.run(coro)
    except FlowrunError as e:
        click.echo(e.render(), err=True)
        hard_exit_if_needed(e.exit_code)
        raise


def exit_command(code: int) -> NoReturn:
    """End a command that talked to Temporal (see `hard_exit_if_needed`)."""
    hard_exit_if_needed(code)
    sys.exit(code)


@click.command()
@click.option("--temporal-address", "address", default=DEFAULT_ADDRESS, show_default=True)
@click.option("--namespace", default=DEFAULT_NAMESPACE, show_default=True)
@click.option("--task-queue", default=DEFAULT_TASK_QUEUE, show_default=True)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="node activities this worker runs at once",
)
def worker(address: str, namespace: str, task_queue: str, concurrency: int) -> None:
    """Run flowrun workflows on Temporal: poll TASK_QUEUE until interrupted (Ctrl-C).

    Runs started with `flowrun execute --backend temporal` are interpreted here; their LLM and
    tool nodes run here as activities against the run's store (the same SQLite file).
    """
    require_temporalio()
    from runner.models.client import ensure_litellm
    from runner.temporal.client import Target, connect
    from runner.temporal.worker import make_worker

    ensure_litellm()  # import once (seconds) before taking work

    async def go() -> None:
        client = await connect(Target(address=address, namespace=namespace))
        w = make_worker(client, task_queue=task_queue, concurrency=concurrency)
        click.echo(
            json.dumps(
                {
                    "worker": "ready",
                    "address": address,
                    "namespace": namespace,
                    "task_queue": task_queue,
                    "interpreter_version": INTERPRETER_VERSION,
                }
            ),
            err=True,
        )
        await w.run()

    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        sys.exit(130)


def check_backend(backend: str) -> None:
    if backend == "temporal":
        require_temporalio()
    elif backend != "local":
        raise UsageError(f"unknown backend {backend!r}", hint="use local or temporal")


TEMPORAL_COMMANDS = (worker,)
