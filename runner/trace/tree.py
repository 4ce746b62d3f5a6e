"""`flowrun trace RUN_ID`: a recorded run as a tree, per node duration, model, tokens, cost."""

from __future__ import annotations

from typing import Any

from runner.redact import redact
from runner.store import Store

POLICY_EVENTS = (
    "write_refused",
    "ledger_replayed",
    "approval_requested",
    "approval_approved",
    "approval_rejected",
    "policy_denied",
    "policy_allowed",
    "dry_run",
    "kill_requested",
    "undo",
    "undo_failed",
)


def _usd(x: float) -> str:
    return f"${x:.6f}".rstrip("0").rstrip(".") if x else "$0"


def trace_data(store: Store, run_id: str) -> dict[str, Any]:
    """Run, nodes (latest result each, start order), their calls and policy events, as JSON."""
    row = store.get_run(run_id)
    calls = store.calls(run_id)
    events = store.events(run_id)
    nodes = sorted(store.node_results(run_id).values(), key=lambda r: r.get("started_at") or 1e18)
    out_nodes = []
    for r in nodes:
        nid = r["node_id"]
        u = r.get("usage") or {}
        out_nodes.append(
            {
                "node_id": nid,
                "kind": r["kind"],
                "status": r["status"],
                "duration_s": r.get("duration_s", 0.0),
                "model": r.get("model"),
                "attempts": r.get("attempts", 0),
                "input_tokens": u.get("input_tokens", 0),
                "output_tokens": u.get("output_tokens", 0),
                "cost_usd": u.get("cost_usd", 0.0),
                "error": redact(r.get("error"), pii=True),
                "reason": (r.get("detail") or {}).get("reason"),
                "policy": redact((r.get("detail") or {}).get("policy"), pii=True),
                "calls": [_call(c) for c in calls if c["node_id"] == nid],
                "events": [
                    {"type": e["type"], "data": redact(e["data"], pii=True)}
                    for e in events
                    if e["node_id"] == nid and e["type"] in POLICY_EVENTS
                ],
            }
        )
    return {
        "run_id": row.run_id,
        "workflow": row.workflow,
        "status": row.status,
        "reason": redact(row.reason, pii=True),
        "tenant": row.tenant,
        "actor": row.actor,
        "profile": row.profile,
        "duration_s": row.duration_s,
        "cost_usd": row.cost_usd,
        "tokens": row.tokens,
        "llm_calls": row.llm_calls,
        "tool_calls": row.tool_calls,
        "nodes": out_nodes,
    }


def _call(c: dict[str, Any]) -> dict[str, Any]:
    d = c["data"]
    usage = d.get("usage") or {}
    return {
        "kind": c["kind"],
        "name": c["name"],
        "index": c["idx"],
        "attempt": c["attempt"],
        "duration_s": c["duration_s"],
        "error": c["error"],
        "response_model": d.get("response_model"),
        "input_tokens": usage.get("prompt_tokens"),
        "output_tokens": usage.get("completion_tokens"),
        "cost_usd": d.get("cost_usd"),
    }


def render_trace(data: dict[str, Any]) -> str:
    """Plain text, one line per node and call, stable for tests and pipes."""
    head = (
        f"run {data['run_id']}  {data['workflow']}  {data['status']}  "
        f"{data['duration_s']:.3f}s  {data['tokens']} tok  {_usd(data['cost_usd'])}"
    )
    extra = [f"{k} {data[k]}" for k in ("tenant", "actor", "profile") if data.get(k)]
    lines = [head + ("  (" + ", ".join(extra) + ")" if extra else "")]
    if data.get("reason"):
        lines.append(f"│ reason: {data['reason']}")
    nodes = data["nodes"]
    for i, n in enumerate(nodes):
        last = i == len(nodes) - 1
        branch, stem = ("└─ ", "   ") if last else ("├─ ", "│  ")
        parts = [f"{n['node_id']} ({n['kind']})", n["status"], f"{n['duration_s'] * 1000:.1f}ms"]
        if n["model"]:
            parts.append(n["model"])
        if n["input_tokens"] or n["output_tokens"]:
            parts.append(f"{n['input_tokens']}→{n['output_tokens']} tok")
            parts.append(_usd(n["cost_usd"]))
        if n["attempts"] > 1:
            parts.append(f"attempts {n['attempts']}")
        lines.append(branch + "  ".join(parts))
        children: list[str] = []
        for c in n["calls"]:
            where = f"[{c['index']}] " if c["index"] is not None else ""
            if c["kind"] == "llm":
                s = f"chat {c['name']} {where}#{c['attempt']}"
                if c["input_tokens"] is not None:
                    s += f"  {c['input_tokens']}→{c['output_tokens']} tok  {_usd(c['cost_usd'])}"
            else:
                s = f"execute_tool {c['name']} {where}#{c['attempt']}"
            s += f"  {c['duration_s'] * 1000:.1f}ms"
            if c["error"]:
                s += f"  error: {c['error']}"
            children.append(s)
        for e in n["events"]:
            children.append(f"policy: {e['type']} {_compact(e['data'])}")
        if n["policy"]:
            children.append(f"policy: {_compact(n['policy'])}")
        if n["reason"]:
            children.append(f"skipped: {n['reason']}")
        if n["error"]:
            children.append(f"error: {n['error']}")
        for j, c in enumerate(children):
            lines.append(stem + ("└─ " if j == len(children) - 1 else "├─ ") + c)
    return "\n".join(lines)


def _compact(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
