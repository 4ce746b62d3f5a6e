"""Rule ids of MCP tool contracts (resolved from the lock in runner/mcp/contracts.py).

`mcp-lock-stale` and `mcp-server-unreachable` are reported only by `flowrun validate --check-mcp`,
which connects to the servers; the others come from the lock alone, offline.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

UNKNOWN_SERVER = "unknown-mcp-server"
LOCK_MISSING = "mcp-lock-missing"
LOCK_MISMATCH = "mcp-lock-mismatch"
UNKNOWN_TOOL = "unknown-mcp-tool"
LOOSER = "mcp-looser-than-server"
LOCK_STALE = "mcp-lock-stale"  # --check-mcp only
UNREACHABLE = "mcp-server-unreachable"  # --check-mcp only

RULES: dict[str, str] = {
    UNKNOWN_SERVER: "a tool names an MCP server that `mcp_servers` does not define",
    LOCK_MISSING: "a spec with MCP tools has no (readable) lock file; run `flowrun tools lock`",
    LOCK_MISMATCH: "the MCP lock belongs to another spec, or to another server than the spec's",
    UNKNOWN_TOOL: "an MCP tool that the lock (the server's list) does not have",
    LOOSER: "a contract looser than the MCP tool's annotations (read for a write, idempotent)",
}


def did_you_mean(name: str, options: Iterable[str]) -> str | None:
    near = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"did you mean {near[0]!r}?" if near else None
