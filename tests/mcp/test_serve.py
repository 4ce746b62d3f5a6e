"""`flowrun mcp serve`: a workflow as an MCP tool, called by the `mcp` SDK client (stdio, HTTP)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.mcp.conftest import flowrun

pytestmark = pytest.mark.slow  # a flowrun process per test

HERE = Path(__file__).resolve().parent
SPEC = HERE / "served.yaml"
RESPONSES = HERE / "served_responses.jsonl"
_SCRIPT = Path(sys.executable).parent / "flowrun"
FLOWRUN = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "runner.cli"]


def serve_args(store: Path, *extra: str) -> list[str]:
    return ["mcp", "serve", str(SPEC), "--responses", str(RESPONSES), "--store", str(store), *extra]


@pytest.fixture
def filed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "filed.jsonl"
    monkeypatch.setenv("MCP_STOOLS_LOG", str(log))
    return log


async def exercise(client: Any) -> dict[str, Any]:
    """What both transports must show: the tool, a dry run, a waiting run, a bad input."""
    tools = (await client.list_tools()).tools
    assert [t.name for t in tools] == ["note-taker"]
    tool = tools[0]
    assert tool.input_schema["required"] == ["text", "amount"]
    assert tool.input_schema["properties"]["amount"] == {"type": "number"}
    assert tool.description.startswith("Label a note and file it")
    assert tool.annotations.destructive_hint is True  # the spec has a write tool
    assert tool.annotations.read_only_hint is False
    small = await client.call_tool("note-taker", {"text": "refund please", "amount": 5})
    assert not small.is_error, small.content
    big = await client.call_tool("note-taker", {"text": "big refund", "amount": 50})
    assert not big.is_error, big.content
    bad = await client.call_tool("note-taker", {"text": "no amount"})
    assert bad.is_error
    assert "'amount' is a required property" in bad.content[0].text
    return {"small": small.structured_content, "big": big.structured_content}


def check_outcomes(out: dict[str, Any], store: Path, filed: Path) -> None:
    small, big = out["small"], out["big"]
    assert small["status"] == "succeeded"
    assert small["outputs"] == {"label": "billing", "filed": False}  # dry run: the preview
    assert not filed.exists()  # nothing was written
    assert big["status"] == "waiting"
    assert big["outputs"] == {}
    assert "waits for approval" in big["reason"]
    # both are normal runs in the store
    shown = flowrun("show", small["run_id"], "--store", str(store))
    assert shown.exit_code == 0, shown.output
    assert "succeeded" in shown.output
    inbox = flowrun("inbox", "--store", str(store))
    assert big["run_id"] in inbox.output


def test_served_over_stdio(tmp_path: Path, filed: Path) -> None:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    store = tmp_path / "runs.db"
    params = StdioServerParameters(
        command=FLOWRUN[0],
        args=[*FLOWRUN[1:], *serve_args(store, "--stdio", "--actor", "ide-agent")],
        env={"MCP_STOOLS_LOG": str(filed), "PATH": os.environ.get("PATH", "")},
        cwd=str(tmp_path),
    )

    async def go() -> dict[str, Any]:
        # errlog given: the SDK's default is whatever sys.stderr was when it was imported
        with (tmp_path / "serve-stderr.txt").open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=90) as c:
                return await exercise(c)

    out = asyncio.run(asyncio.wait_for(go(), timeout=240))
    check_outcomes(out, store, filed)
    shown = flowrun("runs", "--store", str(store), "--output", "json")
    assert shown.exit_code == 0, shown.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_served_over_http(tmp_path: Path, filed: Path) -> None:
    from mcp import Client

    store = tmp_path / "runs.db"
    port = _free_port()
    proc = subprocess.Popen(
        [*FLOWRUN, *serve_args(store, "--http", f"127.0.0.1:{port}")],
        cwd=tmp_path,
        env={**os.environ, "MCP_STOOLS_LOG": str(filed)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not listen in time"
                time.sleep(0.3)

        async def go() -> dict[str, Any]:
            async with Client(f"http://127.0.0.1:{port}/mcp", read_timeout_seconds=90) as c:
                return await exercise(c)

        out = asyncio.run(asyncio.wait_for(go(), timeout=240))
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    check_outcomes(out, store, filed)


def test_serve_rejects_a_bad_spec_before_serving(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: flowrun/v1\nkind: Workflow\nmetadata: {name: x}\nnodes: {}\n")
    res = subprocess.run(
        [*FLOWRUN, "mcp", "serve", str(bad), "--stdio"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 2, res
    assert "bad.yaml:4:8" in res.stderr
    res = subprocess.run(
        [*FLOWRUN, "mcp", "serve", str(SPEC), "--http", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 2
    assert "expected HOST:PORT" in res.stderr


def test_a_served_workflow_is_a_tool_of_another_spec_over_http(tmp_path: Path) -> None:
    """Both ways at once: flowrun serves `doubler` over HTTP; a spec calls it as an MCP tool."""
    port = _free_port()
    proc = subprocess.Popen(
        [*FLOWRUN, "mcp", "serve", str(HERE / "served_read.yaml"), "--http", f"127.0.0.1:{port}"],
        cwd=tmp_path,
        env={**os.environ, "FLOWRUN_STORE": str(tmp_path / "served.db")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not listen in time"
                time.sleep(0.3)
        spec = tmp_path / "caller.yaml"
        spec.write_text(
            f"""apiVersion: flowrun/v1
kind: Workflow
metadata: {{name: caller}}
mcp_servers:
  flows: {{url: "http://127.0.0.1:{port}/mcp", timeout: 60s}}
tools:
  double: {{mcp: flows, tool: doubler}}
nodes:
  twice: {{tool: double, args: {{n: 21}}}}
outputs:
  got: "${{{{ nodes.twice.output.outputs.double }}}}"
  status: "${{{{ nodes.twice.output.status }}}}"
""",
            encoding="utf-8",
        )
        res = flowrun("tools", "lock", str(spec))
        assert res.exit_code == 0, res.output
        assert "flows.doubler: read" in res.output  # readOnlyHint: the spec cannot write
        res = flowrun("execute", str(spec), "--output", "json")
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout)
        assert out["outputs"] == {"got": 42, "status": "succeeded"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
