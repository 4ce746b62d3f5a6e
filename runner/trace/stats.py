"""`flowrun stats`: completion, escalation, latency and cost percentiles, tool errors, undo rate."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

from runner.errors import UsageError
from runner.store import Store

FINISHED = ("succeeded", "failed", "escalated", "budget_exceeded", "denied", "killed")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float | None = None) -> float:
    """`30m`, `24h`, `7d` ago, or an ISO date/time; as unix seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        return (now or time.time()) - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(
            f"--since: cannot read {text!r}",
            hint="give a duration such as 30m, 24h, 7d, or an ISO date such as 2025-01-31",
        ) from None


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile: a value that really occurred."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def _cost_percentiles(costs: list[float]) -> dict[str, float | None]:
    def pct(p: float) -> float | None:
        v = percentile(costs, p)
        return None if v is None else round(v, 8)

    return {"p50": pct(50), "p95": pct(95), "max": round(max(costs), 8) if costs else None}


def _drift(now: dict[str, float | None], before: dict[str, float | None]) -> dict[str, Any]:
    """Each cost figure's change against the previous window, as a fraction (None: no base)."""
    out: dict[str, Any] = {}
    for k, v in now.items():
        b = before.get(k)
        out[k] = None if v is None or not b else round(v / b - 1, 4)
    return out


def compute_stats(
    store: Store,
    *,
    workflow: str | None = None,
    tenant: str | None = None,
    since: float | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    rows = store.finished_runs(FINISHED, workflow=workflow, tenant=tenant, since=since)
    ids = [r.run_id for r in rows]
    total = len(rows)
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    latencies = [r.duration_s for r in rows]
    costs = [r.cost_usd for r in rows if r.status == "succeeded"]
    tool_calls, tool_errors = store.tool_call_counts(ids)
    undone = store.runs_with_event("undo", ids)
    bound = {k: v for k, v in (("tenant", tenant), ("workflow", workflow)) if v is not None}
    spent = store.spend_totals(bound, since or 0.0)
    cache = store.cache_stats(tenant)

    def pct(values: list[float], p: float, nd: int) -> float | None:
        v = percentile(values, p)
        return None if v is None else round(v, nd)

    return {
        "filters": {"workflow": workflow, "tenant": tenant, "since": since},
        "runs": total,
        "by_status": dict(sorted(by_status.items())),
        "completion_rate": _rate(by_status.get("succeeded", 0), total),
        "escalation_rate": _rate(by_status.get("escalated", 0), total),
        "latency_s": {
            "p50": pct(latencies, 50, 4),
            "p95": pct(latencies, 95, 4),
            "p99": pct(latencies, 99, 4),
        },
        "cost_per_completed_usd": _cost_percentiles(costs),
        # the same figures over the window as long just before `since`, and the change
        **_previous(store, costs, workflow=workflow, tenant=tenant, since=since, now=now),
        "tool_calls": tool_calls,
        "tool_error_rate": _rate(tool_errors, tool_calls),
        "undo_rate": _rate(undone, total),
        "autonomy_changes": _autonomy_changes(store, workflow, since),
        # every spend row of these runs' tenant and workflow since then (docs/budgets.md)
        "spent_usd": round(spent["usd"], 8),
        "tool_billed_usd": round(spent["tool_usd"], 8),
        "billed_tool_calls": int(spent["tool_calls"]),
        "response_cache": cache,
    }


def _autonomy_changes(store: Store, workflow: str | None, since: float | None) -> dict[str, Any]:
    """Autonomy level changes (docs/readiness.md): how many, how many automatic demotions, and
    the latest of them."""
    found = [
        e
        for e in store.events(run_id="*", type_="autonomy_changed")
        if (workflow is None or e["data"].get("workflow") == workflow)
        and (since is None or e["ts"] >= since)
    ]
    auto = [e for e in found if e["data"].get("automatic")]
    last = auto[-1] if auto else None
    return {
        "changes": len(found),
        "automatic_demotions": len(auto),
        "last_demotion": None
        if last is None
        else {
            "ts": last["ts"],
            **{k: last["data"].get(k) for k in ("workflow", "tool", "tenant", "to", "reason")},
        },
    }


def _previous(
    store: Store,
    costs: list[float],
    *,
    workflow: str | None,
    tenant: str | None,
    since: float | None,
    now: float | None,
) -> dict[str, Any]:
    if since is None:
        return {}
    start = since - ((now or time.time()) - since)
    current = {
        r.run_id for r in store.finished_runs(FINISHED, workflow=workflow, tenant=tenant,
                                              since=since)
    }  # fmt: skip
    before = [
        r.cost_usd
        for r in store.finished_runs(("succeeded",), workflow=workflow, tenant=tenant, since=start)
        if r.run_id not in current
    ]
    prev = _cost_percentiles(before)
    return {
        "previous_window": {"since": start, "until": since, "completed": len(before),
                            "cost_per_completed_usd": prev},
        "cost_drift": _drift(_cost_percentiles(costs), prev),
    }  # fmt: skip


def render_stats(s: dict[str, Any]) -> str:
    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lat, cost = s["latency_s"], s["cost_per_completed_usd"]
    statuses = ", ".join(f"{k} {v}" for k, v in s["by_status"].items()) or "none"
    drift = []
    if "cost_drift" in s:
        d, prev = s["cost_drift"], s["previous_window"]["cost_per_completed_usd"]
        drift = [
            f"previous window      p50 ${f(prev['p50'], '.6f')}  p95 ${f(prev['p95'], '.6f')}  "
            f"max ${f(prev['max'], '.6f')}  ({s['previous_window']['completed']} completed)",
            f"cost drift           p50 {f(d['p50'], '+.1%')}  p95 {f(d['p95'], '+.1%')}  "
            f"max {f(d['max'], '+.1%')}",
        ]
    return "\n".join(
        [
            f"runs                 {s['runs']}  ({statuses})",
            f"completion rate      {f(s['completion_rate'], '.1%')}",
            f"escalation rate      {f(s['escalation_rate'], '.1%')}",
            f"latency p50/p95/p99  {f(lat['p50'], '.3f')}s / {f(lat['p95'], '.3f')}s / "
            f"{f(lat['p99'], '.3f')}s",
            f"cost per completed   p50 ${f(cost['p50'], '.6f')}  p95 ${f(cost['p95'], '.6f')}  "
            f"max ${f(cost['max'], '.6f')}",
            *drift,
            f"tool error rate      {f(s['tool_error_rate'], '.1%')}  ({s['tool_calls']} calls)",
            f"undo rate            {f(s['undo_rate'], '.1%')}",
            *_autonomy_line(s.get("autonomy_changes")),
            f"spent                ${s['spent_usd']:.6f}  (tool bills ${s['tool_billed_usd']:.6f}"
            f" over {s['billed_tool_calls']} calls)",
            f"response cache       {s['response_cache']['hits']} hits, "
            f"{s['response_cache']['entries']} entries",
        ]
    )


def _autonomy_line(a: dict[str, Any] | None) -> list[str]:
    if not a or not a["changes"]:
        return []
    line = f"autonomy changes     {a['changes']} ({a['automatic_demotions']} automatic demotions)"
    last = a["last_demotion"]
    if last is not None:
        line += f"; last: {last['workflow']}/{last['tool']} -> {last['to']}: {last['reason']}"
    return [line]
