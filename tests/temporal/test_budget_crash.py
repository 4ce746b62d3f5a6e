"""Budgets across a crash on Temporal: SIGKILL the worker in the middle of a parallel fan-out of
model calls; Temporal runs the node again on another worker, which counts what the dead one
reserved or billed (the run's spend rows in the store) and never passes the cap; on both stores."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.durable.test_budget_crash import _price, fan_out, spend_holds
from tests.stores import query
from tests.temporal.conftest import ROOT, Flowrun, Workers, wait_for


def reserved_calls(store: str, run_id: str) -> int:
    import psycopg

    try:
        return int(query(store, "SELECT COUNT(*) FROM spend WHERE run_id = ?", run_id)[0][0])
    except (sqlite3.Error, psycopg.Error):  # the store is not created (or migrated) yet
        return 0


@pytest.mark.slow
def test_sigkill_the_worker_mid_fan_out_the_retry_never_passes_max_llm_calls(
    on_both: str, flowrun: Flowrun, workers: Workers, env: dict[str, str], tmp_path: Path
) -> None:
    cap = 10
    spec, responses = fan_out(tmp_path, f"{{max_llm_calls: {cap}}}", latency_s=2.0)
    first = workers.start()
    execute = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "execute", str(spec), "--responses", str(responses),
         "--run-id", "b1", "--output", "json", "--backend", "temporal",
         "--temporal-address", workers.address, "--task-queue", workers.queue],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # four calls at a time, two seconds each: with six reserved, the second four are in flight
    store = env["FLOWRUN_STORE"]
    wait_for(lambda: reserved_calls(store, "b1") >= 6, 120, "six model calls reserved")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    before = reserved_calls(store, "b1")
    workers.start()
    out, err = execute.communicate(timeout=300)
    assert execute.returncode == 4, err  # budget_exceeded
    reported = json.loads(out)
    assert reported["status"] == "budget_exceeded"
    shown = flowrun("show", "b1", "--output", "json")
    traced = flowrun("trace", "b1", "--output", "json")
    assert shown.returncode == traced.returncode == 0, shown.stderr + traced.stderr
    shown_run = json.loads(shown.stdout)
    rows = spend_holds(shown_run, json.loads(traced.stdout))
    # the retried node counted the dead worker's calls: it made only what the cap had left
    assert before < len(rows) <= cap
    assert shown_run["totals"]["llm_calls"] == len(rows) == reported["totals"]["llm_calls"]
    assert reported["totals"]["cost_usd"] == pytest.approx(shown_run["totals"]["cost_usd"])
    assert "max_llm_calls 10 reached" in shown_run["nodes"]["each"]["error"]


@pytest.mark.slow
def test_calls_cut_off_by_a_kill_count_in_the_run_spend(
    flowrun: Flowrun, workers: Workers, env: dict[str, str], tmp_path: Path
) -> None:
    # the first four answers take a minute: `flowrun kill` cancels the workflow and the node's
    # activity with them in flight; the provider may have billed them
    spec, responses = fan_out(tmp_path, "{max_llm_calls: 20}", latency_s=60)
    workers.start()
    execute = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "execute", str(spec), "--responses", str(responses),
         "--run-id", "k1", "--output", "json", "--backend", "temporal",
         "--temporal-address", workers.address, "--task-queue", workers.queue],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    store = env["FLOWRUN_STORE"]
    wait_for(lambda: reserved_calls(store, "k1") >= 4, 120, "four model calls in flight")
    killed = flowrun("kill", "k1")
    assert killed.returncode == 0, killed.stderr
    out, err = execute.communicate(timeout=120)
    assert execute.returncode == 7, err  # killed
    shown = json.loads(flowrun("show", "k1", "--output", "json").stdout)
    assert shown["status"] == "killed"
    rows = shown["model_calls"]
    assert len(rows) == 4 and {r["status"] for r in rows} <= {"cancelled", "open"}
    _, reserved = _price()
    assert shown["totals"]["llm_calls"] == 4
    assert shown["totals"]["cost_usd"] == pytest.approx(4 * reserved)
    # `execute` reports the same spend as the store's record
    totals = json.loads(out)["totals"]
    assert (totals["llm_calls"], totals["cost_usd"]) == (4, pytest.approx(4 * reserved))
