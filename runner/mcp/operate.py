"""Run operations as MCP tools (`flowrun mcp serve --operate`): approve, reject, kill, undo.

They go through `runner.runs`, as the CLI and the console do, so a decision made by an MCP
client wakes a Temporal run's workflow or resumes a local run exactly like `flowrun approve`.
They are off unless the server is started with --operate: an agent that can approve the runs
it started would defeat human approval, so exposing them is the operator's explicit choice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.errors import UsageError
from runner.runs import Runs
from runner.store.base import NotFound

if TYPE_CHECKING:
    from runner.runs.identity import Identity

_RUN_ID = {"type": "string", "description": "the run's id (from the workflow tool's answer)"}
_BY = {
    "type": "string",
    "minLength": 1,
    "description": "who acts (recorded in the audit trail); over HTTP with client tokens the "
    "authenticated client is recorded instead",
}
_NODE = {"type": "string", "description": "the approval node that waits"}

OPERATIONS: dict[str, dict[str, Any]] = {
    "flowrun.approve": {
        "description": "Approve a run waiting for approval at NODE and continue it to its next "
        "stop; answers the run's status and outputs.",
        "input": {
            "type": "object",
            "properties": {
                "run_id": _RUN_ID,
                "node": _NODE,
                "by": _BY,
                "decision": {"description": "a decision matching the node's decision schema"},
            },
            "required": ["run_id", "node"],
            "additionalProperties": False,
        },
        "destructive": True,
    },
    "flowrun.reject": {
        "description": "Reject a run waiting for approval at NODE; the run ends denied.",
        "input": {
            "type": "object",
            "properties": {
                "run_id": _RUN_ID,
                "node": _NODE,
                "by": _BY,
                "reason": {"type": "string", "minLength": 1, "description": "why (recorded)"},
            },
            "required": ["run_id", "node", "reason"],
            "additionalProperties": False,
        },
        "destructive": False,
    },
    "flowrun.kill": {
        "description": "Stop a run at its next node boundary (a waiting run stops at once).",
        "input": {
            "type": "object",
            "properties": {"run_id": _RUN_ID, "by": _BY},
            "required": ["run_id"],
            "additionalProperties": False,
        },
        "destructive": True,
    },
    "flowrun.undo": {
        "description": "Run the compensations of a run's completed writes, newest first.",
        "input": {
            "type": "object",
            "properties": {"run_id": _RUN_ID, "by": _BY},
            "required": ["run_id"],
            "additionalProperties": False,
        },
        "destructive": True,
    },
}


def _arguments(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    from runner.plan.schemas import validation_errors

    problems = validation_errors(OPERATIONS[name]["input"], arguments)
    if problems:
        raise UsageError(f"arguments of {name!r}: " + "; ".join(problems))
    return arguments


async def operate(
    store: str | None, name: str, arguments: dict[str, Any], who: Identity | None = None
) -> dict[str, Any]:
    """Do one operation on a run of the store; raises FlowrunError as the CLI would.

    With `who` (an authenticated client), the same checks as the console's apply (assignees,
    separation of duties, the operator role; each answer audited) and `who` is recorded."""
    a = _arguments(name, arguments)
    if who is None and not a.get("by"):
        raise UsageError(f"arguments of {name!r}: 'by' is a required property")
    by = who.name if who is not None else str(a["by"])
    runs = Runs.open(store)
    try:
        return await _operate(runs, name, a, by, who)
    except NotFound as e:
        if not str(e).startswith(f"no run {a['run_id']!r} in "):
            raise
        # said to a remote client: not the store's location, and the role before the run
        action = name.removeprefix("flowrun.")
        if who is not None and action in ("kill", "undo"):
            runs.authorize_operation(who, action, via="mcp")
        raise NotFound(f"no run {a['run_id']!r}", hint="the run id of a tool's answer") from None
    finally:
        runs.close()


async def _operate(
    runs: Runs, name: str, a: dict[str, Any], by: str, who: Identity | None
) -> dict[str, Any]:
    if name in ("flowrun.approve", "flowrun.reject"):
        approve = name == "flowrun.approve"
        decided = await runs.decide(
            a["run_id"],
            a["node"],
            approve=approve,
            by=by,
            who=who,
            via="mcp",
            decision=a.get("decision") if approve else None,
            reason=None if approve else a["reason"],
            follow=True,
        )
        result = decided.result
        out: dict[str, Any] = {"run_id": a["run_id"], "decided": decided.status}
        if result is not None:
            out.update(status=result.status, outputs=result.outputs, reason=result.reason)
        return out
    action = "kill" if name == "flowrun.kill" else "undo"
    if who is not None:
        runs.authorize_operation(who, action, via="mcp", run_id=a["run_id"])
    if action == "kill":
        return {"run_id": a["run_id"], "outcome": await runs.kill(a["run_id"], by=by)}
    report = await runs.undo(a["run_id"], by=by)
    return {"run_id": a["run_id"], "effects": report}
