"""A webhook whose hook says `backend: temporal`: the run goes to a Temporal worker, and the
approval it parks at still reaches the approvers' webhook."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.runs import Runs
from tests.durable.conftest import process_env
from tests.intake.conftest import OLD_SECRET, SECRET, Receiver
from tests.intake.test_notify import notify_env
from tests.temporal.conftest import ROOT, Workers, task_queue, temporal_address

__all__ = ["task_queue", "temporal_address"]  # fixtures this module uses

pytestmark = pytest.mark.slow

APPROVE = ROOT / "tests" / "temporal" / "specs" / "approve.yaml"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return process_env(
        tmp_path,
        TTOOLS_LOG=str(tmp_path / "ttools.log"),
        DTOOLS_LOG=str(tmp_path / "dtools.log"),
        TICKET_HOOK_SECRET=SECRET,
        TICKET_HOOK_SECRET_OLD=OLD_SECRET,
    )


@pytest.fixture
def workers(
    env: dict[str, str], temporal_address: str, task_queue: str, tmp_path: Path
) -> Iterator[Workers]:
    w = Workers(env, temporal_address, task_queue, tmp_path)
    yield w
    w.stop_all()


def test_a_webhook_starts_a_temporal_run_and_its_approval_is_noticed(
    serve: Any,
    workers: Workers,
    temporal_address: str,
    task_queue: str,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    workers.start()
    extra = f"""  pay:
    spec: {APPROVE}
    secret_env: TICKET_HOOK_SECRET
    backend: temporal
    temporal: {{address: "{temporal_address}", task_queue: "{task_queue}"}}
"""
    s = serve(
        command="intake",
        extra=extra,
        env_extra=notify_env(tmp_path, "http://console.example", receiver),
    )
    status, answer, _ = s.post("pay", b"{}", delivery="t-1")
    assert status == 202, answer
    run_id = answer["run_id"]
    got = receiver.wait(2, timeout=300)
    audit = next(json.loads(g.body) for g in got if "/audit" in g.path)
    assert (audit["run_id"], audit["node_id"], audit["summary"]) == (run_id, "ok", "pay for first")
    with contextlib.closing(Runs.open(s.env["FLOWRUN_STORE"])) as r:
        row = r.get(run_id)
        assert row.status == "waiting" and (row.options or {}).get("backend") == "temporal"
        assert row.actor == "hook:pay"
