"""An MCP tool contract resolved from the lock: schemas from the server, effect from its hints.

A spec may make an MCP tool stricter than its annotations say (call a read-only tool a write,
refuse idempotency the server claims), never looser: that is rule `mcp-looser-than-server`.
MCP results are untrusted (tainted) unless the contract says `trust: trusted`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.mcp.lock import Lock, LockError, hints, identity, lock_path, parse_lock
from runner.plan.bundle import file_key
from runner.plan.rules.mcp import (
    LOCK_MISMATCH,
    LOCK_MISSING,
    LOOSER,
    UNKNOWN_SERVER,
    UNKNOWN_TOOL,
    did_you_mean,
)
from runner.spec.models import McpServer, ToolContract

LOCK_HINT = "run `flowrun tools lock {spec}` to record the servers' tools"


@dataclass
class _State:
    lock: Lock | None = None
    problem: tuple[str, str, tuple[Any, ...], str | None] | None = None  # rule, msg, path, hint
    reported: bool = False
    servers_checked: set[str] = field(default_factory=set)


@dataclass(frozen=True, eq=False)
class McpTool:
    """A compiled MCP contract: where the tool lives and what the lock says about it (the call
    itself is runner/mcp/pool.py's `call_tool`, over the run's connection)."""

    name: str  # the contract's name in the spec
    server_name: str
    tool: str
    server: McpServer
    spec_dir: Path
    contract: ToolContract
    locked: dict[str, Any]
    structured: bool  # the tool declares an outputSchema: its result is structuredContent
    call_timeout: float | None = None  # the contract's `timeout`; else the server's

    @property
    def key(self) -> tuple[str, str, str]:
        return (str(self.spec_dir), self.server_name, self.server.model_dump_json())


def _state(compiler: Any) -> _State:
    st: _State | None = getattr(compiler, "_mcp_state", None)
    if st is not None:
        return st
    st = _State()
    spec, path = compiler.spec, compiler.loaded.path
    lp = lock_path(Path(path))
    shown = lp.name
    try:
        st.lock = _read_lock(compiler, lp)
    except FileNotFoundError:
        st.problem = (
            LOCK_MISSING,
            f"the spec uses MCP tools but has no lock file {shown!r}",
            ("mcp_servers",),
            LOCK_HINT.format(spec=path),
        )
    except LockError as e:
        st.problem = (LOCK_MISSING, str(e), ("mcp_servers",), LOCK_HINT.format(spec=path))
    else:
        if st.lock.spec != spec.metadata.name:
            st.problem = (
                LOCK_MISMATCH,
                f"{shown} was written for spec {st.lock.spec!r}, not {spec.metadata.name!r}",
                ("metadata", "name"),
                LOCK_HINT.format(spec=path),
            )
            st.lock = None
    compiler._mcp_state = st
    return st


def _read_lock(compiler: Any, lp: Path) -> Lock:
    """The spec's lock through the compiler's sources, so a run's bundle carries it."""
    key = file_key(compiler.base, lp.name)
    try:
        text = compiler.files.read(key)
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as e:
        raise LockError(f"cannot read {lp.name}: {e}") from None
    return parse_lock(text, lp)


def resolve(
    compiler: Any, name: str
) -> tuple[McpTool, dict[str, Any], dict[str, Any] | None] | None:
    """(tool ref, args schema, result schema) of an MCP contract, or None after reporting why."""
    spec = compiler.spec
    contract: ToolContract = spec.tools[name]
    server_name = contract.mcp
    assert server_name is not None
    tool_name = contract.tool or name
    if server_name not in spec.mcp_servers:
        compiler.error(
            ("tools", name, "mcp"),
            UNKNOWN_SERVER,
            f"tool {name!r} names MCP server {server_name!r}, which `mcp_servers` does not define",
            hint=did_you_mean(server_name, spec.mcp_servers)
            or "declare it under `mcp_servers` ({command: [...]} or {url: ...})",
        )
        return None
    server = spec.mcp_servers[server_name]
    st = _state(compiler)
    if st.problem is not None:
        if not st.reported:
            rule, message, path, hint = st.problem
            compiler.error(path, rule, message, hint=hint, key=True)
            st.reported = True
        return None
    lock = st.lock
    assert lock is not None
    locked_server = lock.servers.get(server_name)
    if not isinstance(locked_server, dict) or locked_server.get("identity") != identity(server):
        if server_name not in st.servers_checked:
            st.servers_checked.add(server_name)
            what = (
                "is not in the lock"
                if not isinstance(locked_server, dict)
                else "is not the server the lock was written for"
                f" ({json.dumps(locked_server.get('identity'))})"
            )
            compiler.error(
                ("mcp_servers", server_name),
                LOCK_MISMATCH,
                f"MCP server {server_name!r} {what}",
                hint=LOCK_HINT.format(spec=compiler.loaded.path),
                key=True,
            )
        return None
    entry = lock.tool(server_name, tool_name)
    where = ("tools", name, "tool") if contract.tool is not None else ("tools", name, "mcp")
    if entry is None:
        known = sorted(locked_server.get("tools", {}))
        compiler.error(
            where,
            UNKNOWN_TOOL,
            f"MCP server {server_name!r} has no tool {tool_name!r} in the lock",
            hint=did_you_mean(tool_name, known)
            or f"run `flowrun tools lock {compiler.loaded.path}` if the server gained it",
        )
        return None
    h = hints(entry)
    server_effect = "read" if h["readOnlyHint"] else "write"
    fields = contract.model_fields_set
    ok = True
    effect = contract.effect if "effect" in fields else server_effect
    if effect == "read" and server_effect == "write":
        said = "destructive" if h["destructiveHint"] else "not read-only"
        compiler.error(
            ("tools", name, "effect"),
            LOOSER,
            f"tool {name!r} says `effect: read`, but MCP server {server_name!r} annotates "
            f"{tool_name!r} as {said}",
            hint="a spec may only make an MCP tool stricter: use `effect: write` "
            "(or drop `effect` to take the server's)",
        )
        ok = False
    idempotent = contract.idempotent if "idempotent" in fields else h["idempotentHint"]
    if idempotent and not h["idempotentHint"]:
        compiler.error(
            ("tools", name, "idempotent"),
            LOOSER,
            f"tool {name!r} says `idempotent: true`, but MCP server {server_name!r} does not "
            f"annotate {tool_name!r} as idempotent",
            hint="drop `idempotent: true`: a retry of an unknown outcome must not repeat it",
        )
        ok = False
    if not ok:
        return None
    input_schema = entry.get("inputSchema") or {"type": "object"}
    output_schema = entry.get("outputSchema")
    args_schema = contract.args if contract.args is not None else input_schema
    if contract.result is not None:
        result_schema: dict[str, Any] | None = contract.result
    elif isinstance(output_schema, dict):
        result_schema = output_schema
    else:
        result_schema = {"type": "string"}  # the text content of the result
    resolved = contract.model_copy(
        update={
            "effect": effect,
            "idempotent": idempotent,
            "trust": contract.trust if "trust" in fields else "untrusted",
            "description": contract.description or entry.get("description"),
            "args": args_schema,
            "result": result_schema,
            # the call's bound, enforced by the pool: a node timeout would count server start-up
            "timeout": None,
        }
    )
    ref = McpTool(
        name=name,
        server_name=server_name,
        tool=tool_name,
        server=server,
        spec_dir=compiler.loaded.directory,
        contract=resolved,
        locked=entry,
        structured=isinstance(output_schema, dict),
        call_timeout=contract.timeout,
    )
    return ref, args_schema, result_schema
