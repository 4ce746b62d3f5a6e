"""Run a compiled plan on Temporal with a worker in this process (parity, replay, version tests)."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from runner.engine.results import RunResult
from runner.plan.model import Plan
from runner.runs import create_run
from runner.store import Store
from runner.temporal import INTERPRETER_VERSION
from runner.temporal.activities import run_result_from_json
from runner.temporal.client import Target, settle, start
from runner.temporal.types import RunInput
from runner.temporal.worker import make_worker

_ids = itertools.count(1)


def write_responses(path: Path, responses: list[dict[str, Any]] | None) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in responses or []), encoding="utf-8")
    return path


def run_input(
    plan: Plan,
    inputs: dict[str, Any],
    *,
    store: Store,
    run_id: str,
    responses: Path | None,
    options: dict[str, Any] | None = None,
    interpreter_version: int = INTERPRETER_VERSION,
    spec_path: str | None = None,
) -> RunInput:
    """Record the run in the store and build the workflow input, as `flowrun execute` does."""
    options = options or {}
    create_run(
        store, plan, inputs, run_id=run_id, responses_path=str(responses) if responses else None,
        options={**options, "backend": "temporal"},
    )  # fmt: skip
    text = plan.loaded.source.text
    return RunInput(
        run_id=run_id,
        spec_text=text,
        spec_path=spec_path or str(plan.loaded.source.path),
        spec_digest=hashlib.sha256(text.encode()).hexdigest(),
        profile=plan.profile,
        inputs=inputs,
        store_path=str(store.path),
        responses_path=str(responses) if responses else None,
        options=options,
        interpreter_version=interpreter_version,
        bundle=plan.bundle.to_json() if plan.bundle is not None else None,
    )


async def run_here(
    address: str, run: RunInput, *, queue: str | None = None
) -> tuple[RunResult, WorkflowHandle[Any, Any]]:
    """Start the run's workflow and serve it with an in-process worker until it settles."""
    client = await Client.connect(address)
    queue = queue or f"inproc-{run.run_id}-{next(_ids)}"
    async with make_worker(client, task_queue=queue):
        handle = await start(client, run, Target(address=address, task_queue=queue))
        snap = await settle(handle, poll_s=0.05)
    return run_result_from_json(snap), handle
