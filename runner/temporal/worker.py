"""`flowrun worker`: polls a task queue, runs interpreter workflows and node activities."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from runner.temporal.activities import ACTIVITIES
from runner.temporal.workflow import Interpreter

# flowrun's own code and what it builds on are imported once, outside the sandbox: the workflow
# only evaluates CEL over plain data with them (the plan is compiled from the run's spec text)
PASSTHROUGH = (
    "runner",
    "tools",
    "tests",
    "cel",
    "pydantic",
    "pydantic_core",
    "jsonschema",
    "yaml",
    "jinja2",
    "litellm",
    "cedarpy",
    "mcp",
    "opentelemetry",
)


def sandbox_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )


WORKFLOWS: list[type[Any]] = [Interpreter]


def make_worker(client: Client, *, task_queue: str, concurrency: int = 100) -> Worker:
    """A worker for flowrun runs: the interpreter workflow and the node activities."""
    from runner.models.client import ensure_litellm

    # import litellm (seconds, blocking) now: inside an activity it would stall the heartbeats
    ensure_litellm()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=list(ACTIVITIES),
        max_concurrent_activities=concurrency,
        max_concurrent_workflow_tasks=max(concurrency, 10),
        workflow_runner=sandbox_runner(),
    )
