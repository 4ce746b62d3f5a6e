"""approval: park the run until a person approves or rejects, or its time runs out."""

from __future__ import annotations

from typing import Any

from runner.engine.approvals import Ask, await_decision
from runner.engine.context import NodeContext, NodeFailure, NodeStop
from runner.expr.cel import ExprError, truthy
from runner.expr.templates import TemplateError


def _output(row: dict[str, Any] | None, *, approved: bool, auto: bool = False) -> dict[str, Any]:
    row = row or {}
    return {
        "approved": approved,
        "auto": auto,
        "by": row.get("decided_by"),
        "decision": row.get("decision"),
        "reason": row.get("reason"),
    }


async def run(ctx: NodeContext) -> Any:
    step = ctx.node.approval
    assert step is not None
    act = ctx.activation()
    if step.when is not None:
        try:
            needed = truthy(step.when.evaluate(act))
        except ExprError as e:
            raise NodeFailure(f"approval.when: {e.message}", kind="config") from None
        if not needed:
            return _output(None, approved=True, auto=True)

    def ask() -> Ask:
        try:
            summary = step.summary.render(act) if step.summary is not None else None
        except TemplateError as e:
            raise NodeFailure(f"approval summary: {e.message}", kind="config") from None
        return Ask(
            summary=summary or f"approve {ctx.node_id!r} of workflow {ctx.run.plan.name!r}",
            assignees=tuple(step.assignees),
            allow_self_approval=step.allow_self_approval,
            decision_schema=step.decision_schema,
            timeout_s=step.timeout,
            on_timeout=step.on_timeout,
        )

    row = await_decision(ctx.run, ctx.node_id, ask)
    status = row["status"]
    if status == "approved":
        return _output(row, approved=True)
    if status == "rejected":
        raise NodeStop(
            "denied",
            f"rejected by {row.get('decided_by')}: {row.get('reason') or 'no reason given'}",
            _output(row, approved=False),
        )
    # timed out: the node's on_timeout decides
    outcome = "escalated" if (row.get("on_timeout") or step.on_timeout) == "escalate" else "denied"
    raise NodeStop(outcome, "the approval timed out", _output(row, approved=False))
