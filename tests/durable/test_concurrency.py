"""Many processes, one store: 16 processes × 50 runs, every run recorded, no lock failures; on a
SQLite file and on a PostgreSQL database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.durable.conftest import BOTH_STORES, ROOT, rows

pytestmark = [pytest.mark.slow, BOTH_STORES]

WORKER = """
import asyncio, sys
from runner.plan.compile import compile_plan
from runner.spec import load_spec
from runner.store import open_store
from runner.backends.local import run_durably
from runner.runs import create_run
from runner.engine.run import new_run_id

async def main(n):
    plan = compile_plan(load_spec(sys.argv[1]))
    store = open_store()
    for _ in range(n):
        run_id = new_run_id()
        create_run(store, plan, {}, run_id=run_id, responses_path=None, options={"live": True})
        result = await run_durably(store, plan, {}, run_id=run_id)
        assert result.status == "succeeded", result.reason
asyncio.run(main(int(sys.argv[2])))
"""

SPEC = """apiVersion: flowrun/v1
kind: Workflow
metadata: {name: busy}
policy_default: {write: allow}
tools:
  step: {impl: tests.durable.dtools:step}
  effect: {impl: tests.durable.dtools:effect, effect: write}
nodes:
  a: {tool: step, args: {label: a}}
  b: {tool: step, args: {label: b}}
  ok: {gate: [{check: "nodes.a.output.n > 0 && nodes.b.output.n > 0", message: ran}]}
  w: {tool: effect, needs: [ok], args: {label: w}}
"""


def test_sixteen_processes_fifty_runs_each(env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "busy.yaml"
    spec.write_text(SPEC)
    env = {**env, "DTOOLS_LOG": str(tmp_path / "log")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(spec), "50"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(16)
    ]
    outcomes = [p.communicate(timeout=600) for p in procs]
    errors = [err for (_, err), p in zip(outcomes, procs, strict=True) if p.returncode != 0]
    assert errors == []
    assert not any("locked" in err for _, err in outcomes)
    assert rows(env["FLOWRUN_STORE"], "SELECT status, COUNT(*) FROM runs GROUP BY status") == [
        ("succeeded", 800)
    ]
    assert rows(env["FLOWRUN_STORE"], "SELECT COUNT(*) FROM node_results") == [(3200,)]
    assert rows(env["FLOWRUN_STORE"], "SELECT COUNT(*) FROM ledger WHERE status = 'done'") == [
        (2400,)
    ]
