"""Changing a tool's autonomy level on purpose (`flowrun autonomy`) and after an undo.

The levels and their enforcement are in runner/engine/autonomy.py (the envelope reads them
before every live write); this module holds the operations on them: promote (refused while a
readiness gate fails, unless overridden with a reason), demote, show, and the demotion check
that runs after `flowrun undo`.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.engine.autonomy import DEFAULT_LEVEL, LEVELS, check_demotion, rank, tool_rates
from runner.errors import ExitCode, FlowrunError, UsageError
from runner.runs.readiness import write_tools

if TYPE_CHECKING:
    from runner.plan.model import Plan
    from runner.runs.readiness import Report
    from runner.store import RunRow, Store


class PromotionRefused(FlowrunError):
    """A promotion while a readiness gate does not pass, without an override."""

    exit_code = ExitCode.FAILED


@dataclass(frozen=True)
class Change:
    workflow: str
    tool: str
    tenant: str | None
    was: str
    level: str
    override: bool

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_tool(plan: Plan, tool: str) -> None:
    tools = write_tools(plan)
    if tool in tools:
        return
    if tool in plan.loaded.spec.tools:
        raise UsageError(
            f"tool {tool!r} of {plan.name!r} only reads; autonomy levels apply to write tools",
            hint=f"write tools: {', '.join(tools) or 'none'}",
        )
    near = difflib.get_close_matches(tool, tools, n=1)
    raise UsageError(
        f"{plan.name!r} has no write tool {tool!r}"
        + (f"; did you mean {near[0]!r}?" if near else ""),
        hint=f"write tools: {', '.join(tools) or 'none'}",
    )


def current(store: Store, plan: Plan, tool: str, tenant: str | None) -> str:
    row = store.autonomy_level(plan.name, tool, tenant)
    return row["level"] if row else DEFAULT_LEVEL


def _exact(store: Store, plan: Plan, tool: str, tenant: str | None) -> str:
    """The level recorded for exactly this scope ('' when none is)."""
    for r in store.autonomy_rows(plan.name):
        if r["tool"] == tool and r["tenant"] == (tenant or ""):
            return str(r["level"])
    return ""


def promote(
    store: Store,
    plan: Plan,
    tool: str,
    *,
    tenant: str | None,
    to: str | None,
    by: str | None,
    readiness: Report,
    override: str | None = None,
) -> Change:
    """Raise a tool's level one step (or to `to`). Refused while a readiness gate fails, and,
    to `autonomous`, while a gate lacks evidence; `override` (a reason) records it anyway."""
    check_tool(plan, tool)
    was = current(store, plan, tool, tenant)
    if was == DEFAULT_LEVEL and not _exact(store, plan, tool, tenant) and to is None:
        raise UsageError(
            f"{tool!r} is already {DEFAULT_LEVEL!r} (no level recorded: the spec decides)"
        )
    target = to or LEVELS[min(rank(was) + 1, len(LEVELS) - 1)]
    if rank(target) <= rank(was):
        raise UsageError(
            f"{tool!r} is at {was!r}; promote raises the level (use `flowrun autonomy demote`)"
        )
    blocking = [
        g
        for g in readiness.gates
        if g.status == "fail" or (target == "autonomous" and g.status != "pass")
    ]
    if blocking and not override:
        names = ", ".join(f"{g.title} ({g.status.replace('_', ' ')})" for g in blocking)
        raise PromotionRefused(
            f"{tool!r} stays {was!r}: readiness gates do not allow {target!r}: {names}",
            hint="see `flowrun readiness SPEC`; `--override REASON` promotes anyway and "
            "records the reason",
        )
    store.autonomy_set(
        plan.name,
        tool,
        tenant,
        target,
        by=by,
        reason=override,
        override=bool(blocking),
        gates={g.name: g.status for g in readiness.gates},
    )
    return Change(plan.name, tool, tenant, was, target, bool(blocking))


def demote(
    store: Store,
    plan: Plan,
    tool: str,
    *,
    tenant: str | None,
    to: str | None,
    by: str | None,
    reason: str | None,
) -> Change:
    """Lower a tool's level one step (or to `to`); always allowed."""
    check_tool(plan, tool)
    was = current(store, plan, tool, tenant)
    target = to or LEVELS[max(rank(was) - 1, 0)]
    if rank(target) >= rank(was):
        raise UsageError(
            f"{tool!r} is at {was!r}; demote lowers the level (use `flowrun autonomy promote`)"
        )
    store.autonomy_set(plan.name, tool, tenant, target, by=by, reason=reason, override=False)
    return Change(plan.name, tool, tenant, was, target, False)


def show(store: Store, plan: Plan, *, now: float | None = None) -> dict[str, Any]:
    """Every write tool's levels (for every tenant and per tenant), its demotion rates over the
    spec's autonomy window, and the workflow's level changes, newest first."""
    cfg = plan.loaded.spec.readiness.autonomy
    since = (time.time() if now is None else now) - cfg.window
    rows = store.autonomy_rows(plan.name)
    tools = []
    for tool in write_tools(plan):
        mine = [r for r in rows if r["tool"] == tool]
        base = next((r for r in mine if r["tenant"] == ""), None)
        tools.append(
            {
                "tool": tool,
                "level": base["level"] if base else DEFAULT_LEVEL,
                "recorded": base is not None,
                "tenants": {r["tenant"]: r["level"] for r in mine if r["tenant"]},
                "rates": tool_rates(store, plan.name, tool, None, since).to_json(),
            }
        )
    return {
        "workflow": plan.name,
        "window_s": cfg.window,
        "thresholds": {
            "max_undo_rate": cfg.max_undo_rate,
            "max_deny_rate": cfg.max_deny_rate,
            "min_samples": cfg.min_samples,
            "demote_to": cfg.demote_to,
        },
        "tools": tools,
        "changes": changes(store, plan.name),
    }


def changes(
    store: Store, workflow: str | None = None, *, since: float | None = None
) -> list[dict[str, Any]]:
    """The `autonomy_changed` audit events (of a workflow, since a time), newest first."""
    out = []
    for e in store.events(run_id="*", type_="autonomy_changed"):
        d = e["data"]
        if workflow is not None and d.get("workflow") != workflow:
            continue
        if since is not None and e["ts"] < since:
            continue
        out.append({"ts": e["ts"], **d})
    return sorted(out, key=lambda d: -d["ts"])


def after_undo(store: Store, row: RunRow, plan: Plan, report: list[dict[str, Any]]) -> list[Any]:
    """Once a run's writes were undone: demote each undone tool whose undo rate now passes the
    spec's threshold (the same check the envelope makes before a write)."""
    cfg = plan.loaded.spec.readiness.autonomy
    demoted = []
    for tool in sorted({e["tool"] for e in report if e.get("status") == "undone"}):
        d = check_demotion(store, plan.name, tool, row.tenant, cfg)
        if d is not None:
            store.event(row.run_id, "autonomy_demoted", None, **d)
            demoted.append(d)
    return demoted
