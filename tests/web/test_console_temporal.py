"""The console operates Temporal runs through runner.runs: a real dev server, real workers.

Issue 19: the console used to record a decision and start `flowrun resume`, which refuses
Temporal runs, so an approved run waited forever. Now the decision reaches the workflow.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.temporal.conftest import Workers, temporal_address, wait_for
from tests.web.conftest import SPECS, Flowrun, login, rows

__all__ = ["temporal_address"]  # the session's dev server (a fixture)

pytestmark = pytest.mark.slow

REVIEW = str(SPECS / "ticket_review.yaml")


@pytest.fixture
def workers(
    env: dict[str, str], temporal_address: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Workers]:
    w = Workers(env, temporal_address, f"tq-web-{request.node.name}"[:200], tmp_path)
    w.start()
    yield w
    w.stop_all()


def review_on_temporal(flowrun: Flowrun, workers: Workers, run_id: str) -> None:
    proc = flowrun(
        "execute", REVIEW, "--input-json", json.dumps({"ticket_id": "T-1005"}),
        "--run-id", run_id, "--live",
        "--backend", "temporal", "--temporal-address", workers.address,
        "--task-queue", workers.queue,
    )  # fmt: skip
    assert proc.returncode == 6, proc.stderr


def status(env: dict[str, str], run_id: str) -> str:
    return str(
        rows(env["FLOWRUN_STORE"], f"SELECT status FROM runs WHERE run_id = '{run_id}'")[0][0]
    )


def no_failed_resumes(env: dict[str, str]) -> bool:
    failed = "SELECT COUNT(*) FROM events WHERE type = 'console_resume_failed'"
    return rows(env["FLOWRUN_STORE"], failed) == [(0,)]


def test_console_approve_finishes_a_temporal_run_and_undo_voids_its_refund(
    client: TestClient, flowrun: Flowrun, env: dict[str, str], workers: Workers
) -> None:
    review_on_temporal(flowrun, workers, "ta1")
    csrf = login(client)
    url = "/approvals/ta1/approve/approve"
    done = client.post(
        url, data={"csrf": csrf, "by": "lead", "d_amount_usd": "12.5", "d_channel": "card"}
    )
    assert done.status_code == 200, done.text
    assert "Approved; the run continues." in done.text
    wait_for(lambda: status(env, "ta1") == "succeeded", 60, "the approved run to finish")
    assert no_failed_resumes(env)
    refunds = "SELECT order_id, amount_usd, status FROM refunds"
    assert rows(env["FLOWRUN_SUPPORT_DB"], refunds) == [("O-5005", 12.5, "issued")]
    again = client.post(
        url, data={"csrf": csrf, "by": "other", "d_amount_usd": "20", "d_channel": "card"}
    )
    assert again.status_code == 409 and "already approved by lead" in again.text
    assert rows(env["FLOWRUN_SUPPORT_DB"], "SELECT COUNT(*) FROM refunds") == [(1,)]  # once

    undone = client.post("/runs/ta1/undo", data={"csrf": csrf, "by": "ops", "confirm": "ta1"})
    assert undone.status_code == 200 and "undone" in undone.text
    assert rows(env["FLOWRUN_SUPPORT_DB"], refunds) == [("O-5005", 12.5, "voided")]


def test_console_reject_and_kill_end_temporal_runs(
    client: TestClient, flowrun: Flowrun, env: dict[str, str], workers: Workers
) -> None:
    review_on_temporal(flowrun, workers, "tj1")
    review_on_temporal(flowrun, workers, "tk1")
    csrf = login(client)
    r = client.post("/approvals/tj1/approve/reject", data={"csrf": csrf, "by": "lead", "reason": "no photos"})  # fmt: skip
    assert r.status_code == 200, r.text
    wait_for(lambda: status(env, "tj1") == "denied", 60, "the rejected run to end denied")
    killed = client.post("/runs/tk1/kill", data={"csrf": csrf, "by": "ops"})
    assert killed.status_code == 200, killed.text
    wait_for(lambda: status(env, "tk1") == "killed", 60, "the killed run to end")
    assert "The run was killed." in killed.text or "Kill requested" in killed.text
    assert client.post("/runs/tk1/kill", data={"csrf": csrf, "by": "ops"}).status_code == 409
    assert rows(env["FLOWRUN_SUPPORT_DB"], "SELECT COUNT(*) FROM refunds") == [(0,)]
    assert no_failed_resumes(env)
