"""`flowrun mcp serve --operate`: approve, reject, kill and undo as MCP tools, through runner.runs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # a flowrun process per test

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SPEC = HERE / "served.yaml"
RESPONSES = HERE / "served_responses.jsonl"
OPERATIONS = ["flowrun.approve", "flowrun.reject", "flowrun.kill", "flowrun.undo"]


def server(store: Path, env: dict[str, str], *args: str) -> Any:
    """`flowrun mcp serve --operate` on stdio, importing this checkout's flowrun."""
    from mcp import StdioServerParameters

    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "runner.cli", "mcp", "serve", *args, "--store", str(store), "--stdio"],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env},
        cwd=str(ROOT),
    )


async def call(client: Any, name: str, **arguments: Any) -> Any:
    got = await client.call_tool(name, arguments)
    return got.content[0].text if got.is_error else got.structured_content


def test_operations_on_local_runs_over_stdio(tmp_path: Path) -> None:
    from mcp import Client
    from mcp.client.stdio import stdio_client

    filed = tmp_path / "filed.jsonl"
    store = tmp_path / "runs.db"
    params = server(
        store,
        {"MCP_STOOLS_LOG": str(filed)},
        str(SPEC), "--responses", str(RESPONSES), "--live", "--operate",
    )  # fmt: skip

    async def go() -> dict[str, Any]:
        with (tmp_path / "serve-stderr.txt").open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=90) as c:
                names = [t.name for t in (await c.list_tools()).tools]
                assert names == ["note-taker", *OPERATIONS]
                out: dict[str, Any] = {}
                waiting = [
                    await call(c, "note-taker", text=f"note {i}", amount=50) for i in range(3)
                ]
                assert [w["status"] for w in waiting] == ["waiting"] * 3
                a, j, k = (w["run_id"] for w in waiting)
                out["nobody"] = await call(c, "flowrun.approve", run_id=a, node="approve")
                out["approved"] = await call(c, "flowrun.approve", run_id=a, node="approve", by="lead")  # fmt: skip
                out["again"] = await call(c, "flowrun.approve", run_id=a, node="approve", by="lead")  # fmt: skip
                out["rejected"] = await call(
                    c, "flowrun.reject", run_id=j, node="approve", by="lead", reason="too much"
                )
                out["killed"] = await call(c, "flowrun.kill", run_id=k, by="ops")
                out["undone"] = await call(c, "flowrun.undo", run_id=a, by="ops")
                return out

    out = asyncio.run(asyncio.wait_for(go(), timeout=240))
    assert "'by' is a required property" in out["nobody"]
    assert out["approved"]["decided"] == "approved"
    assert out["approved"]["status"] == "succeeded"
    assert out["approved"]["outputs"] == {"label": "billing", "filed": True}
    assert "already approved by lead" in out["again"]
    assert out["rejected"]["status"] == "denied"
    assert out["killed"]["outcome"] == "killed"
    assert [e["status"] for e in out["undone"]["effects"]] == ["no compensation declared"]
    assert [json.loads(line)["text"] for line in filed.read_text().splitlines()] == ["note 0"]
