"""Ask the servers: write a spec's MCP lock (`flowrun tools lock`), or check it (`--check-mcp`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from runner.errors import Diagnostic
from runner.mcp.lock import Lock, identity, lock_path, tool_digest, used_tools
from runner.plan.rules.mcp import (
    LOCK_STALE,
    UNKNOWN_SERVER,
    UNKNOWN_TOOL,
    UNREACHABLE,
    did_you_mean,
)
from runner.spec import LoadedSpec


async def _listing(loaded: LoadedSpec, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(server identity as it reports itself, tools by name) of one server of the spec."""
    from runner.mcp.client import connect, list_tools, server_identity

    server = loaded.spec.mcp_servers[name]
    async with connect(server, loaded.directory, name=name) as client:
        return server_identity(client), await list_tools(client)


def _tool_path(loaded: LoadedSpec, contract_name: str) -> tuple[str, ...]:
    c = loaded.spec.tools[contract_name]
    return ("tools", contract_name, "tool" if c.tool is not None else "mcp")


async def ask_servers(
    loaded: LoadedSpec,
) -> tuple[dict[str, tuple[dict[str, Any], dict[str, Any]]], list[Diagnostic]]:
    """Every used server's listing, and diagnostics for servers that cannot be reached."""
    from runner.mcp.client import McpConnectError, server_timeout

    src, spec = loaded.source, loaded.spec
    diags: list[Diagnostic] = []
    listings: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for server_name, uses in used_tools(spec).items():
        if server_name not in spec.mcp_servers:
            diags.append(
                src.diag(
                    ("tools", uses[0][0], "mcp"),
                    UNKNOWN_SERVER,
                    f"tool {uses[0][0]!r} names MCP server {server_name!r}, which `mcp_servers` "
                    "does not define",
                    hint=did_you_mean(server_name, spec.mcp_servers),
                )
            )
            continue
        limit = server_timeout(spec.mcp_servers[server_name])
        try:
            listings[server_name] = await asyncio.wait_for(_listing(loaded, server_name), limit)
        except (McpConnectError, TimeoutError, OSError) as e:
            message = str(e) or (
                f"MCP server {server_name!r} did not start and list its tools within {limit:g}s"
            )
            diags.append(src.diag(("mcp_servers", server_name), UNREACHABLE, message, key=True))
    return listings, diags


async def make_lock(loaded: LoadedSpec) -> tuple[Lock | None, list[Diagnostic]]:
    """The lock for a spec from its live servers, or the problems that prevent writing it."""
    spec, src = loaded.spec, loaded.source
    listings, diags = await ask_servers(loaded)
    servers: dict[str, dict[str, Any]] = {}
    for server_name, uses in used_tools(spec).items():
        if server_name not in listings:
            continue
        info, tools = listings[server_name]
        locked: dict[str, Any] = {}
        for contract_name, tool in uses:
            if tool not in tools:
                diags.append(
                    src.diag(
                        _tool_path(loaded, contract_name),
                        UNKNOWN_TOOL,
                        f"MCP server {server_name!r} lists no tool {tool!r}",
                        hint=did_you_mean(tool, tools)
                        or f"its tools: {', '.join(sorted(tools)) or '(none)'}",
                    )
                )
                continue
            locked[tool] = tools[tool]
        servers[server_name] = {
            "identity": identity(spec.mcp_servers[server_name]),
            "server": info,
            "tools": locked,
        }
    if diags:
        return None, diags
    path = lock_path(Path(loaded.path))
    return Lock(path=path, spec=spec.metadata.name, servers=servers), []


def _changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    from runner.mcp.lock import hints

    parts = []
    for key in ("inputSchema", "outputSchema"):
        if old.get(key) != new.get(key):
            parts.append(key)
    ho, hn = hints(old), hints(new)
    parts += [f"{k} {ho[k]} → {hn[k]}" for k in ho if ho[k] != hn[k]]
    return ", ".join(parts)


async def check_lock(loaded: LoadedSpec, lock: Lock) -> list[Diagnostic]:
    """`--check-mcp`: the lock against the reachable servers; every difference is a problem."""
    src, spec = loaded.source, loaded.spec
    listings, diags = await ask_servers(loaded)
    for server_name, uses in used_tools(spec).items():
        if server_name not in listings:
            continue
        _, tools = listings[server_name]
        for contract_name, tool in uses:
            old = lock.tool(server_name, tool)
            new = tools.get(tool)
            if old is None:
                continue  # reported offline (unknown-mcp-tool)
            if new is None:
                message = f"MCP server {server_name!r} no longer lists tool {tool!r}"
            elif tool_digest(old) != tool_digest(new):
                message = (
                    f"MCP tool {tool!r} of server {server_name!r} changed since the lock: "
                    + _changed(old, new)
                )
            else:
                continue
            diags.append(
                src.diag(
                    _tool_path(loaded, contract_name),
                    LOCK_STALE,
                    message,
                    hint=f"run `flowrun tools lock {loaded.path}` and review the diff",
                )
            )
    return diags
