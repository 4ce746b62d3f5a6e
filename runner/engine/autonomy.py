"""Autonomy levels: how far a workflow's write tool may act on its own (docs/readiness.md).

    dry_run  ──▶  approval  ──▶  autonomous

A level is held in the store per workflow and tool, for every tenant or for one tenant (the
tenant's own level wins), and only tightens what the spec allows: at `dry_run` a live run's
write runs its preview instead; at `approval` it parks for a person (the one approval
implementation, runner/engine/approvals.py); at `autonomous` (also when no level is recorded)
the spec and its policies alone decide. Levels are changed by `flowrun autonomy` and by
automatic demotion, here: when a tool's undo rate or policy deny rate over the spec's
`readiness.autonomy.window` passes its threshold, the tool drops to `demote_to`, once, with an
`autonomy_changed` audit event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.store.base import AUTONOMY_LEVELS

if TYPE_CHECKING:
    from runner.engine.services import Services
    from runner.spec.models import AutonomyDemotion

LEVELS = AUTONOMY_LEVELS
DEFAULT_LEVEL = "autonomous"


def rank(level: str) -> int:
    return LEVELS.index(level)


@dataclass(frozen=True)
class ToolRates:
    """A tool's evidence over a window: completed live writes, undone ones, policy decisions."""

    writes: int
    undone: int
    decisions: int
    denied: int

    @property
    def undo_rate(self) -> float | None:
        return self.undone / self.writes if self.writes else None

    @property
    def deny_rate(self) -> float | None:
        return self.denied / self.decisions if self.decisions else None

    def to_json(self) -> dict[str, Any]:
        return {
            "writes": self.writes,
            "undone": self.undone,
            "undo_rate": None if self.undo_rate is None else round(self.undo_rate, 4),
            "decisions": self.decisions,
            "denied": self.denied,
            "deny_rate": None if self.deny_rate is None else round(self.deny_rate, 4),
        }


def tool_rates(
    svc: Services, workflow: str, tool: str, tenant: str | None, since: float
) -> ToolRates:
    writes, undone, decisions, denied = svc.tool_rates(workflow, tool, tenant=tenant, since=since)
    return ToolRates(writes=writes, undone=undone, decisions=decisions, denied=denied)


def demotion_reason(rates: ToolRates, cfg: AutonomyDemotion) -> str | None:
    """Why these rates demote a tool (None: they do not)."""
    undo, deny = rates.undo_rate, rates.deny_rate
    if undo is not None and rates.writes >= cfg.min_samples and undo > cfg.max_undo_rate:
        return (
            f"undo rate {rates.undone}/{rates.writes} ({undo:.0%}) passed "
            f"{cfg.max_undo_rate:.0%} over the last {cfg.window / 86400:g}d"
        )
    if deny is not None and rates.decisions >= cfg.min_samples and deny > cfg.max_deny_rate:
        return (
            f"policy deny rate {rates.denied}/{rates.decisions} ({deny:.0%}) passed "
            f"{cfg.max_deny_rate:.0%} over the last {cfg.window / 86400:g}d"
        )
    return None


def check_demotion(
    svc: Services,
    workflow: str,
    tool: str,
    tenant: str | None,
    cfg: AutonomyDemotion,
    *,
    now: float | None = None,
) -> dict[str, Any] | None:
    """Demote the level governing `tool` for `tenant` when its rates pass the thresholds; the
    audit event's data when it did (None: nothing changed). The rates are counted over the same
    scope as the governing level: one tenant's runs for a tenant's level, else every run."""
    row = svc.autonomy_level(workflow, tool, tenant)
    current = row["level"] if row else DEFAULT_LEVEL
    if rank(current) <= rank(cfg.demote_to):
        return None
    scope = (row["tenant"] or None) if row else None
    since = (time.time() if now is None else now) - cfg.window
    rates = tool_rates(svc, workflow, tool, scope, since)
    why = demotion_reason(rates, cfg)
    if why is None:
        return None
    audit = {"automatic": True, "evidence": rates.to_json()}
    changed = svc.autonomy_set(
        workflow,
        tool,
        scope,
        cfg.demote_to,
        by="flowrun",
        reason=why,
        only_if=row["level"] if row else "",
        **audit,
    )
    if not changed:
        return None
    return {"tool": tool, "tenant": scope, "from": current, "to": cfg.demote_to, "reason": why}


def level_for(
    svc: Services, workflow: str, tool: str, tenant: str | None, cfg: AutonomyDemotion
) -> tuple[str, dict[str, Any] | None]:
    """The level a live write of `tool` runs at now (after any demotion its rates call for),
    and the demotion made on the way (None: none)."""
    demoted = check_demotion(svc, workflow, tool, tenant, cfg)
    row = svc.autonomy_level(workflow, tool, tenant)
    return (row["level"] if row else DEFAULT_LEVEL), demoted
