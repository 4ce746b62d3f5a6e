"""Approve, reject and kill a Temporal run from the console's and MCP's door (runner.runs).

The console side is in tests/web/test_console_temporal.py; here an MCP client decides runs
that `flowrun execute --backend temporal` started: the decision reaches the workflow.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.temporal.conftest import ROOT, SPECS, Flowrun, Workers, tool_log

pytestmark = pytest.mark.slow

SPEC = str(SPECS / "approve.yaml")


def _start(flowrun: Flowrun, workers: Workers, run_id: str) -> None:
    started = flowrun(
        "execute", SPEC, "--live", "--run-id", run_id, "--output", "json",
        "--backend", "temporal", "--temporal-address", workers.address,
        "--task-queue", workers.queue,
    )  # fmt: skip
    assert started.returncode == 6, started.stderr


def test_mcp_approve_reject_and_kill_temporal_runs(
    flowrun: Flowrun, workers: Workers, env: dict[str, str], tmp_path: Path
) -> None:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    workers.start()
    for run_id in ("m-ok", "m-no", "m-kill"):
        _start(flowrun, workers, run_id)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "runner.cli", "mcp", "serve", SPEC, "--operate", "--stdio"],
        env=env,
        cwd=str(ROOT),
    )

    async def call(c: Any, name: str, **arguments: Any) -> Any:
        got = await c.call_tool(name, arguments)
        assert not got.is_error, got.content
        return got.structured_content

    async def go() -> dict[str, Any]:
        with (tmp_path / "serve-stderr.txt").open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=120) as c:
                return {
                    "ok": await call(
                        c,
                        "flowrun.approve",
                        run_id="m-ok",
                        node="ok",
                        by="alice",
                        decision={"note": "fast"},
                    ),
                    "no": await call(
                        c, "flowrun.reject", run_id="m-no", node="ok", by="bob", reason="nope"
                    ),
                    "kill": await call(c, "flowrun.kill", run_id="m-kill", by="ops"),
                    "undo": await call(c, "flowrun.undo", run_id="m-ok", by="ops"),
                }

    out = asyncio.run(asyncio.wait_for(go(), timeout=300))
    assert out["ok"]["status"] == "succeeded" and out["ok"]["outputs"] == {"note": "fast"}
    assert out["no"]["status"] == "denied"
    assert out["kill"]["outcome"] == "killed"
    writes = [str(e["label"]) for e in tool_log(env) if e["kind"] == "write"]
    assert writes == ["fast"]
    # undo (after the approved run ended) ran the write's compensation, once
    assert [e["status"] for e in out["undo"]["effects"]] == ["undone"]
    undos = [(e["label"], e["key"]) for e in tool_log(env) if e["kind"] == "undo"]
    written = [e["key"] for e in tool_log(env) if e["kind"] == "write"]
    assert undos == [("fast", written[0])]
    shown = json.loads(flowrun("runs", "--output", "json").stdout)
    assert {r["run_id"]: r["status"] for r in shown} == {
        "m-ok": "succeeded", "m-no": "denied", "m-kill": "killed",
    }  # fmt: skip
