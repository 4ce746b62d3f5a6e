"""Processes racing for one idempotency key, on SQLite and on PostgreSQL: one write happens."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.durable.conftest import ROOT, process_env, tool_log

SPEC = """apiVersion: flowrun/v1
kind: Workflow
metadata: {name: charge}
policy_default: {write: allow}
tools:
  hold: {impl: tests.durable.dtools:hold}
  charge:
    impl: tests.durable.dtools:effect
    effect: write
    idempotency_key: "${{ 'charge:' + args.label }}"
nodes:
  wait: {tool: hold, args: {label: wait}}
  ok: {gate: [{check: "nodes.wait.output.n > 0", message: held}], needs: [wait]}
  w: {tool: charge, needs: [ok], args: {label: order-1}}
"""
PROCESSES = 6
DEADLINE_S = 120.0


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_runs_racing_for_one_key_write_once(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = process_env(tmp_path, DTOOLS_LOG=str(tmp_path / "dtools.log"))
    if kind == "postgres":
        env.update(
            FLOWRUN_STORE=str(request.getfixturevalue("pg_url")),
            FLOWRUN_STORE_DIR=str(tmp_path / "local"),
            HOME=str(tmp_path / "home"),
        )
    spec = tmp_path / "charge.yaml"
    spec.write_text(SPEC)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runner.cli",
                "execute",
                str(spec),
                "--live",
                "--output",
                "json",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    # every run waits in `wait` until all of them do; then they reach the write together
    deadline = time.monotonic() + DEADLINE_S
    while sum(1 for e in tool_log(env) if e.get("kind") == "started") < PROCESSES:
        assert time.monotonic() < deadline, "the runs never all started"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    Path(env["DTOOLS_LOG"] + ".go").touch()
    outs = [p.communicate(timeout=DEADLINE_S) for p in procs]
    writes = [e for e in tool_log(env) if e.get("kind") == "write"]
    assert len(writes) == 1, writes
    statuses = sorted(json.loads(out)["status"] for out, _ in outs)
    assert set(statuses) <= {"succeeded", "escalated"}, [err[-400:] for _, err in outs]
    assert all("Traceback" not in err for _, err in outs)
