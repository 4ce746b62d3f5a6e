"""`flowrun worker`'s work: take Temporal runs from a task queue until interrupted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runner.temporal import (
    DEFAULT_ADDRESS,
    DEFAULT_NAMESPACE,
    DEFAULT_TASK_QUEUE,
    INTERPRETER_VERSION,
    require_temporalio,
)

__all__ = ["DEFAULT_ADDRESS", "DEFAULT_NAMESPACE", "DEFAULT_TASK_QUEUE", "work"]


async def work(
    *,
    address: str,
    namespace: str,
    task_queue: str,
    concurrency: int,
    ready: Callable[[dict[str, Any]], None],
) -> None:
    """Poll `task_queue`, interpreting runs and running their nodes; `ready` once polling."""
    require_temporalio()
    from runner.models.client import ensure_litellm
    from runner.temporal.client import Target, connect
    from runner.temporal.worker import make_worker

    ensure_litellm()  # import once (seconds) before taking work
    client = await connect(Target(address=address, namespace=namespace))
    w = make_worker(client, task_queue=task_queue, concurrency=concurrency)
    ready(
        {
            "worker": "ready",
            "address": address,
            "namespace": namespace,
            "task_queue": task_queue,
            "interpreter_version": INTERPRETER_VERSION,
        }
    )
    await w.run()
