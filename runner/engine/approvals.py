"""The one approval implementation: ask once, wait, apply a decision or a timeout.

Two things wait for a person: an `approval` node, and a tool call that policy says needs
approval. Both come here, as do the entry points that record a decision (`decision_problems`)
and a driver that must wake a parked run when its approval times out (`timeout_of`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.engine.context import NodeStop

if TYPE_CHECKING:
    from runner.engine.context import RunState
    from runner.plan.model import PlanNode


@dataclass(frozen=True, kw_only=True)
class Ask:
    """What a request for approval shows and how it ends if nobody decides."""

    summary: str
    assignees: tuple[str, ...] = ()  # identity names or roles that may decide (runs/identity.py)
    allow_self_approval: bool = False  # the run's own requester may decide it
    decision_schema: dict[str, Any] | None = None
    timeout_s: float | None = None
    on_timeout: str = "escalate"


def approval_key(node_id: str, index: int | None) -> str:
    """Where an approval is recorded: the node, or `node[3]` for a map item's call."""
    return node_id if index is None else f"{node_id}[{index}]"


def node_of(key: str) -> str:
    """The node an approval key belongs to (the inverse of approval_key, less the item)."""
    return key.split("[", 1)[0]


def await_decision(run: RunState, key: str, ask: Callable[[], Ask]) -> dict[str, Any]:
    """The decided approval row at `key`; raises NodeStop("waiting") until there is one.

    The first call records the request (`ask` is built only then); once its timeout has
    passed, the approval is decided `timed_out` by flowrun, exactly once.
    """
    svc = run.services
    row = svc.approval_get(run.run_id, key)
    if row is None:
        a = ask()
        svc.approval_request(
            run.run_id,
            key,
            summary=a.summary,
            assignees=list(a.assignees),
            allow_self=int(a.allow_self_approval),
            decision_schema=a.decision_schema,
            timeout_at=(time.time() + a.timeout_s) if a.timeout_s else None,
            on_timeout=a.on_timeout,
        )
        raise NodeStop("waiting", a.summary)
    if row["status"] == "waiting":
        timeout_at = row.get("timeout_at")
        if timeout_at is None or time.time() < timeout_at:
            raise NodeStop("waiting", row.get("summary") or "waiting for approval")
        svc.approval_decide(run.run_id, key, status="timed_out", by="flowrun", reason="timed out")
        row = svc.approval_get(run.run_id, key) or row
    return row


def timeout_of(node: PlanNode) -> float | None:
    """Seconds after which a parked approval node times out (None: it waits for ever)."""
    step = node.approval
    return step.timeout if step is not None and step.timeout else None


def decision_problems(row: dict[str, Any], *, approve: bool, decision: Any) -> list[str]:
    """Why a decision does not fit the approval's decision schema (empty: it fits)."""
    if not approve or decision is None or not row.get("decision_schema"):
        return []
    from runner.plan.schemas import validation_errors

    return validation_errors(row["decision_schema"], decision)
