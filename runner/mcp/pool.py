"""The MCP servers of one run: started on first use, reused by every call, stopped at the end.

Each connection lives in its own asyncio task, which enters and leaves the SDK client (anyio
scopes are bound to the task that opened them); calls from node tasks go through it. A server
that does not start, exits mid-run, or does not answer in time fails the calling node with a
typed error (its class name is the span's `error.type`), never a hang: every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.engine.context import NodeFailure
from runner.mcp.contracts import McpTool
from runner.spec.models import McpServer

if TYPE_CHECKING:
    from runner.engine.context import NodeContext

STOP_TIMEOUT = 5.0  # seconds a server gets to shut down when its run ends


class McpStartError(NodeFailure):
    """The server could not be started or reached."""


class McpServerExited(NodeFailure):
    """The server went away while the run was using it."""


class McpTimeout(NodeFailure):
    """The server did not answer a call in time."""


class McpToolError(NodeFailure):
    """The tool answered with an error result, or the server with a protocol error."""


class McpResultInvalid(NodeFailure):
    """The result does not match the tool's outputSchema."""


class McpLockStale(NodeFailure):
    """The running server's tool no longer matches the lock the plan was compiled from."""


async def call_tool(tool: McpTool, ctx: NodeContext, args: dict[str, Any]) -> Any:
    """Call an MCP tool over the run's connection to its server (started on first use)."""
    pool = _POOLS.setdefault(ctx.run.run_id, Pool())
    try:
        conn = await pool.connection(tool)
        return await conn.call(tool, args)
    except (McpStartError, McpToolError, McpLockStale, McpResultInvalid) as e:
        # the call surely did not take effect: a retry may call again (no unknown outcome)
        key = ctx.detail.idempotency_key
        if key is not None:
            ctx.run.services.ledger_failed(f"{tool.name}/{key}", e.message)
        ctx.detail.error_type = type(e).__name__
        raise
    except NodeFailure as e:
        ctx.detail.error_type = type(e).__name__
        raise


@dataclass(eq=False)
class Connection:
    name: str
    server: McpServer
    spec_dir: Path
    client: Any = None
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """The owner task: open the client, list the tools, hold it open until told to stop."""
        from runner.mcp.client import McpConnectError, connect, list_tools

        try:
            async with connect(self.server, self.spec_dir, name=self.name) as client:
                try:
                    self.tools = await list_tools(client)
                except Exception as e:
                    self.error = f"MCP server {self.name!r} did not list its tools: {e}"
                    return
                self.client = client
                self.ready.set()
                await self.stop.wait()
        except McpConnectError as e:
            self.error = str(e)
        except Exception as e:
            self.error = f"MCP server {self.name!r} failed: {type(e).__name__}: {e}"
        finally:
            self.client = None
            if self.error is None:
                self.error = f"MCP server {self.name!r} has stopped"
            self.ready.set()

    @property
    def alive(self) -> bool:
        return self.task is not None and not self.task.done() and self.client is not None

    async def call(self, ref: McpTool, args: dict[str, Any]) -> Any:
        from runner.mcp.lock import tool_digest

        if not self.alive:
            raise McpServerExited(self.error or f"MCP server {self.name!r} is gone", kind="error")
        live = self.tools.get(ref.tool)
        if live is None:
            raise McpLockStale(
                f"MCP server {self.name!r} no longer lists tool {ref.tool!r}"
                " (run `flowrun tools lock` and review the change)",
                kind="config",
            )
        if tool_digest(live) != tool_digest(ref.locked):
            raise McpLockStale(
                f"MCP tool {ref.tool!r} of server {self.name!r} changed since the lock was "
                "written (schema or annotations); run `flowrun tools lock` and review the diff",
                kind="config",
            )
        timeout = ref.call_timeout or _timeout(self.server)
        client = self.client
        call = asyncio.ensure_future(client.call_tool(ref.tool, args, read_timeout_seconds=timeout))
        assert self.task is not None
        done, _ = await asyncio.wait(
            {call, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if call not in done:
            call.cancel()
            with contextlib.suppress(BaseException):
                await call
            if self.task.done():
                raise McpServerExited(
                    f"MCP server {self.name!r} exited during a call of {ref.tool!r}", kind="error"
                )
            raise McpTimeout(
                f"MCP tool {ref.tool!r} of server {self.name!r} did not answer within {timeout:g}s",
                kind="timeout",
            )
        try:
            result = call.result()
        except Exception as e:
            if not self.alive or _closed(e):
                raise McpServerExited(
                    f"MCP server {self.name!r} exited during a call of {ref.tool!r}: {e}",
                    kind="error",
                ) from None
            if isinstance(e, TimeoutError):
                raise McpTimeout(
                    f"MCP tool {ref.tool!r} of server {self.name!r} did not answer within "
                    f"{timeout:g}s",
                    kind="timeout",
                ) from None
            first = (str(e).splitlines() or [""])[0]
            if "Invalid structured content" in first:  # the SDK checks the outputSchema
                raise McpResultInvalid(
                    f"MCP tool {ref.tool!r} of server {self.name!r} returned a result that does "
                    f"not match its outputSchema: {first.partition(': ')[2] or first}",
                    kind="invalid_output",
                ) from None
            raise McpToolError(
                f"MCP tool {ref.tool!r} of server {self.name!r}: {type(e).__name__}: {first}",
                kind="invalid_output" if type(e).__name__ == "ValidationError" else "error",
            ) from None
        return _result_value(self.name, ref, result)


def _closed(e: BaseException) -> bool:
    text = str(e).lower()
    return "connection closed" in text or ("closed" in text and "stream" in text)


def _text(result: Any) -> str:
    return "\n".join(
        getattr(block, "text", "")
        for block in result.content
        if getattr(block, "type", "") == "text"
    )


def _result_value(server: str, ref: McpTool, result: Any) -> Any:
    if result.is_error:
        raise McpToolError(
            f"MCP tool {ref.tool!r} of server {server!r} returned an error: "
            f"{_text(result)[:500] or '(no text)'}",
            kind="error",
        )
    if ref.structured:
        if result.structured_content is None:
            raise McpToolError(
                f"MCP tool {ref.tool!r} of server {server!r} declares an outputSchema but "
                "returned no structuredContent",
                kind="invalid_output",
            )
        return result.structured_content
    return _text(result)


def _timeout(server: McpServer) -> float:
    from runner.mcp.client import server_timeout

    return server_timeout(server)


class Pool:
    """The connections of one run, one per server (keyed by spec folder, name and config)."""

    def __init__(self) -> None:
        self.conns: dict[tuple[str, str, str], Connection] = {}
        self.lock = asyncio.Lock()

    async def connection(self, ref: McpTool) -> Connection:
        async with self.lock:
            conn = self.conns.get(ref.key)
            if conn is None:
                conn = Connection(name=ref.server_name, server=ref.server, spec_dir=ref.spec_dir)
                conn.task = asyncio.get_running_loop().create_task(
                    conn.run(), name=f"mcp:{ref.server_name}"
                )
                self.conns[ref.key] = conn
        # start-up (spawn, handshake, listing) is bounded by the server's timeout
        limit = _timeout(ref.server)
        try:
            async with asyncio.timeout(limit):
                await conn.ready.wait()
        except TimeoutError:
            if conn.error is None:
                conn.error = (
                    f"MCP server {ref.server_name!r} did not start and list its tools "
                    f"within {limit:g}s"
                )
            if conn.task is not None:
                conn.task.cancel()
            raise McpStartError(conn.error, kind="timeout") from None
        if not conn.alive:
            raise McpStartError(conn.error or f"MCP server {ref.server_name!r} is gone")
        return conn

    async def close(self) -> None:
        conns = list(self.conns.values())
        self.conns.clear()
        for conn in conns:
            conn.stop.set()
        tasks = [c.task for c in conns if c.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(BaseException):
                await t


_POOLS: dict[str, Pool] = {}  # run id → the servers that run started


async def close_run_servers(run_id: str) -> None:
    """Stop every MCP server a run started (called by the engine when the run ends)."""
    pool = _POOLS.pop(run_id, None)
    if pool is not None:
        await pool.close()


def running_servers() -> int:
    """How many server connections are open, over all runs (tests use it to see no leak)."""
    return sum(1 for p in _POOLS.values() for c in p.conns.values() if c.alive)
