"""approval: park the run until a person approves or rejects, or its time runs out."""

from __future__ import annotations

import time
from typing import Any

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
    svc, run_id, node_id = ctx.run.services, ctx.run.run_id, ctx.node_id
    act = ctx.activation()
    if step.when is not None:
        try:
            needed = truthy(step.when.evaluate(act))
        except ExprError as e:
            raise NodeFailure(f"approval.when: {e.message}", kind="config") from None
        if not needed:
            return _output(None, approved=True, auto=True)
    row = svc.approval_get(run_id, node_id)
    if row is None:
        try:
            summary = step.summary.render(act) if step.summary is not None else None
        except TemplateError as e:
            raise NodeFailure(f"approval summary: {e.message}", kind="config") from None
        summary = summary or f"approve {node_id!r} of workflow {ctx.run.plan.name!r}"
        svc.approval_request(
            run_id,
            node_id,
            summary=summary,
            assignees=list(step.assignees),
            decision_schema=step.decision_schema,
            timeout_at=(time.time() + step.timeout) if step.timeout else None,
            on_timeout=step.on_timeout,
        )
        raise NodeStop("waiting", summary)
    if row["status"] == "waiting":
        timeout_at = row.get("timeout_at")
        if timeout_at is None or time.time() < timeout_at:
            raise NodeStop("waiting", row.get("summary") or "waiting for approval")
        svc.approval_decide(run_id, node_id, status="timed_out", by="flowrun", reason="timed out")
        row = svc.approval_get(run_id, node_id) or row
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
