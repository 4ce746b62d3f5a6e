"""`approval:` nodes: a person decides (optionally with a typed decision) before the run goes on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.expr.templates import template_refs
from runner.plan import schemas
from runner.plan.kinds.base import Kind, Site
from runner.plan.model import ApprovalStep
from runner.plan.names import expr_refs
from runner.spec.models import ApprovalNode

if TYPE_CHECKING:
    from runner.plan.compiler import Compiler


def compile_approval(c: Compiler, site: Site, node: ApprovalNode) -> dict[str, Any] | None:
    spec = node.approval
    ok = True
    when = None
    if spec.when is not None:
        when = c.cel(spec.when, site.at("approval", "when"))
        if when is None:
            ok = False
        else:
            site.refs(c, expr_refs(spec.when, when), site.at("approval", "when"))
    summary = None
    if spec.summary is not None:
        summary = c.template(spec.summary, site.at("approval", "summary"))
        if summary is None:
            ok = False
        else:
            site.refs(
                c,
                template_refs(spec.summary),
                site.at("approval", "summary"),
                template=spec.summary,
            )
    if spec.decision is not None and not c.check_schema(
        spec.decision, site.at("approval", "decision")
    ):
        ok = False
    if not ok:
        return None
    step = ApprovalStep(
        when=when,
        summary=summary,
        assignees=tuple(spec.assignees),
        timeout=spec.timeout,
        on_timeout=spec.on_timeout,
        decision_schema=spec.decision,
        allow_self_approval=spec.allow_self_approval,
    )
    return {"approval": step, "output_schema": schemas.approval_output(spec.decision)}


KIND = Kind(
    name="approval",
    spec_type=ApprovalNode,
    compile=compile_approval,
    output_schema=lambda c, node: schemas.approval_output(node.approval.decision),
)
