"""Kill switch, global writes switch, undo, and listing runs — each through the real command, on
both store implementations."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.durable.conftest import (
    BOTH_STORES,
    ROOT,
    SPECS,
    Flowrun,
    only_run_id,
    refund_case,
    rows,
    tool_log,
)

pytestmark = BOTH_STORES


def test_kill_stops_a_running_run_at_the_next_node_boundary(
    flowrun: Flowrun, env: dict[str, str]
) -> None:
    command = ["execute", str(SPECS / "slow_chain.yaml"), "--output", "json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", *command],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and len(tool_log(env)) < 1:
        time.sleep(0.05)
    killed = flowrun("kill", only_run_id(env), "--by", "oncall")
    Path(env["DTOOLS_LOG"] + ".go").touch()  # s2 was holding the run until now
    assert killed.returncode == 0 and "kill requested" in killed.stdout
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 7, err
    result = json.loads(out)
    assert result["status"] == "killed"
    ran = [e["label"] for e in tool_log(env)]
    assert ran == ["s1", "s2"]  # killed at the boundary after the node that was running
    assert flowrun("resume", result["run_id"]).returncode == 2  # a killed run is finished


def test_kill_of_a_waiting_run_is_immediate(flowrun: Flowrun, env: dict[str, str]) -> None:
    assert flowrun(*refund_case("refund_needs_approval")).returncode == 6
    run_id = only_run_id(env)
    proc = flowrun("kill", run_id)
    assert proc.returncode == 0 and "killed" in proc.stdout
    assert rows(env["FLOWRUN_STORE"], "SELECT status FROM runs") == [("killed",)]
    asked = "SELECT status, decided_by, decision, reason FROM approvals"
    before = rows(env["FLOWRUN_STORE"], asked)
    for decide in (("approve", "--by", "x"), ("reject", "--by", "x", "--reason", "no")):
        refused = flowrun(decide[0], run_id, "approve", *decide[1:], "--no-resume")
        assert refused.returncode == 2 and "already finished (killed)" in refused.stderr
    assert rows(env["FLOWRUN_STORE"], asked) == before  # refused before anything was recorded
    assert before and before[0][1] is None


def test_writes_switch_refuses_every_write_until_turned_back_on(
    flowrun: Flowrun, env: dict[str, str]
) -> None:
    assert flowrun("writes", "off", "--by", "oncall").stdout.strip() == "writes are off"
    proc = flowrun(*refund_case("refund_granted"))
    assert proc.returncode == 5, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "denied" and out["nodes"]["act"]["status"] == "denied"
    assert "writes are switched off" in out["reason"]
    assert rows(env["FLOWRUN_SUPPORT_DB"], "SELECT COUNT(*) FROM refunds") == [(0,)]
    assert rows(
        env["FLOWRUN_STORE"], "SELECT COUNT(*) FROM events WHERE type = 'write_refused'"
    ) == [(1,)]
    assert flowrun("writes").stdout.strip() == "writes are off"
    assert flowrun("writes", "on").stdout.strip() == "writes are on"
    assert flowrun(*refund_case("refund_granted")).returncode == 0
    assert rows(env["FLOWRUN_SUPPORT_DB"], "SELECT COUNT(*) FROM refunds") == [(1,)]


def test_undo_runs_compensations_in_reverse_once(flowrun: Flowrun, env: dict[str, str]) -> None:
    assert flowrun(*refund_case("refund_granted")).returncode == 0
    run_id = only_run_id(env)
    proc = flowrun("undo", run_id, "--by", "lead", "--output", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [(e["node_id"], e["status"]) for e in report] == [
        ("log", "no compensation declared"),
        ("act", "undone"),
    ]
    assert rows(env["FLOWRUN_SUPPORT_DB"], "SELECT status FROM refunds") == [("voided",)]
    again = flowrun("undo", run_id, "--output", "json")
    assert again.returncode == 0 and [e["node_id"] for e in json.loads(again.stdout)] == ["log"]
    undo_events = rows(env["FLOWRUN_STORE"], "SELECT COUNT(*) FROM events WHERE type = 'undo'")
    assert undo_events == [(1,)]


def test_undo_reverses_in_completion_order(flowrun: Flowrun, env: dict[str, str]) -> None:
    spec = str(SPECS / "two_approvals.yaml")
    assert flowrun("execute", spec, "--live").returncode == 6
    run_id = only_run_id(env)
    flowrun("approve", run_id, "ok1", "--by", "a")
    assert (
        flowrun("approve", run_id, "ok2", "--by", "b", "--decision", '{"note": "n"}').returncode
        == 0
    )
    assert flowrun("undo", run_id).returncode == 0
    assert [e["label"] for e in tool_log(env)][-1] == "undo:last:n"


def test_runs_lists_and_filters(flowrun: Flowrun, env: dict[str, str]) -> None:
    assert flowrun(*refund_case("refund_granted"), "--tenant", "acme").returncode == 0
    assert flowrun(*refund_case("refund_over_cap"), "--tenant", "globex").returncode == 3
    listed = json.loads(flowrun("runs", "--output", "json").stdout)
    assert sorted(r["status"] for r in listed) == ["escalated", "succeeded"]
    acme = json.loads(flowrun("runs", "--tenant", "acme", "--output", "json").stdout)
    assert [r["status"] for r in acme] == ["succeeded"]
    esc = json.loads(flowrun("runs", "--status", "escalated", "--output", "json").stdout)
    assert [r["tenant"] for r in esc] == ["globex"]
    other = json.loads(flowrun("runs", "--workflow", "nope", "--output", "json").stdout)
    assert other == []
    text = flowrun("show", acme[0]["run_id"])
    assert text.returncode == 0 and "act" in text.stdout and "issue_refund" in text.stdout


@pytest.mark.parametrize(
    ("spec", "first"), [("kill_in_map.yaml", "item0"), ("kill_in_loop.yaml", "pass1")]
)
def test_kill_inside_a_map_or_loop_stops_at_the_next_item(
    flowrun: Flowrun, env: dict[str, str], spec: str, first: str
) -> None:
    """A kill while a map item (loop pass) runs: that one finishes, no later item starts."""
    command = ["execute", str(SPECS / spec), "--output", "json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", *command],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and not tool_log(env) and proc.poll() is None:
        time.sleep(0.05)
    assert tool_log(env) == [{"label": first, "kind": "started"}]
    killed = flowrun("kill", only_run_id(env), "--by", "oncall")
    Path(env["DTOOLS_LOG"] + ".go").touch()  # the running item was holding the run until now
    assert killed.returncode == 0 and "kill requested" in killed.stdout
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 7, err
    assert json.loads(out)["status"] == "killed"
    assert [(e["label"], e["kind"]) for e in tool_log(env)] == [
        (first, "started"),
        (first, "read"),
    ]
