"""Approvals across processes: a run parks in the store, another process decides and resumes it."""

from __future__ import annotations

import json
import time

from tests.durable.conftest import (
    BOTH_STORES,
    SPECS,
    Flowrun,
    only_run_id,
    refund_case,
    rows,
    tool_log,
)

pytestmark = BOTH_STORES


def test_execute_waits_then_approve_from_another_process_completes(
    flowrun: Flowrun, env: dict[str, str]
) -> None:
    first = flowrun(*refund_case("refund_needs_approval"))
    assert first.returncode == 6, first.stderr
    out = json.loads(first.stdout)
    assert out["status"] == "waiting"
    assert out["nodes"]["approve"]["status"] == "waiting"
    assert "act" not in out["nodes"] and "log" not in out["nodes"]
    run_id = only_run_id(env)
    assert rows(env["FLOWRUN_SUPPORT_DB"], "SELECT COUNT(*) FROM refunds") == [(0,)]

    inbox = flowrun("inbox", "--output", "json")
    assert inbox.returncode == 0
    (item,) = json.loads(inbox.stdout)
    assert item["run_id"] == run_id and item["node_id"] == "approve"
    assert "42.0 USD on order O-5005" in item["summary"]

    done = flowrun("approve", run_id, "approve", "--by", "lead@example.com", "--output", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded"
    assert result["outputs"]["decision"] == "refunded"
    assert rows(env["FLOWRUN_SUPPORT_DB"], "SELECT order_id, amount_usd FROM refunds") == [
        ("O-5005", 42.0)
    ]
    # nothing before the approval ran again: each of those nodes was checkpointed once
    seqs = rows(env["FLOWRUN_STORE"], "SELECT node_id, MAX(seq) FROM node_results GROUP BY node_id")
    again = {n for n, s in seqs if s != 1 and n != "approve"}
    assert again == set()
    assert flowrun("inbox", "--output", "json").stdout.strip() == "[]"

    twice = flowrun("approve", run_id, "approve", "--by", "lead@example.com")
    assert twice.returncode == 2
    assert "already approved by lead@example.com" in twice.stderr
    events = rows(
        env["FLOWRUN_STORE"], "SELECT type FROM events WHERE type LIKE 'approval_%' ORDER BY id"
    )
    assert [e[0] for e in events] == ["approval_requested", "approval_approved"]


def test_reject_ends_the_run_denied_without_the_write(
    flowrun: Flowrun, env: dict[str, str]
) -> None:
    assert flowrun(*refund_case("refund_needs_approval")).returncode == 6
    run_id = only_run_id(env)
    proc = flowrun(
        "reject", run_id, "approve", "--by", "lead", "--reason", "needs photos", "--output", "json"
    )
    assert proc.returncode == 5, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "denied"
    assert "rejected by lead: needs photos" in out["reason"]
    assert rows(env["FLOWRUN_SUPPORT_DB"], "SELECT COUNT(*) FROM refunds") == [(0,)]
    shown = json.loads(flowrun("show", run_id, "--output", "json").stdout)
    assert shown["status"] == "denied"


def test_several_approvals_in_one_run_never_repeat_earlier_work(
    flowrun: Flowrun, env: dict[str, str]
) -> None:
    spec = str(SPECS / "two_approvals.yaml")
    assert flowrun("execute", spec, "--live").returncode == 6
    run_id = only_run_id(env)
    # the branch that does not depend on the approval went on while the run waited
    assert sorted(e["label"] for e in tool_log(env)) == ["first", "side"]

    assert flowrun("approve", run_id, "ok1", "--by", "a").returncode == 6
    bad = flowrun("approve", run_id, "ok2", "--by", "b", "--decision", '{"note": 3}')
    assert bad.returncode == 2 and "decision schema" in bad.stderr
    proc = flowrun("approve", run_id, "ok2", "--by", "b", "--decision", '{"note": "ship"}')
    assert proc.returncode == 0, proc.stderr
    assert [e["label"] for e in tool_log(env)] == ["first", "side", "middle", "last:ship"]
    shown = json.loads(flowrun("show", run_id, "--output", "json").stdout)
    assert shown["outputs"] == {"note": "ship"}
    assert shown["nodes"]["ok2"]["output"]["by"] == "b"


def test_approval_timeout_escalates_or_rejects(flowrun: Flowrun, env: dict[str, str]) -> None:
    spec = str(SPECS / "approval_timeout.yaml")
    assert flowrun("execute", spec, "--input-json", '{"on_timeout": "escalate"}').returncode == 6
    assert flowrun("execute", spec, "--input-json", '{"on_timeout": "reject"}').returncode == 6
    time.sleep(1.2)
    swept = flowrun("sweep")
    assert swept.returncode == 0, swept.stderr
    runs = json.loads(flowrun("runs", "--output", "json").stdout)
    statuses = {
        json.loads(flowrun("show", r["run_id"], "--output", "json").stdout)["inputs"][
            "on_timeout"
        ]: r["status"]
        for r in runs
    }
    assert statuses == {"escalate": "escalated", "reject": "denied"}
    assert [e["label"] for e in tool_log(env)] == ["first", "first"]  # `after` never ran
    quiet = flowrun("sweep")
    assert quiet.returncode == 0 and "no approval has timed out" in quiet.stdout
