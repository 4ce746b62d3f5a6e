"""Temporal runs served by a worker in this process: approval timeouts, parked-run snapshots."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import Client

from runner.plan.compile import compile_plan
from runner.spec import load_spec
from runner.store import open_store
from runner.temporal.activities import run_result_from_json
from runner.temporal.client import Target, settle, start
from runner.temporal.worker import make_worker
from tests.temporal.conftest import ROOT
from tests.temporal.inproc import run_input

TIMEOUT_SPEC = ROOT / "tests" / "durable" / "specs" / "approval_timeout.yaml"


def test_an_approval_times_out_inside_the_workflow_without_a_sweep(
    temporal_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DTOOLS_LOG", str(tmp_path / "dtools.log"))
    store = open_store(tmp_path / "flowrun.db")
    plan = compile_plan(load_spec(str(TIMEOUT_SPEC)))

    async def go() -> tuple[str, str, str]:
        client = await Client.connect(temporal_address)
        queue = "timeouts"
        async with make_worker(client, task_queue=queue):
            results = []
            for case in ("escalate", "reject"):
                run = run_input(
                    plan, {"on_timeout": case}, store=store, run_id=f"to-{case}", responses=None
                )
                handle = await start(
                    client, run, Target(address=temporal_address, task_queue=queue)
                )
                parked = await settle(handle, poll_s=0.05)
                assert parked["status"] == "waiting", parked["reason"]
                results.append(run_result_from_json(await handle.result()).status)
            return parked["reason"], results[0], results[1]

    reason, escalated, denied = asyncio.run(go())
    assert "waits for approval: quick decision needed" in reason
    assert (escalated, denied) == ("escalated", "denied")
    row = store.get_run("to-escalate")
    assert row.status == "escalated" and row.finished_at is not None
    assert store.approval_get("to-escalate", "wait_escalate")["status"] == "timed_out"  # type: ignore[index]
    assert store.inbox() == []
