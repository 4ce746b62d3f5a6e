"""Start, follow, decide and cancel flowrun runs on Temporal; every wait is bounded or explained."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any

from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from runner.errors import ExitCode, FlowrunError, UsageError
from runner.temporal import (
    CONNECT_TIMEOUT_S,
    DEFAULT_ADDRESS,
    DEFAULT_NAMESPACE,
    DEFAULT_TASK_QUEUE,
    WORKFLOW_NAME,
    client_used,
)
from runner.temporal.types import RunInput

NO_WORKER_NOTE_S = 10.0


class TemporalUnreachable(FlowrunError):
    """No Temporal server answered: nothing was started."""

    exit_code = ExitCode.INVALID


class TemporalRunError(FlowrunError):
    """The interpreter workflow itself failed (not a node): e.g. a worker too old for the run."""

    exit_code = ExitCode.FAILED


@dataclass(frozen=True)
class Target:
    """Where a run lives on Temporal; recorded in the run's store row (options.temporal)."""

    address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    task_queue: str = DEFAULT_TASK_QUEUE

    def to_json(self) -> dict[str, str]:
        return {"address": self.address, "namespace": self.namespace, "task_queue": self.task_queue}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Target:
        return cls(
            address=d.get("address", DEFAULT_ADDRESS),
            namespace=d.get("namespace", DEFAULT_NAMESPACE),
            task_queue=d.get("task_queue", DEFAULT_TASK_QUEUE),
        )


def workflow_id(run_id: str) -> str:
    return f"flowrun-{run_id}"


async def connect(target: Target, timeout_s: float = CONNECT_TIMEOUT_S) -> Client:
    """Connect, or fail within `timeout_s` with a message that says what to start."""
    client_used()
    try:
        return await asyncio.wait_for(
            Client.connect(target.address, namespace=target.namespace), timeout_s
        )
    except (TimeoutError, RuntimeError, RPCError, OSError) as e:
        detail = f": {e}" if str(e) else ""
        raise TemporalUnreachable(
            f"cannot reach a Temporal server at {target.address} (namespace "
            f"{target.namespace!r}) within {timeout_s:g}s{detail}",
            hint="start one with `temporal server start-dev`, or pass --temporal-address",
        ) from None


async def start(client: Client, run: RunInput, target: Target) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        WORKFLOW_NAME,
        run,
        id=workflow_id(run.run_id),
        task_queue=target.task_queue,
        result_type=dict,
    )


async def settle(
    handle: WorkflowHandle[Any, Any], *, poll_s: float = 0.1, task_queue: str = "<queue>"
) -> dict[str, Any]:
    """Wait until the run ends, or parks for an approval (the workflow then keeps waiting)."""
    result = asyncio.ensure_future(handle.result())
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    noted = False
    try:
        while True:
            done, _ = await asyncio.wait({result}, timeout=poll_s)
            if done:
                break
            try:  # a query waits for a worker: bounded, so that the note below can be printed
                snap = await asyncio.wait_for(handle.query("settled", result_type=dict), 2.0)
            except Exception:
                snap = None
            if snap is not None:
                return dict(snap)
            if not noted and loop.time() - t0 >= NO_WORKER_NOTE_S:
                desc = await handle.describe()
                if desc.history_length <= 2:  # started and scheduled: no worker took it
                    print(
                        f"note: no worker has taken run {handle.id} yet; start one with "
                        f"`flowrun worker --task-queue {task_queue}` (still waiting)",
                        file=sys.stderr,
                    )
                noted = True
        try:
            return dict(result.result())
        except WorkflowFailureError as e:
            cause = e.cause
            message = getattr(cause, "message", None) or str(cause)
            raise TemporalRunError(f"the run's workflow failed: {message}") from None
    finally:
        if not result.done():
            result.cancel()


async def decide(client: Client, run_id: str, node_id: str, *, wait_s: float = 10.0) -> None:
    """Wake the node parked for approval; retried briefly while the node is still parking."""
    handle = client.get_workflow_handle(workflow_id(run_id))
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            await handle.execute_update("decide", node_id, result_type=str)
            return
        except WorkflowUpdateFailedError as e:
            message = getattr(e.cause, "message", None) or str(e.cause)
            if asyncio.get_running_loop().time() >= deadline:
                raise UsageError(f"run {run_id!r} on Temporal: {message}") from None
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND or "completed" in str(e):
                raise UsageError(f"run {run_id!r} on Temporal has ended: {e}") from None
            if asyncio.get_running_loop().time() >= deadline:
                raise UsageError(f"run {run_id!r} on Temporal: {e}") from None
        await asyncio.sleep(0.2)


async def cancel(client: Client, run_id: str, *, wait_s: float = 30.0) -> str:
    """Cancel the run's workflow; it records `killed` in the store and ends."""
    handle = client.get_workflow_handle(workflow_id(run_id))
    await handle.cancel()
    try:
        snap = await asyncio.wait_for(handle.result(), wait_s)
    except TimeoutError:
        return "kill requested"
    return str(snap.get("status", "killed")) if isinstance(snap, dict) else "killed"
