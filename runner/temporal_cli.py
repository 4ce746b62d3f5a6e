"""`flowrun worker`: the Temporal backend's one command (runs are operated through runner.runs)."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from runner.runs.worker import DEFAULT_ADDRESS, DEFAULT_NAMESPACE, DEFAULT_TASK_QUEUE, work


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

    def ready(info: dict[str, object]) -> None:
        click.echo(json.dumps(info), err=True)

    try:
        asyncio.run(
            work(
                address=address,
                namespace=namespace,
                task_queue=task_queue,
                concurrency=concurrency,
                ready=ready,
            )
        )
    except KeyboardInterrupt:
        sys.exit(130)


TEMPORAL_COMMANDS = (worker,)
