"""Smoke run of the LangGraph comparison at tiny sizes: figures are produced and sane (no timings).

The flowrun side always runs; LangGraph's columns are checked only where it is importable
(the benchmark venv, `tests/bench/run.sh`), never installed by the test suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench import bench_langgraph as bench

ROOT = Path(__file__).resolve().parents[2]
HAS_LANGGRAPH = bench.langgraph_version() is not None


@pytest.fixture
def flowrun(tmp_path: Path) -> bench.Flowrun:
    return bench.Flowrun.make(tmp_path)


def test_full_stack_chain_checkpoints_every_node_and_traces_it(flowrun: bench.Flowrun) -> None:
    per_node = bench.fr_chain(flowrun, 12, full=True)
    assert per_node > 0
    store = flowrun.store
    (run_id,) = [r.run_id for r in store.list_runs()]
    assert store.get_run(run_id).status == "succeeded"
    assert len(store.node_results(run_id)) == 12  # one checkpoint per node
    decisions = store.events(run_id, "policy_decision")
    assert len(decisions) == 12 and {e["data"]["rule"] for e in decisions} == {"default"}
    assert len(store.calls(run_id)) == 12
    transcript = (store.path.parent / "transcripts" / f"{run_id}.jsonl").read_text()
    events = [json.loads(line)["event"] for line in transcript.splitlines()]
    assert events.count("node_finished") == 12


def test_bare_and_concurrent_runs_give_figures(flowrun: bench.Flowrun) -> None:
    assert bench.fr_chain(flowrun, 12, full=False) > 0
    assert bench.fr_runs(flowrun, 8, full=False) > 0
    assert bench.fr_runs(flowrun, 8, full=True) > 0
    assert len(flowrun.store.list_runs(status="succeeded", limit=100)) == 8


def test_fan_out_branches_run_concurrently(flowrun: bench.Flowrun) -> None:
    # 10 branches of 0.2 s: one after another would be >= 10x the critical path
    for full in (True, False):
        assert 1.0 <= bench.fr_fanout(flowrun, 10, full=full) < 5.0
    assert 1.0 <= bench.asyncio_fanout(10) < 5.0


def test_validation_figure_is_for_a_spec_that_compiles(flowrun: bench.Flowrun) -> None:
    assert bench.fr_validate(flowrun, 60) > 0


def test_waiting_runs_are_persisted_in_the_store(tmp_path: Path) -> None:
    data = bench.memory_flowrun(10, tmp_path)
    assert data["persisted"] == 10
    assert set(data) == {"held_kib", "rss_kib", "persisted"}


@pytest.mark.skipif(not HAS_LANGGRAPH, reason="LangGraph is installed only in the bench venv")
def test_langgraph_side_runs_the_same_shapes() -> None:
    assert bench.lg_chain(12, full=True) > 0
    assert bench.lg_runs(8, full=True) > 0
    assert 1.0 <= bench.lg_fanout(10, full=True) < 5.0
    assert bench.memory_langgraph(10)["persisted"] == 0


@pytest.mark.slow
def test_the_command_prints_one_table_with_every_benchmark() -> None:
    args = [sys.executable, "tests/bench/bench_langgraph.py", "--small", "--repeat", "1", "--json"]
    if not HAS_LANGGRAPH:
        args.append("--no-langgraph")
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    *table, last = proc.stdout.strip().splitlines()
    rows = json.loads(last)
    names = [r["name"] for r in rows]
    assert len(names) == 11
    for word in ("chain", "concurrent runs", "fan-out", "validate", "waiting for approval"):
        assert any(word in n for n in names), word
        assert any(word in line for line in table), word
    assert all(r["flowrun"] is not None and r["flowrun"] >= 0 for r in rows)
    persisted = next(r for r in rows if "persisted" in r["name"])
    assert persisted["flowrun"] == 20
    floor = next(r for r in rows if "no engine" in r["name"])
    assert 1.0 <= floor["flowrun"] < 5.0 and floor["langgraph"] is None
    if HAS_LANGGRAPH:
        assert all(r["langgraph"] is not None for r in rows if r is not floor)


@pytest.mark.slow
def test_the_cli_bench_prints_every_issue_26_target() -> None:
    args = [sys.executable, "tests/bench/bench_cli.py", "--small", "--repeat", "1", "--json"]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for row in ("flowrun --help", "validate support_refund.yaml", "validate 200-node spec"):
        assert report[row]["median_s"] > 0 and report[row]["ratio_to_python"] > 0, row
    assert report["execute --responses: to first node"]["median_s"] > 0
    per_node = report["execute per node (100 - 1 nodes)"]
    assert per_node["in_process_full_us"] > 0 and isinstance(per_node["median_us"], float)
    assert len(report["targets_met"]) == 5


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_store_benchmark_runs_on_both_stores(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.store import open_store
    from tests.bench import bench_core, bench_store

    (tmp_path / "bench_tools.py").write_text(bench_core.TOOLS)
    monkeypatch.syspath_prepend(str(tmp_path))
    if kind == "postgres":
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.setenv("FLOWRUN_STORE_DIR", str(tmp_path / "local"))
        target = str(request.getfixturevalue("pg_url"))
    else:
        target = str(tmp_path / "s" / "flowrun.db")
    store = open_store(target)
    try:
        assert bench_store.per_node_us(store, tmp_path, 5) > 0
        assert bench_store.runs_per_s(store, tmp_path, 3) > 0
        assert len(store.list_runs(limit=10)) == 3 + 3  # every run recorded
    finally:
        store.close()
