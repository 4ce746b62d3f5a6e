"""The MCP lock file next to a spec: what its servers said about the tools the spec uses.

`flowrun tools lock SPEC` writes `<spec stem>.mcp.lock.json`; the compiler reads it, so validating
a spec never starts a server. The lock names its spec and each server's identity (the command
or URL the spec gives), so a lock copied from another spec, or left behind after a server was
swapped, is rejected instead of trusted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.spec.models import McpServer, Spec

LOCK_FORMAT = 1
MCP_DEFAULT_HINTS = {  # what the MCP spec says a tool without annotations may do
    "readOnlyHint": False,
    "destructiveHint": True,
    "idempotentHint": False,
    "openWorldHint": True,
}


class LockError(Exception):
    """A lock file that cannot be read or is not a flowrun MCP lock."""


def lock_path(spec_path: Path) -> Path:
    return spec_path.with_name(f"{spec_path.stem}.mcp.lock.json")


def identity(server: McpServer) -> dict[str, Any]:
    """What makes two server entries the same server (env values are left out: secrets)."""
    if server.url is not None:
        return {"url": server.url}
    out: dict[str, Any] = {"command": list(server.command or [])}
    if server.cwd is not None:
        out["cwd"] = server.cwd
    if server.env:
        out["env"] = sorted(server.env)
    return out


def hints(entry: dict[str, Any]) -> dict[str, bool]:
    """A locked tool's behaviour hints with the MCP defaults filled in."""
    ann = entry.get("annotations") or {}
    out = {k: bool(ann.get(k, v)) for k, v in MCP_DEFAULT_HINTS.items()}
    if out["readOnlyHint"]:
        out["destructiveHint"] = False  # the spec: destructiveHint is meaningful only for writes
    return out


@dataclass(frozen=True)
class Lock:
    path: Path
    spec: str
    servers: dict[str, dict[str, Any]]  # name → {identity, server, tools: {name → entry}}

    def tool(self, server: str, tool: str) -> dict[str, Any] | None:
        entry = self.servers.get(server, {}).get("tools", {}).get(tool)
        return entry if isinstance(entry, dict) else None

    def to_json(self) -> dict[str, Any]:
        return {"flowrun_mcp_lock": LOCK_FORMAT, "spec": self.spec, "servers": self.servers}


def read_lock(path: Path) -> Lock:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as e:
        raise LockError(f"cannot read {path.name}: {e}") from None
    return parse_lock(text, path)


def parse_lock(text: str, path: Path) -> Lock:
    """A lock from its text (read from disk, or from a run's plan bundle)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LockError(f"cannot read {path.name}: {e}") from None
    if (
        not isinstance(data, dict)
        or data.get("flowrun_mcp_lock") != LOCK_FORMAT
        or not isinstance(data.get("spec"), str)
        or not isinstance(data.get("servers"), dict)
    ):
        raise LockError(f"{path.name} is not a flowrun MCP lock (format {LOCK_FORMAT})")
    return Lock(path=path, spec=data["spec"], servers=data["servers"])


def write_lock(lock: Lock) -> None:
    text = json.dumps(lock.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    tmp = lock.path.with_name(lock.path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(lock.path)


def used_tools(spec: Spec) -> dict[str, list[tuple[str, str]]]:
    """server name → [(contract name, MCP tool name)] for every MCP contract of the spec."""
    out: dict[str, list[tuple[str, str]]] = {}
    for name, contract in spec.tools.items():
        if contract.mcp is not None:
            out.setdefault(contract.mcp, []).append((name, contract.tool or name))
    return out


def tool_digest(entry: dict[str, Any]) -> str:
    """A stable text of what matters about a tool (schemas and hints), to compare with a lock."""
    return json.dumps(
        {
            "inputSchema": entry.get("inputSchema"),
            "outputSchema": entry.get("outputSchema"),
            "hints": hints(entry),
        },
        sort_keys=True,
    )


def with_locked_tools(data: Any, spec_path: str, read: Any) -> Any:
    """Spec data whose MCP contracts carry what the lock says (for `flowrun diff`).

    Each `{mcp: ...}` contract gains `locked` (the tool's schemas and hints) and, unless the
    spec sets it, the `effect` its hints give; so a server change that reaches the lock (a
    new argument, a tool turned destructive) shows up as a tool contract change. `read` maps
    a path relative to the spec's folder to its text (the work tree, or a git revision).
    """
    tools = data.get("tools") if isinstance(data, dict) else None
    if not isinstance(tools, dict) or not any(
        isinstance(c, dict) and "mcp" in c for c in tools.values()
    ):
        return data
    text = read(lock_path(Path(spec_path)).name)
    try:
        lock = json.loads(text) if text else {}
    except json.JSONDecodeError:
        lock = {}
    servers = lock.get("servers", {}) if isinstance(lock, dict) else {}
    out = dict(tools)
    for name, c in tools.items():
        if not isinstance(c, dict) or "mcp" not in c:
            continue
        server = servers.get(c.get("mcp"), {}) if isinstance(servers, dict) else {}
        entry = server.get("tools", {}).get(c.get("tool") or name) if server else None
        c = dict(c)
        if isinstance(entry, dict):
            h = hints(entry)
            c.setdefault("effect", "read" if h["readOnlyHint"] else "write")
            c["locked"] = {
                "inputSchema": entry.get("inputSchema"),
                "outputSchema": entry.get("outputSchema"),
                "hints": h,
            }
        else:
            c["locked"] = None
        out[name] = c
    return {**data, "tools": out}
