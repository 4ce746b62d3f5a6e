"""MCP tests start real servers: mcp-server-git, and mcp_fake_server.py (the SDK's low-level Server).

Every wait is bounded: server timeouts in the specs, and a timeout on every subprocess.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from runner.cli import cli
from runner.engine.context import Envelope
from runner.engine.results import RunResult
from runner.engine.run import execute
from runner.engine.services import MemoryServices
from runner.engine.telemetry import Telemetry
from runner.plan.compile import compile_plan
from runner.plan.model import Plan
from runner.spec import load_spec

HERE = Path(__file__).resolve().parent
FAKE = HERE / "mcp_fake_server.py"
# a loaded 2-core machine takes seconds to start a Python MCP server; calls get their own bound
START_TIMEOUT = "60s"


class Traced(Telemetry):
    """No spans, but a trace id: live writes are refused in runs whose calls have none."""

    def trace_id(self, ctx: Any) -> str | None:
        return "0" * 31 + "1"


class DurableMemory(MemoryServices):
    """In-memory services that claim durability, so live writes may run in-process."""

    durable = True


def flowrun(*args: str) -> Result:
    """The real `flowrun` command, in-process (exit code, stdout and stderr)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def fake_server(tmp_path: Path, variant: str = "first") -> str:
    """The `mcp_servers` entry of the fake server, as YAML flow text."""
    cmd = json.dumps([sys.executable, str(FAKE), str(tmp_path / "notes.jsonl")])
    env = f"{{FAKE_MCP_VARIANT: {variant}}}"
    return f"{{command: {cmd}, env: {env}, timeout: {START_TIMEOUT}}}"


def write_spec(tmp_path: Path, text: str, name: str = "flow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def lock(spec: Path) -> None:
    res = flowrun("tools", "lock", str(spec))
    assert res.exit_code == 0, res.output


def run_spec(
    spec: Path,
    inputs: dict[str, Any] | None = None,
    *,
    live: bool = False,
    scopes: tuple[str, ...] = (),
) -> tuple[Plan, RunResult]:
    plan = compile_plan(load_spec(spec))
    svc = DurableMemory()
    env = Envelope(live=live, scopes=scopes, actor="tester")

    async def go() -> RunResult:
        return await asyncio.wait_for(
            execute(plan, inputs or {}, services=svc, envelope=env, telemetry=Traced()),
            timeout=180,
        )

    return plan, asyncio.run(go())


def starts(tmp_path: Path) -> list[str]:
    log = tmp_path / "starts.log"
    return log.read_text(encoding="utf-8").splitlines() if log.is_file() else []


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    return tmp_path / "notes.jsonl"
