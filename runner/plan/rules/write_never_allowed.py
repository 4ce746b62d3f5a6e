"""write-never-allowed (warning): a write tool that no policy can allow under a deny default."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runner.errors import Diagnostic
from runner.plan.kinds.tool import tool_effect

RULE = "write-never-allowed"


def check(compiler: Any) -> Iterable[Diagnostic]:
    """Run after the nodes compiled: an MCP tool's effect comes from its lock then."""
    spec = compiler.spec
    writes = [n for n in spec.tools if tool_effect(compiler, n) == "write"]
    allows = any(p.effect == "allow" for p in spec.policies) or bool(spec.policy_files)
    if writes and spec.policy_default.write == "deny" and not allows:
        yield compiler.src.diag(
            ("tools", writes[0]),
            RULE,
            f"no policy allows write tool {writes[0]!r}, and writes are denied by default",
            hint="add a rule with `effect: allow` for it, or set policy_default.write: allow",
            key=True,
            severity="warning",
        )
