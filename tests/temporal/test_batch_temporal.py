"""`flowrun batch --backend temporal` (issue 24): a batch of workflow starts on a real dev
server, run by a `flowrun worker`; the batch process SIGKILLed mid-way and resumed: every line
ends once, no effect twice."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.batch.test_batch import SPEC, data, items, log, results, rows
from tests.bench.bench_ratelimit import provider, provider_spec
from tests.temporal.conftest import ROOT, Flowrun, Workers, wait_for

pytestmark = pytest.mark.slow


def _where(workers: Workers) -> list[str]:
    return ["--backend", "temporal", "--temporal-address", workers.address,
            "--task-queue", workers.queue]  # fmt: skip


def test_a_batch_of_temporal_runs_is_bounded_and_resumes_after_a_kill(
    flowrun: Flowrun, workers: Workers, env: dict[str, str], tmp_path: Path
) -> None:
    # the worker and the batch share the tools' log (tests/batch/btools.py)
    env.update(BTOOLS_LOG=str(tmp_path / "btools.log"), BTOOLS_TARGET="2", BTOOLS_TOTAL="5")
    workers.start()
    path = data(tmp_path, [*items(2), "{not json", *items(5)[2:]])
    # the batch process is killed once two lines are inside their workflows on the worker
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "batch", str(SPEC), "--data", path, "--live",
         "--concurrency", "2", "--batch-id", "bt", "--output", "json", *_where(workers)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(
            lambda: sum(e["kind"] == "enter" for e in log(env)) >= 2 or proc.poll() is not None,
            300,
            "two lines inside their workflows",
        )
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    listed = json.loads(flowrun("batches", "--output", "json").stdout)
    assert listed[0]["status"] == "interrupted"
    # the two workflows go on without the batch; resuming follows them and starts the rest
    resumed = flowrun("batch", "--resume", "bt", "--output", "json", timeout=600)
    assert resumed.returncode == 1, resumed.stderr  # the bad line failed, alone
    got = {r["line"]: r for r in results(resumed)}
    assert sorted(got) == [1, 2, 3, 4, 5, 6]
    assert got[3]["status"] == "failed" and got[3]["reason"].startswith("bad input: not JSON")
    ok = [n for n in (1, 2, 4, 5, 6) if got[n]["status"] == "succeeded"]
    assert ok == [1, 2, 4, 5, 6], resumed.stderr
    assert {got[n]["outputs"]["item"] for n in ok} == {f"i{k}" for k in range(1, 6)}
    writes = [e["item"] for e in log(env) if e["kind"] == "write"]
    assert sorted(writes) == [f"i{k}" for k in range(1, 6)]  # each effect once
    inside = peak = 0
    for e in log(env):
        if e["kind"] in ("enter", "exit"):
            inside += 1 if e["kind"] == "enter" else -1
            peak = max(peak, inside)
    assert peak == 2  # --concurrency bounds the workflows in flight, across the resume too
    runs: list[dict[str, Any]] = json.loads(flowrun("runs", "--output", "json").stdout)
    assert sorted(r["run_id"] for r in runs) == [f"bt.{n}" for n in (1, 2, 4, 5, 6)]
    placed = {
        json.loads(o)["backend"] for (o,) in rows(env["FLOWRUN_STORE"], "SELECT options FROM runs")
    }
    assert placed == {"temporal"}  # every line's run is a workflow
    # resuming a finished batch starts nothing
    again = flowrun("batch", "--resume", "bt", "--output", "json")
    assert [r["status"] for r in results(again)] == [got[n]["status"] for n in range(1, 7)]
    assert len([e for e in log(env) if e["kind"] == "write"]) == 5


def test_no_temporal_server_is_exit_2_with_nothing_recorded(
    flowrun: Flowrun, tmp_path: Path, env: dict[str, str]
) -> None:
    from tests.temporal.conftest import free_port

    path = data(tmp_path, items(2))
    proc = flowrun(
        "batch", str(SPEC), "--data", path, "--backend", "temporal",
        "--temporal-address", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "cannot reach a Temporal server" in proc.stderr and "Traceback" not in proc.stderr
    store = env["FLOWRUN_STORE"]
    assert not Path(store).exists() or not rows(store, "SELECT * FROM batches")


def test_a_temporal_batch_at_the_rate_limit_finishes_every_line(
    flowrun: Flowrun, workers: Workers, env: dict[str, str], tmp_path: Path
) -> None:
    workers.start()
    lines = 6
    path = data(tmp_path, [json.dumps({"ticket_id": "T-1001"})] * lines)
    with provider(rpm=120, latency=0.05) as p:  # two requests a second: 6 at once is too many
        spec = provider_spec(tmp_path / "spec", p.url)
        proc = flowrun(
            "batch", str(spec), "--profile", "provider", "--data", path,
            "--scopes", "refunds:write", "--concurrency", str(lines), "--output", "json",
            *_where(workers),
        )  # fmt: skip
        stats = p.stats()
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in results(proc)] == ["succeeded"] * lines  # the worker waited
    assert stats["by_node"] == {"classify": lines, "propose": lines} and stats["limited"] > 0
    # the batch heard the workers' 429s from the runs' call records
    assert "provider answered 429" in proc.stderr


def test_following_a_run_whose_workflow_never_started_starts_it(
    workers: Workers, env: dict[str, str], tmp_path: Path
) -> None:
    """A batch process that died between a line's run record and its workflow start: the
    resumed batch follows the run (Runs.follow), which starts the workflow, once."""
    import asyncio

    from runner.backends.temporal import TemporalBackend
    from runner.plan.compile import compile_plan
    from runner.runs import Runs, create_run
    from runner.spec import load_spec

    env.update(BTOOLS_LOG=str(tmp_path / "btools.log"))
    workers.start()
    plan = compile_plan(load_spec(SPEC), None)
    runs = Runs.open(env["FLOWRUN_STORE"], create=True)
    try:
        backend = TemporalBackend(address=workers.address, task_queue=workers.queue)
        create_run(
            runs.store, plan, {"item": "i7"}, run_id="orphan", responses_path=None,
            options={"live": True, **backend.placement("orphan")},
        )  # fmt: skip
        result = asyncio.run(runs.follow("orphan"))
        again = asyncio.run(runs.follow("orphan"))  # a finished workflow: followed, not rerun
    finally:
        runs.close()
    assert (result.status, result.outputs) == ("succeeded", {"item": "i7"})
    assert again.status == "succeeded"
    assert [e["item"] for e in log(env) if e["kind"] == "write"] == ["i7"]
