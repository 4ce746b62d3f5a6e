"""What each console page shows, read from the store; pages only lay it out."""

from __future__ import annotations

import difflib
import json
import math
import time
from typing import TYPE_CHECKING, Any

from runner.runs import TERMINAL

if TYPE_CHECKING:
    from runner.store import Store

STATUS_COLOURS = {
    "succeeded": "#2e7d32",
    "running": "#1565c0",
    "waiting": "#b38600",
    "failed": "#c62828",
    "escalated": "#6a1b9a",
    "budget_exceeded": "#ef6c00",
    "denied": "#ad1457",
    "killed": "#424242",
    "skipped": "#9e9e9e",
}
POLICY_TYPES = ("policy_decision", "policy_denied", "policy_allowed", "write_refused", "dry_run")


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def age(seconds: float) -> str:
    """A short human duration: 42s, 7m, 3h 5m, 2d 4h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def histogram(values: list[float], fmt: str = "{:.2f}", bins: int = 8) -> list[dict[str, Any]]:
    """Equal-width bins from 0 to the largest value, with heights as a fraction of the tallest."""
    if not values:
        return []
    top = max(values) or 1.0
    width = top / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int(v / width))] += 1
    tallest = max(counts) or 1
    return [
        {
            "label": f"{fmt.format(i * width)}–{fmt.format((i + 1) * width)}",
            "lo": fmt.format(i * width),
            "hi": fmt.format((i + 1) * width),
            "count": c,
            "frac": c / tallest,
        }
        for i, c in enumerate(counts)
    ]


def overview(store: Store) -> dict[str, Any]:
    """The `flowrun stats` figures plus what runs and waits now, for the overview page."""
    from runner.trace.stats import FINISHED, compute_stats

    stats = compute_stats(store)
    counts = store.status_counts()
    rows = store.finished_runs(FINISHED)
    return {
        "stats": stats,
        "status_bars": [
            {
                "label": s,
                "count": n,
                "frac": n / max(counts.values()),
                "colour": STATUS_COLOURS.get(s, "#607d8b"),
            }
            for s, n in sorted(counts.items(), key=lambda kv: -kv[1])
        ],
        "latency_hist": histogram([r.duration_s for r in rows], "{:.2f}s"),
        "cost_hist": histogram([r.cost_usd for r in rows if r.status == "succeeded"], "${:.4f}"),
        "running": store.list_runs(status="running", limit=20),
    }


def planned_changes(
    store: Store, run_id: str, nodes: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Dry-run writes: `planned` in node details and `planned_change` events, when present."""
    out = []
    for node_id, r in nodes.items():
        planned = (r.get("detail") or {}).get("planned")
        if planned is not None:
            out.append({"node_id": node_id, "source": "node", "change": planned})
    for e in store.events(run_id, "planned_change"):
        out.append({"node_id": e["node_id"], "source": "event", "change": e["data"]})
    for c in out:
        c["text"] = pretty(c["change"])
        c["diff"] = _diff(c["change"])
    return out


def _diff(change: Any) -> str | None:
    """A unified diff when a planned change carries a before and an after."""
    if not isinstance(change, dict) or "before" not in change or "after" not in change:
        return None
    a = pretty(change["before"]).splitlines()
    b = pretty(change["after"]).splitlines()
    return "\n".join(difflib.unified_diff(a, b, "before", "after", lineterm=""))


def policy_decisions(
    store: Store, run_id: str, nodes: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Policy events of a run and each node's recorded policy detail, when present."""
    out = [
        {"node_id": e["node_id"], "type": e["type"], "data": e["data"], "text": pretty(e["data"])}
        for e in store.events(run_id)
        if e["type"] in POLICY_TYPES
    ]
    seen = {p["node_id"] for p in out}
    for node_id, r in nodes.items():
        policy = (r.get("detail") or {}).get("policy")
        if policy is not None and node_id not in seen:
            out.append(
                {"node_id": node_id, "type": "node policy", "data": policy, "text": pretty(policy)}
            )
    return out


def notable(policy: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decisions an approver should see: named rules and anything but a default allow."""
    return [
        p
        for p in policy
        if not isinstance(p["data"], dict)
        or p["data"].get("effect") != "allow"
        or p["data"].get("rule") not in (None, "default")
    ]


def decision_fields(schema: Any) -> list[dict[str, Any]] | None:
    """Form fields for a flat object schema; None means a JSON text area instead."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return None
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        return None
    required = set(schema.get("required") or [])
    fields = []
    for name, p in props.items():
        if not isinstance(p, dict):
            return None
        kind = p.get("type")
        if "enum" in p and all(isinstance(v, str) for v in p["enum"]):
            widget = "select"
        elif kind in ("string", "number", "integer", "boolean"):
            widget = str(kind)
        else:
            widget = "json"
        fields.append(
            {
                "name": name,
                "widget": widget,
                "options": p.get("enum") or [],
                "required": name in required,
                "description": p.get("description") or "",
            }
        )
    return fields


class DecisionError(ValueError):
    """A decision form that cannot be read as the schema's types."""


def _no_constant(name: str) -> Any:
    raise DecisionError(f"{name} is not a JSON value")


def _json(raw: str, what: str) -> Any:
    """Strict JSON typed by an approver: no NaN or Infinity, nesting within Python's limit."""
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except DecisionError as e:
        raise DecisionError(f"{what}: {e}") from None
    except json.JSONDecodeError as e:
        raise DecisionError(f"{what}: not JSON: {e.msg}") from None
    except RecursionError:
        raise DecisionError(f"{what}: nested too deeply") from None


def parse_decision(schema: Any, form: dict[str, str]) -> Any:
    """The typed decision from a submitted form; None when the node asks for none."""
    fields = decision_fields(schema)
    if fields is None:
        raw = form.get("decision_json", "").strip()
        if not raw:
            return None
        return _json(raw, "decision")
    out: dict[str, Any] = {}
    for f in fields:
        key = "d_" + f["name"]
        raw = form.get(key, "")
        if f["widget"] == "boolean":
            out[f["name"]] = raw == "on"
            continue
        if raw.strip() == "":
            continue
        try:
            if f["widget"] == "integer":
                out[f["name"]] = int(raw)
            elif f["widget"] == "number":
                number = float(raw)
                if not math.isfinite(number):  # NaN passes every bound and policy comparison
                    raise ValueError(raw)
                out[f["name"]] = number
            elif f["widget"] == "json":
                out[f["name"]] = _json(raw, f"decision field {f['name']!r}")
            else:
                out[f["name"]] = raw
        except DecisionError:
            raise
        except ValueError:
            raise DecisionError(f"decision field {f['name']!r}: cannot read {raw!r}") from None
    return out


def inbox_items(store: Store) -> list[dict[str, Any]]:
    """Waiting approvals, oldest first, with what an approver needs to decide."""
    now = time.time()
    items = []
    for a in store.inbox():
        row = store.get_run(a["run_id"])
        nodes = store.node_results(a["run_id"])
        timeout_at = a.get("timeout_at")
        items.append(
            {
                **a,
                "workflow": row.workflow,
                "tenant": row.tenant,
                "cost_usd": row.cost_usd,
                "tokens": row.tokens,
                "age": age(now - a["requested_at"]),
                "requested": when(a["requested_at"]),
                "due": None
                if not timeout_at
                else (f"times out in {age(timeout_at - now)}" if timeout_at > now else "timed out"),
                "overdue": bool(timeout_at and timeout_at <= now),
                "planned": planned_changes(store, a["run_id"], nodes),
                "policy": notable(policy_decisions(store, a["run_id"], nodes)),
                "fields": decision_fields(a.get("decision_schema")),
                "schema_text": pretty(a["decision_schema"]) if a.get("decision_schema") else None,
            }
        )
    return items


def status_mermaid(mermaid: str, statuses: dict[str, str]) -> str:
    """The review graph with each node's fill set by its run status."""
    from runner.graph.render import _mid

    lines = mermaid.rstrip("\n").splitlines()
    used = sorted(set(statuses.values()))
    for s in used:
        colour = STATUS_COLOURS.get(s, "#607d8b")
        lines.append(f"  classDef st_{s} fill:{colour},color:#ffffff,stroke:#222")
    for s in used:
        ids = ",".join(_mid(n) for n, st in statuses.items() if st == s)
        lines.append(f"  class {ids} st_{s}")
    return "\n".join(lines) + "\n"


def run_page(store: Store, run_id: str) -> dict[str, Any]:
    """Everything the run page shows: graph, nodes, planned changes, policy, effects, audit."""
    from runner.errors import FlowrunError
    from runner.graph import from_plan, to_mermaid
    from runner.runs import plan_of

    row = store.get_run(run_id)
    nodes = store.node_results(run_id)
    statuses = {n: r.get("status", "") for n, r in nodes.items()}
    graph_error = None
    mermaid = None
    order: list[str] = list(nodes)
    try:
        plan = plan_of(row, store)
        g = from_plan(plan)
        order = [*g.nodes, *[n for n in nodes if n not in g.nodes]]
        mermaid = status_mermaid(to_mermaid(g), {n: s for n, s in statuses.items() if n in g.nodes})
    except FlowrunError as e:
        graph_error = str(e)
    approvals = [
        a
        for a in (
            store.approval_get(run_id, n)
            for n in {*nodes, *(a["node_id"] for a in store.inbox() if a["run_id"] == run_id)}
        )
        if a is not None
    ]
    node_rows: list[dict[str, Any]] = []
    for n in order:
        r = nodes.get(n)
        if r is None:
            node_rows.append({"node_id": n, "status": "not started", "kind": None})
            continue
        u = r.get("usage") or {}
        node_rows.append(
            {
                "node_id": n,
                "kind": r.get("kind"),
                "status": r.get("status"),
                "model": r.get("model"),
                "attempts": r.get("attempts", 0),
                "tokens": (u.get("input_tokens") or 0) + (u.get("output_tokens") or 0),
                "cost_usd": u.get("cost_usd") or 0.0,
                "duration_s": r.get("duration_s") or 0.0,
                "output": None if r.get("output") is None else pretty(r.get("output")),
                "error": r.get("error"),
                "reason": (r.get("detail") or {}).get("reason"),
            }
        )
    ledger = store.ledger_for_run(run_id)
    return {
        "run": row,
        "terminal": row.status in TERMINAL,
        "created": when(row.created_at),
        "finished": when(row.finished_at),
        "inputs": pretty(row.inputs),
        "outputs": None if row.outputs is None else pretty(row.outputs),
        "mermaid": mermaid,
        "graph_error": graph_error,
        "nodes": node_rows,
        "planned": planned_changes(store, run_id, nodes),
        "policy": policy_decisions(store, run_id, nodes),
        "approvals": sorted(approvals, key=lambda a: a["requested_at"]),
        "effects": [
            {
                "node_id": e["node_id"],
                "tool": e["tool"],
                "effect": e["effect"],
                "status": "undone" if e["undone"] else e["status"],
                "key": e["key"],
                "compensate": e["compensate"],
            }
            for e in ledger
        ],
        "undoable": [
            e
            for e in ledger
            if e["effect"] == "write" and e["status"] == "done" and not e["undone"]
        ],
        "events": [
            {
                "ts": when(e["ts"]),
                "type": e["type"],
                "node_id": e["node_id"],
                "data": json.dumps(e["data"], sort_keys=True, default=str, ensure_ascii=False),
            }
            for e in store.events(run_id)
        ],
    }
