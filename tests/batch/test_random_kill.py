"""Issue 24's done-when: the batch process killed at a random moment, then resumed: every line
ends once, no effect is repeated. The moment is drawn at random (the number of writes done
before the SIGKILL, printed on failure with its seed) on top of the scheduling's own chance."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.batch.test_batch import SPEC, data, flowrun, items, log, results
from tests.durable.conftest import ROOT

LINES = 8


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    from tests.durable.conftest import process_env

    return process_env(tmp_path, BTOOLS_LOG=str(tmp_path / "btools.log"))


@pytest.mark.slow
@pytest.mark.parametrize(("store", "draw"), [("sqlite", 1), ("sqlite", 2), ("postgres", 1)])
def test_a_batch_killed_at_a_random_moment_resumes_every_line_once(
    env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest, store: str, draw: int
) -> None:
    if store == "postgres":  # the same guarantee on the other store implementation
        env["FLOWRUN_STORE"] = request.getfixturevalue("pg_url")
    seed = random.randrange(1 << 30)
    kill_after = random.Random(seed).randint(1, LINES - 2)  # writes done before the kill
    why = f"seed {seed}: killed after {kill_after} writes"
    path = data(tmp_path, items(LINES))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "batch", str(SPEC), "--data", path, "--live",
         "--concurrency", "3", "--batch-id", "rk", "--output", "json"],
        cwd=ROOT, env={**env, "BTOOLS_TOTAL": str(LINES)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while sum(e["kind"] == "write" for e in log(env)) < kill_after:
            assert proc.poll() is None, f"{why}: the batch ended first: {proc.stderr}"
            assert time.monotonic() < deadline, why
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    before = [e["item"] for e in log(env) if e["kind"] == "write"]
    assert kill_after <= len(before) < LINES, why  # cut off mid-way

    resumed = flowrun(env, "batch", "--resume", "rk", "--output", "json",
                      BTOOLS_TOTAL=str(LINES))  # fmt: skip
    assert resumed.returncode in (0, 3), f"{why}: {resumed.stderr}"
    got = results(resumed)
    assert [r["line"] for r in got] == list(range(1, LINES + 1)), why  # each line, once
    # a run cut off between its write's intent and the call escalates (the write is not
    # idempotent: it may have happened); every other line succeeds
    assert {r["status"] for r in got} <= {"succeeded", "escalated"}, why
    writes = [e["item"] for e in log(env) if e["kind"] == "write"]
    assert len(writes) == len(set(writes)), why  # no effect twice
    done = {r["outputs"]["item"] for r in got if r["status"] == "succeeded"}
    assert done <= set(writes), why
    listed = json.loads(flowrun(env, "runs", "--output", "json").stdout)
    assert sorted(r["run_id"] for r in listed) == sorted(f"rk.{n}" for n in range(1, LINES + 1))
    statuses = {r["run_id"]: r["status"] for r in listed}
    assert all(statuses[r["run_id"]] == r["status"] for r in got), why
