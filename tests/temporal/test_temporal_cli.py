"""The Temporal backend through the `flowrun` command: real dev server, real worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.temporal.conftest import (
    ROOT,
    SPECS,
    Flowrun,
    Workers,
    free_port,
    tool_log,
    wait_for,
)

REFERENCE = ROOT / "specs" / "support_refund.yaml"
EXAMPLES = ROOT / "examples"


def temporal(address: str, queue: str) -> list[str]:
    return ["--backend", "temporal", "--temporal-address", address, "--task-queue", queue]


def refund_case(name: str) -> list[str]:
    return [
        "execute", str(REFERENCE),
        "--input", str(EXAMPLES / "inputs" / f"{name}.json"),
        "--responses", str(EXAMPLES / "responses" / f"{name}.jsonl"),
        "--output", "json", "--live", "--scopes", "refunds:write",
    ]  # fmt: skip


def writes(env: dict[str, str]) -> list[str]:
    return [str(e["label"]) for e in tool_log(env) if e["kind"] == "write"]


def timeless(value: object) -> object:
    """The value without wall-clock stamps (a write's created_at), which two runs never share."""
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if k != "created_at"}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


def ledger(flowrun: Flowrun, run_id: str, store: str | None = None) -> list[dict[str, object]]:
    args = ["show", run_id, "--output", "json", *(["--store", store] if store else [])]
    shown = flowrun(*args)
    assert shown.returncode == 0, shown.stderr
    return list(json.loads(shown.stdout)["effects"])


@pytest.mark.slow
def test_reference_run_on_temporal_matches_local_outcome_and_ledger(
    flowrun: Flowrun, workers: Workers, tmp_path: Path, env: dict[str, str]
) -> None:
    workers.start()
    on_temporal = flowrun(
        *refund_case("refund_granted"), "--run-id", "t1", *temporal(workers.address, workers.queue)
    )
    assert on_temporal.returncode == 0, on_temporal.stderr
    # the same case on the local backend, against its own store and support database
    support2 = tmp_path / "support2.db"
    subprocess.run(
        [sys.executable, "-m", "tools.seed", "--db", str(support2)], cwd=ROOT, check=True,
        capture_output=True,
    )  # fmt: skip
    store2 = str(tmp_path / "local.db")
    local = flowrun(
        *refund_case("refund_granted"), "--run-id", "t1", "--store", store2,
        extra_env={"FLOWRUN_SUPPORT_DB": str(support2)},
    )  # fmt: skip
    assert local.returncode == 0, local.stderr
    t, loc = json.loads(on_temporal.stdout), json.loads(local.stdout)
    assert t["status"] == loc["status"] == "succeeded"
    assert timeless(t["outputs"]) == timeless(loc["outputs"])
    assert {k: v["status"] for k, v in t["nodes"].items()} == {
        k: v["status"] for k, v in loc["nodes"].items()
    }
    assert timeless({k: v["output"] for k, v in t["nodes"].items()}) == timeless(
        {k: v["output"] for k, v in loc["nodes"].items()}
    )
    assert t["totals"] == loc["totals"]
    assert ledger(flowrun, "t1") == ledger(flowrun, "t1", store2)
    assert [e["status"] for e in ledger(flowrun, "t1")] == ["done"] * 4
    # the run is in the store like a local one: runs, show, trace, stats
    listed = flowrun("runs", "--output", "json")
    assert [(r["run_id"], r["status"]) for r in json.loads(listed.stdout)] == [("t1", "succeeded")]
    shown = flowrun("show", "t1")
    assert "run t1 (support-refund): succeeded" in shown.stdout
    assert "effect issue_refund [issue_refund/refund:O-5001] done" in shown.stdout
    traced = flowrun("trace", "t1")
    assert traced.returncode == 0, traced.stderr
    assert "chat openai/gpt-4o-mini #1" in traced.stdout
    assert "verify (gate)  succeeded" in traced.stdout
    stats = flowrun("stats")
    assert "runs                 1  (succeeded 1)" in stats.stdout
    resumed = flowrun("resume", "t1")
    assert resumed.returncode == 2 and "already finished" in resumed.stderr


@pytest.mark.slow
def test_approval_across_processes_then_a_second_decision_is_refused(
    flowrun: Flowrun, workers: Workers, env: dict[str, str]
) -> None:
    workers.start()
    spec = str(SPECS / "approve.yaml")
    started = flowrun(
        "execute", spec, "--live", "--run-id", "a1", "--output", "json",
        *temporal(workers.address, workers.queue),
    )  # fmt: skip
    assert started.returncode == 6, started.stderr
    assert json.loads(started.stdout)["status"] == "waiting"
    inbox = flowrun("inbox", "--output", "json")
    assert [(a["run_id"], a["node_id"]) for a in json.loads(inbox.stdout)] == [("a1", "ok")]
    resumed = flowrun("resume", "a1")
    assert resumed.returncode == 2 and "runs on Temporal" in resumed.stderr
    bad = flowrun("approve", "a1", "ok", "--by", "alice", "--decision", '{"nope": 1}')
    assert bad.returncode == 2 and "decision schema" in bad.stderr
    ok = flowrun("approve", "a1", "ok", "--by", "alice", "--decision", '{"note": "fast"}', "--output", "json")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert result["status"] == "succeeded"
    assert result["outputs"] == {"note": "fast"}
    assert result["nodes"]["careful"]["status"] == "skipped"
    assert writes(env) == ["fast"]
    again = flowrun("approve", "a1", "ok", "--by", "bob")
    assert again.returncode == 2 and "already approved by alice" in again.stderr
    assert writes(env) == ["fast"]
    # undo from the CLI runs the write's compensation once, on a Temporal run as on a local one
    undone = flowrun("undo", "a1", "--by", "ops", "--output", "json")
    assert undone.returncode == 0, undone.stderr
    assert [e["status"] for e in json.loads(undone.stdout)] == ["undone"]
    assert flowrun("undo", "a1", "--by", "ops").returncode == 0
    undos = [e["label"] for e in tool_log(env) if e["kind"] == "undo"]
    assert undos == ["fast"]


@pytest.mark.slow
def test_reject_ends_the_run_denied_without_writes(
    flowrun: Flowrun, workers: Workers, env: dict[str, str]
) -> None:
    workers.start()
    spec = str(SPECS / "approve.yaml")
    started = flowrun("execute", spec, "--live", "--run-id", "r1", *temporal(workers.address, workers.queue))  # fmt: skip
    assert started.returncode == 6, started.stderr
    rejected = flowrun("reject", "r1", "ok", "--by", "carol", "--reason", "not today")
    assert rejected.returncode == 5, rejected.stderr
    assert "denied" in rejected.stdout and "not today" in rejected.stdout
    assert writes(env) == []
    assert json.loads(flowrun("show", "r1", "--output", "json").stdout)["status"] == "denied"


@pytest.mark.slow
def test_kill_cancels_a_running_and_a_waiting_run(
    flowrun: Flowrun, workers: Workers, env: dict[str, str]
) -> None:
    workers.start()
    # waiting for approval: killed at once
    spec = str(SPECS / "approve.yaml")
    assert flowrun("execute", spec, "--run-id", "k1", *temporal(workers.address, workers.queue)).returncode == 6  # fmt: skip
    killed = flowrun("kill", "k1", "--by", "ops")
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.strip() == "k1: killed"
    shown = json.loads(flowrun("show", "k1", "--output", "json").stdout)
    assert shown["status"] == "killed"
    assert shown["nodes"]["ok"]["status"] == "killed"
    # running: the slow node is cut off, the write after it never happens
    execute = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "execute", str(SPECS / "crash.yaml"), "--live",
         "--run-id", "k2", "--input-json", '{"seconds": 30}', *temporal(workers.address, workers.queue)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: any(e["kind"] == "started" for e in tool_log(env)), 60, "the slow node")
    killed = flowrun("kill", "k2")
    assert killed.returncode == 0, killed.stderr
    out, err = execute.communicate(timeout=60)
    assert execute.returncode == 7, err
    assert "killed" in out
    assert writes(env) == ["w1"]
    shown = json.loads(flowrun("show", "k2", "--output", "json").stdout)
    assert shown["status"] == "killed"
    assert shown["nodes"]["wait"]["status"] == "killed"
    assert "w2" not in shown["nodes"]


@pytest.mark.slow
def test_sigkill_the_worker_mid_run_another_finishes_with_one_effect_per_write(
    on_both: str, flowrun: Flowrun, workers: Workers, env: dict[str, str]
) -> None:
    first = workers.start()
    execute = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "execute", str(SPECS / "crash.yaml"), "--live",
         "--run-id", "c1", "--input-json", '{"seconds": 3}', "--output", "json", *temporal(workers.address, workers.queue)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: any(e["kind"] == "started" for e in tool_log(env)), 60, "the slow node")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    second = workers.start()
    out, err = execute.communicate(timeout=120)
    assert execute.returncode == 0, err
    result = json.loads(out)
    assert result["status"] == "succeeded"
    assert result["outputs"] == {"last": "w2"}
    log = tool_log(env)
    # each intended write happened exactly once; the lost read ran again on the second worker
    assert writes(env) == ["w1", "w2"]
    assert [e["pid"] for e in log if e["kind"] == "started"] == [first.pid, second.pid]
    assert [e["pid"] for e in log if e["label"] == "w2"] == [second.pid]
    effects = ledger(flowrun, "c1")
    assert [(e["node_id"], e["status"]) for e in effects if e["effect"] == "write"] == [
        ("w1", "done"),
        ("w2", "done"),
    ]


def test_unreachable_server_is_a_clear_error_within_bounded_time(
    flowrun: Flowrun, env: dict[str, str]
) -> None:
    t0 = time.monotonic()
    res = flowrun(
        "execute", str(SPECS / "crash.yaml"), "--input-json", '{"seconds": 0}',
        "--backend", "temporal", "--temporal-address", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert time.monotonic() - t0 < 30
    assert res.returncode == 2, res.stderr
    assert "error: cannot reach a Temporal server at 127.0.0.1:" in res.stderr
    assert "temporal server start-dev" in res.stderr
    assert "Traceback" not in res.stderr
    assert flowrun("runs").stdout.strip() == "no runs"


def test_without_the_temporal_extra_the_message_names_it(env: dict[str, str]) -> None:
    code = (
        "import sys; sys.modules['temporalio'] = None; sys.argv = ['flowrun'] + sys.argv[1:]; "
        "from runner.cli import main; main()"
    )
    for args in (
        [
            "execute",
            str(SPECS / "crash.yaml"),
            "--backend",
            "temporal",
            "--input-json",
            '{"seconds": 0}',
        ],
        ["worker"],
    ):
        res = subprocess.run(
            [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert res.returncode == 2, res.stderr
        assert "pip install 'flowrun[temporal]'" in res.stderr
        assert "Traceback" not in res.stderr
    local = subprocess.run(
        [sys.executable, "-c", code, "execute", str(SPECS / "crash.yaml"), "--live", "--input-json", '{"seconds": 0}'],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr  # the local backend needs no Temporal


@pytest.mark.slow
def test_with_no_worker_execute_waits_and_says_what_to_start(
    env: dict[str, str], temporal_address: str, task_queue: str
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "execute", str(SPECS / "crash.yaml"),
         "--input-json", '{"seconds": 0}', *temporal(temporal_address, task_queue + "-nobody")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, err = proc.communicate(timeout=25)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert "note: no worker has taken run flowrun-" in err
    assert f"flowrun worker --task-queue {task_queue}-nobody` (still waiting)" in err
