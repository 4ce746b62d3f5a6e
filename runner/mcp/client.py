"""Connect to one MCP server through the official `mcp` SDK: a command over stdio, or a URL."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from runner.spec.models import McpServer

DEFAULT_TIMEOUT = 30.0  # seconds for start-up and for each call, unless the spec says otherwise


class McpConnectError(Exception):
    """A server that could not be started or reached, or that broke off the handshake."""


def server_timeout(server: McpServer) -> float:
    return server.timeout if server.timeout is not None else DEFAULT_TIMEOUT


def describe(server: McpServer) -> str:
    if server.url is not None:
        return server.url
    return " ".join(server.command or [])


def _params(server: McpServer, spec_dir: Path) -> Any:
    from mcp import StdioServerParameters

    assert server.command is not None
    cwd = spec_dir / server.cwd if server.cwd is not None else spec_dir
    return StdioServerParameters(
        command=server.command[0],
        args=list(server.command[1:]),
        env={**_inherited_env(), **server.env},
        cwd=str(cwd),
    )


def _inherited_env() -> dict[str, str]:
    """PATH and the virtualenv, so `python -m ...` finds the same interpreter's packages."""
    keep = ("PATH", "VIRTUAL_ENV", "PYTHONPATH", "HOME", "LANG", "TMPDIR")
    return {k: os.environ[k] for k in keep if k in os.environ}


def _tail(f: Any, limit: int = 600) -> str:
    try:
        f.seek(0)
        text: str = f.read()
    except (OSError, ValueError):
        return ""
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return " | ".join(lines[-3:])[-limit:]


@contextlib.asynccontextmanager
async def connect(server: McpServer, spec_dir: Path, *, name: str) -> AsyncIterator[Any]:
    """An entered `mcp.Client`. Enter and leave it in one task (anyio scopes are task-bound).

    Start-up is not bounded here (a cancel scope around the SDK's task groups would corrupt
    them): callers bound the whole task instead (pool.py, locking.py). A stdio server's stderr
    goes to a temporary file; its last lines explain a server that would not start.
    """
    from mcp import Client
    from mcp.client.stdio import stdio_client

    errlog = None
    target: Any = server.url
    if server.url is None:
        errlog = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        target = stdio_client(_params(server, spec_dir), errlog=errlog)
    client = Client(target, read_timeout_seconds=server_timeout(server), cache=None)
    entered = False
    try:
        async with client:
            entered = True
            yield client
    except Exception as e:  # spawn errors, a process that exits, a refused connection...
        if entered:
            raise
        said = _tail(errlog) if errlog is not None else ""
        raise McpConnectError(
            f"MCP server {name!r} ({describe(server)}) could not be started or reached: "
            f"{_reason(e)}" + (f"; its stderr: {said}" if said else "")
        ) from None
    finally:
        if errlog is not None:
            errlog.close()


def _reason(e: BaseException) -> str:
    """The innermost message of an exception group (anyio wraps task failures)."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]
    text = str(e) or type(e).__name__
    return f"{type(e).__name__}: {text}" if text != type(e).__name__ else text


async def list_tools(client: Any) -> dict[str, dict[str, Any]]:
    """Every tool of a connected server, as lock entries (name → description, schemas, hints)."""
    out: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    for _ in range(100):  # pages; a server that pages forever is cut off
        page = await client.list_tools(cursor=cursor)
        for tool in page.tools:
            out[tool.name] = tool_entry(tool)
        cursor = page.next_cursor
        if cursor is None:
            break
    return out


def tool_entry(tool: Any) -> dict[str, Any]:
    ann = tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations else {}
    ann.pop("title", None)
    return {
        "description": tool.description,
        "inputSchema": tool.input_schema,
        "outputSchema": tool.output_schema,
        "annotations": ann,
    }


def server_identity(client: Any) -> dict[str, Any]:
    info = client.server_info
    if info is None:
        return {}
    return {"name": info.name, "version": info.version}
