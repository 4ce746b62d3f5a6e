"""`flowrun batch` through the CLI, as real processes on one store (issue 24)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.durable.conftest import EXAMPLES, REFERENCE, ROOT, process_env

SPEC = Path(__file__).parent / "specs" / "batch_flow.yaml"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return process_env(tmp_path, BTOOLS_LOG=str(tmp_path / "btools.log"))


def flowrun(
    env: dict[str, str], *args: str, crash_at: str | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    e = {**env, **extra}
    if crash_at is not None:
        e["FLOWRUN_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=ROOT,
        env=e,
        capture_output=True,
        text=True,
        timeout=600,
    )


def data(tmp: Path, lines: list[str], name: str = "data.jsonl") -> str:
    p = tmp / name
    p.write_text("".join(line + "\n" for line in lines))
    return str(p)


def results(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc.stdout.splitlines()]


def log(env: dict[str, str]) -> list[dict[str, Any]]:
    p = Path(env["BTOOLS_LOG"])
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def rows(db: str, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchall()


def items(n: int) -> list[str]:
    return [json.dumps({"item": f"i{k}"}) for k in range(1, n + 1)]


def test_a_bad_line_fails_alone_and_every_line_is_a_tagged_run(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = data(tmp_path, [*items(2), "{not json", json.dumps({"item": "nope"}), items(3)[2]])
    proc = flowrun(
        env, "batch", str(SPEC), "--data", path, "--live", "--output", "json",
        "--batch-id", "b1", BTOOLS_TOTAL="4",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # the worst line failed
    got = {r["line"]: r for r in results(proc)}
    assert sorted(got) == [1, 2, 3, 4, 5]
    assert [got[n]["status"] for n in (1, 2, 5)] == ["succeeded"] * 3
    assert got[5]["outputs"] == {"item": "i3"} and got[5]["run_id"] == "b1.5"
    assert got[3]["status"] == "failed" and got[3]["reason"].startswith("bad input: not JSON")
    assert got[4]["status"] == "failed" and "does not match" in got[4]["reason"]
    assert got[3]["run_id"] is None and got[4]["run_id"] is None
    assert "completion 60.0%" in proc.stderr and "2 x failed" not in proc.stderr
    assert "failures by reason" in proc.stderr and "Traceback" not in proc.stderr
    store = env["FLOWRUN_STORE"]
    tagged = sorted(
        (json.loads(o)["batch"], json.loads(o)["line"])
        for (o,) in rows(store, "SELECT options FROM runs")
    )
    assert tagged == [("b1", 1), ("b1", 2), ("b1", 5)]
    assert sorted(e["item"] for e in log(env) if e["kind"] == "write") == ["i1", "i2", "i3"]
    listed = flowrun(env, "batches", "--output", "json")
    (b,) = json.loads(listed.stdout)
    assert (b["batch_id"], b["status"], b["lines"]) == ("b1", "finished", 5)
    assert b["line_statuses"] == {"failed": 2, "succeeded": 3}
    shown = json.loads(flowrun(env, "show", "b1", "--output", "json").stdout)
    assert shown["summary"]["completion_rate"] == 0.6
    assert [i["status"] for i in shown["lines"]] == [got[n]["status"] for n in range(1, 6)]
    text = flowrun(env, "show", "b1")
    assert text.returncode == 0 and "line 3: - failed" in text.stdout
    unknown = flowrun(env, "show", "b9")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: ")
    # --fail-under: the completion rate (3/5) against a threshold, for CI
    again = data(tmp_path, items(6)[4:], "two.jsonl")
    ok = flowrun(env, "batch", str(SPEC), "--data", again, "--fail-under", "0.5", "--live",
                 BTOOLS_TOTAL="2")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "completion 100.0%" in ok.stdout


def test_concurrency_is_bounded(env: dict[str, str], tmp_path: Path) -> None:
    path = data(tmp_path, items(6))
    proc = flowrun(
        env, "batch", str(SPEC), "--data", path, "--concurrency", "2", "--live",
        BTOOLS_TARGET="2", BTOOLS_TOTAL="6",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    inside = peak = 0
    for e in log(env):
        if e["kind"] in ("enter", "exit"):
            inside += 1 if e["kind"] == "enter" else -1
            peak = max(peak, inside)
    assert peak == 2  # never more than the bound, and the bound was reached
    assert sum(1 for e in log(env) if e["kind"] == "write") == 6


def test_csv_columns_are_mapped_and_a_column_the_header_lacks_is_refused(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = data(tmp_path, ["id,name", "i1,a", "i2,b"], "data.csv")
    proc = flowrun(
        env, "batch", str(SPEC), "--data", path, "--map", "item=id", "--live", "--output", "json",
        BTOOLS_TOTAL="2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [(r["line"], r["outputs"]) for r in results(proc)] == [
        (2, {"item": "i1"}),
        (3, {"item": "i2"}),
    ]
    bad = flowrun(env, "batch", str(SPEC), "--data", path, "--map", "item=sku",
                  "--output", "json")  # fmt: skip
    assert bad.returncode == 2, bad.stderr  # every line would lack it: nothing is recorded
    assert "--map: the header of" in bad.stderr and "has no column 'sku'" in bad.stderr
    assert bad.stdout == ""


def test_bad_options_change_nothing(env: dict[str, str], tmp_path: Path) -> None:
    for args in (
        ["batch", str(SPEC)],
        ["batch", str(SPEC), "--data", str(tmp_path / "missing.jsonl")],
        ["batch", str(SPEC), "--data", data(tmp_path, items(1), "x.txt")],
        ["batch", str(SPEC), "--data", data(tmp_path, items(1)), "--map", "item"],
        ["batch", "--resume", "nope"],
        ["batch", str(SPEC), "--resume", "nope"],
    ):
        proc = flowrun(env, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert not Path(env["FLOWRUN_STORE"]).exists() or not rows(
        env["FLOWRUN_STORE"], "SELECT * FROM batches"
    )


def test_the_batch_ceiling_stops_starting_lines(env: dict[str, str], tmp_path: Path) -> None:
    tickets = ["T-1001", "T-1002", "T-1005", "T-1007", "T-1001"]
    path = data(tmp_path, [json.dumps({"ticket_id": t}) for t in tickets])
    proc = flowrun(
        env, "batch", str(REFERENCE), "--data", path, "--concurrency", "1",
        "--max-usd", "0.005", "--responses", str(EXAMPLES / "responses" / "refund_granted.jsonl"),
        "--scopes", "refunds:write", "--output", "json",
    )  # fmt: skip
    got = results(proc)
    ran = [r for r in got if r["run_id"] is not None]
    assert len(ran) == 2, proc.stderr  # $0.0031 each: the second starts at $0.0031 < $0.005
    assert all(r["cost_usd"] > 0 for r in ran)
    assert [(r["status"], r["reason"]) for r in got[2:]] == [
        ("not_started", "not started: batch ceiling")
    ] * 3
    assert [r["status"] for r in ran] == ["succeeded", "succeeded"]  # dry run: previewed
    assert proc.returncode == 4  # lines not started count as budget_exceeded
    assert rows(env["FLOWRUN_STORE"], "SELECT COUNT(*) FROM runs") == [(2,)]


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_killed_batch_resumes_each_line_once_without_repeating_an_effect(
    env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest, store: str
) -> None:
    if store == "postgres":  # the same guarantee on the other store implementation
        env["FLOWRUN_STORE"] = request.getfixturevalue("pg_url")
    path = data(tmp_path, items(5))
    crashed = flowrun(
        env, "batch", str(SPEC), "--data", path, "--concurrency", "2", "--live",
        "--batch-id", "bk", crash_at="before-effect:act", BTOOLS_TOTAL="5",
    )  # fmt: skip
    assert crashed.returncode == -9, crashed.stderr  # SIGKILLed at the first write's intent
    listed = json.loads(flowrun(env, "batches", "--output", "json").stdout)
    assert listed[0]["status"] == "interrupted"
    resumed = flowrun(env, "batch", "--resume", "bk", "--output", "json", BTOOLS_TOTAL="5")
    assert resumed.returncode == 3, resumed.stderr  # the worst line escalated
    got = results(resumed)
    assert [r["line"] for r in got] == [1, 2, 3, 4, 5]
    # the run cut off between its write's intent and the call does not know whether the write
    # happened: it escalates instead of writing again; every other line succeeds
    assert {r["status"] for r in got} <= {"succeeded", "escalated"}
    assert 1 <= sum(r["status"] == "escalated" for r in got) <= 2  # 2: both intents were in
    listed_runs = json.loads(flowrun(env, "runs", "--output", "json").stdout)
    assert sorted(r["run_id"] for r in listed_runs) == [f"bk.{n}" for n in range(1, 6)]
    writes = [e["item"] for e in log(env) if e["kind"] == "write"]
    assert len(writes) == len(set(writes))  # no effect twice
    assert sorted(writes) == sorted(r["outputs"]["item"] for r in got if r["status"] == "succeeded")
    # resuming a finished batch runs nothing again
    again = flowrun(env, "batch", "--resume", "bk", "--output", "json")
    assert [r["status"] for r in results(again)] == [r["status"] for r in got]
    assert [e["item"] for e in log(env) if e["kind"] == "write"] == writes


def test_waiting_lines_count_as_finished_for_now(env: dict[str, str], tmp_path: Path) -> None:
    path = data(tmp_path, [json.dumps({"ticket_id": t}) for t in ("T-1005", "T-1002")])
    proc = flowrun(
        env, "batch", str(REFERENCE), "--data", path, "--batch-id", "bw",
        "--responses", str(EXAMPLES / "responses" / "refund_needs_approval.jsonl"),
        "--scopes", "refunds:write", "--output", "json",
    )  # fmt: skip
    got = results(proc)
    assert [r["status"] for r in got] == ["waiting", "waiting"], proc.stderr  # $42 > $40
    assert proc.returncode == 6
    assert "waiting for approval (2): bw.1, bw.2" in proc.stderr
    assert "batch bw: 2/2 done" in proc.stderr  # the progress line
    store = env["FLOWRUN_STORE"]
    again = flowrun(env, "batch", "--resume", "bw", "--output", "json")
    assert again.returncode == 6 and [r["status"] for r in results(again)] == ["waiting"] * 2
    assert rows(store, "SELECT COUNT(*) FROM events WHERE type = 'run_resumed'") == [(0,)]
    # the approval is decided as for any run; the batch then shows the line's outcome
    decided = flowrun(env, "approve", "bw.1", "approve", "--by", "lead@acme")
    assert decided.returncode == 0, decided.stderr
    after = flowrun(env, "batch", "--resume", "bw", "--output", "json")
    assert [r["status"] for r in results(after)] == ["succeeded", "waiting"]
