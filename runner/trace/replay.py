"""Replay a recorded run offline against a (changed) spec, and diff the outcomes node by node."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from runner.backends.local import envelope_of
from runner.engine.results import RunResult
from runner.engine.services import MemoryServices
from runner.errors import ExitCode, FlowrunError, UsageError
from runner.models.responses import Recorded, RecordedResponses, RecordedUsage
from runner.plan.model import Plan, PlanNode, ToolStep
from runner.store import RunRow, Store

_PROVIDER_KINDS = {"rate_limit", "internal_server_error", "context_window", "timeout", "auth"}


class ReplayError(FlowrunError):
    """The run cannot be replayed: it lacks the recorded content replay needs."""

    exit_code = ExitCode.INVALID


class ReplayResponses(RecordedResponses):
    """Recorded answers for unchanged nodes; `live` nodes call their model through the profile."""

    def __init__(self, entries: tuple[Recorded, ...], live: frozenset[str]) -> None:
        super().__init__(Path("<recorded run>"), entries)
        self.live = live

    def serves(self, node: str) -> bool:
        return node not in self.live


def fingerprint(node: PlanNode) -> str:
    """A node's definition plus what it resolves to (route, prompt text, tool contract)."""
    parts: dict[str, Any] = {"spec": node.spec.model_dump(mode="json")}
    inner = node.map.inner if node.map is not None else node
    if inner.llm is not None:
        parts["route"] = inner.llm.route.config.model_dump(mode="json")
        parts["prompt"] = inner.llm.prompt.source
        parts["system"] = inner.llm.system.source if inner.llm.system else None
    if inner.tool is not None:
        parts["tool"] = inner.tool.contract.model_dump(mode="json")
    return json.dumps(parts, sort_keys=True, default=str)


def changed_nodes(old: Plan, new: Plan) -> set[str]:
    return {
        nid
        for nid, node in new.nodes.items()
        if nid not in old.nodes or fingerprint(old.nodes[nid]) != fingerprint(node)
    }


def _needs_content(row: RunRow, calls: list[dict[str, Any]]) -> None:
    hint = "run it again with `flowrun execute --capture default` (or full) to record content"
    if not calls and (row.llm_calls or row.tool_calls):
        raise ReplayError(
            f"run {row.run_id!r} was recorded without its model and tool calls; "
            "it cannot be replayed",
            hint=hint,
        )
    if any(not c["data"].get("captured", False) for c in calls):
        raise ReplayError(
            f"run {row.run_id!r} was recorded with --capture off: its model answers and tool "
            "results were not kept, so it cannot be replayed",
            hint=hint,
        )


def _recorded(calls: list[dict[str, Any]], nodes: set[str]) -> tuple[Recorded, ...]:
    out = []
    for c in calls:
        if c["kind"] != "llm" or c["node_id"] not in nodes:
            continue
        d = c["data"]
        usage = d.get("usage")
        err = c["error"]
        if err is None and "content" not in d:
            continue
        if err is not None:
            err = err if err in _PROVIDER_KINDS else "timeout"
        out.append(
            Recorded(
                node=c["node_id"],
                index=c["idx"],
                attempt=c["attempt"],
                content=None if err else d["content"],
                usage=RecordedUsage(**usage) if usage and not err else None,
                model=d.get("response_model") or d.get("model"),
                finish_reason=d.get("finish_reason") or "stop",
                error=err,
                latency_s=0.0,
                line=0,
            )
        )
    return tuple(out)


def _served_tool(step: ToolStep, node_id: str, calls: list[dict[str, Any]]) -> ToolStep:
    """The step with its fn serving recorded results: matching args first, then in call order."""
    pending = [c for c in calls if c["kind"] == "tool" and c["node_id"] == node_id]

    def serve(**kwargs: Any) -> Any:
        args = {k: v for k, v in kwargs.items() if k != "idempotency_key"}
        pick = next((c for c in pending if c["data"].get("args") == args), None)
        if pick is None and pending:
            pick = pending[0]
        if pick is None:
            raise RuntimeError(f"replay: no recorded result of {step.name!r} at {node_id!r}")
        pending.remove(pick)
        if pick["error"] is not None or not pick["data"].get("has_result"):
            raise RuntimeError(f"recorded failure: {pick['error']}")
        return pick["data"]["result"]

    # a replay is never live: writes go through preview_fn, which serves the record too
    return dataclasses.replace(step, fn=serve, is_async=False, preview_fn=serve)


def _dry_run_tool(step: ToolStep, node_id: str, calls: list[dict[str, Any]]) -> ToolStep:
    """A changed node's write never happens in replay: its recorded result, else a stub."""
    if step.contract.effect != "write" or step.preview_fn is not None:
        return step  # reads read again; a write with a preview runs it (a real dry run)

    recorded = [c for c in calls if c["kind"] == "tool" and c["node_id"] == node_id]

    def dry_run(**kwargs: Any) -> Any:
        done = [c for c in recorded if c["data"].get("has_result")]
        if done:
            return done[-1]["data"]["result"]
        args = {k: v for k, v in kwargs.items() if k != "idempotency_key"}
        return {"dry_run": True, "tool": step.name, "args": args}

    return dataclasses.replace(step, fn=dry_run, is_async=False, preview_fn=dry_run)


def _with_tools(plan: Plan, rerun: set[str], calls: list[dict[str, Any]]) -> Plan:
    nodes: dict[str, PlanNode] = {}
    for nid, node in plan.nodes.items():
        swap = _dry_run_tool if nid in rerun else _served_tool
        if node.tool is not None:
            node = dataclasses.replace(node, tool=swap(node.tool, nid, calls))
        elif node.map is not None and node.map.inner.tool is not None:
            inner = dataclasses.replace(node.map.inner, tool=swap(node.map.inner.tool, nid, calls))
            node = dataclasses.replace(node, map=dataclasses.replace(node.map, inner=inner))
        nodes[nid] = node
    return dataclasses.replace(plan, nodes=nodes)


@dataclasses.dataclass
class Replay:
    original: dict[str, Any]  # the recorded run, as RunResult.to_json() shapes it
    replay: RunResult
    changed: set[str]
    rerun: set[str]


async def replay_run(
    store: Store,
    run_id: str,
    *,
    spec: str | None = None,
    rerun: tuple[str, ...] = (),
    profile: str | None = None,
    responses: str | None = None,
    calls: list[dict[str, Any]] | None = None,
) -> Replay:
    """Re-execute a recorded run offline; unchanged nodes get their recorded answers (from
    `calls` when given: the full transcript's, runner/trace/vault.py)."""
    from runner.engine.run import check_inputs, execute
    from runner.plan.compile import compile_plan
    from runner.runs import compile_plan_of, plan_of
    from runner.spec import load_spec

    row = store.get_run(run_id)
    if calls is None:
        calls = store.calls(run_id)
    _needs_content(row, calls)
    old = plan_of(row, store)
    # the run's own bundle unless another spec is given: files on disk may have changed since
    if spec:
        new = compile_plan(load_spec(spec), profile or row.profile)
    else:
        new = compile_plan_of(row, store, profile or row.profile)
    unknown = [n for n in rerun if n not in new.nodes]
    if unknown:
        raise UsageError(
            f"--rerun: no node {unknown[0]!r} in the spec",
            hint="nodes: " + ", ".join(new.order),
        )
    changed = changed_nodes(old, new)
    again = changed | set(rerun)
    llm_nodes = {
        n.id for n in new.nodes.values() if n.llm or (n.map is not None and n.map.inner.llm)
    }
    entries = _recorded(calls, llm_nodes - again)
    live = frozenset(llm_nodes & again)
    if responses is not None:
        extra = RecordedResponses.load(Path(responses))
        entries += tuple(e for e in extra.entries() if e.node in live)
        live = frozenset()
    plan = _with_tools(new, again, calls)
    inputs = check_inputs(plan, row.inputs, f"run {run_id!r} inputs")
    services = MemoryServices()
    replay_id = f"{run_id}~replay"
    for nid, node in new.nodes.items():
        if node.kind == "approval":
            a = store.approval_get(run_id, nid)
            if a is not None:
                services.approvals[(replay_id, nid)] = {**a, "run_id": replay_id}
    if live:
        from runner.models.client import ensure_litellm

        ensure_litellm()
    result = await execute(
        plan,
        inputs,
        responses=ReplayResponses(entries, live),
        run_id=replay_id,
        services=services,
        # the original identity and scopes, so policy decides as it did; never live writes
        envelope=dataclasses.replace(envelope_of(row), live=False),
    )
    nodes = store.node_results(run_id)
    original = {
        "run_id": row.run_id,
        "status": row.status,
        "outputs": row.outputs or {},
        "cost_usd": row.cost_usd,
        "nodes": nodes,
    }
    return Replay(original=original, replay=result, changed=changed, rerun=set(rerun))


def outcome_diff(r: Replay) -> dict[str, Any]:
    """Per node: status, output, cost before and after; then the run's outcome."""
    rep = r.replay.to_json()
    ids = list(dict.fromkeys([*rep["nodes"], *r.original["nodes"]]))  # plan order
    nodes = []
    for nid in ids:
        a = r.original["nodes"].get(nid) or {}
        b = rep["nodes"].get(nid) or {}
        before = {
            "status": a.get("status"),
            "output": a.get("output"),
            "cost_usd": (a.get("usage") or {}).get("cost_usd", 0.0),
        }
        after = {
            "status": b.get("status"),
            "output": b.get("output"),
            "cost_usd": (b.get("usage") or {}).get("cost_usd", 0.0),
        }
        nodes.append(
            {
                "node_id": nid,
                "rerun": nid in r.changed or nid in r.rerun,
                "same": before["status"] == after["status"] and before["output"] == after["output"],
                "before": before,
                "after": after,
            }
        )
    run_before = {
        "status": r.original["status"],
        "outputs": r.original["outputs"],
        "cost_usd": r.original["cost_usd"],
    }
    run_after = {
        "status": rep["status"],
        "outputs": rep["outputs"],
        "cost_usd": rep["totals"]["cost_usd"],
    }
    return {
        "run_id": r.original["run_id"],
        "changed_nodes": sorted(r.changed),
        "rerun_nodes": sorted(r.rerun),
        "nodes": nodes,
        "run": {
            "same": run_before["status"] == run_after["status"]
            and run_before["outputs"] == run_after["outputs"],
            "before": run_before,
            "after": run_after,
            "reason": rep["reason"],
        },
    }


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def render_diff(d: dict[str, Any]) -> str:
    lines = [
        f"replay of {d['run_id']}: changed {', '.join(d['changed_nodes']) or 'nothing'}"
        + (f"; rerun {', '.join(d['rerun_nodes'])}" if d["rerun_nodes"] else "")
    ]
    for n in d["nodes"]:
        a, b = n["before"], n["after"]
        mark = "=" if n["same"] else "~"
        tag = " (ran again)" if n["rerun"] else ""
        head = f"{mark} {n['node_id']}{tag}: {a['status'] or '-'} -> {b['status'] or '-'}"
        if a["cost_usd"] or b["cost_usd"]:
            head += f"  ${a['cost_usd']:.6f} -> ${b['cost_usd']:.6f}"
        lines.append(head)
        if a["output"] != b["output"]:
            lines.append(f"    - {_short(a['output'])}")
            lines.append(f"    + {_short(b['output'])}")
    run = d["run"]
    a, b = run["before"], run["after"]
    verdict = "unchanged" if run["same"] else "CHANGED"
    lines.append(
        f"run outcome {verdict}: {a['status']} -> {b['status']}  "
        f"${a['cost_usd']:.6f} -> ${b['cost_usd']:.6f}"
    )
    for key in sorted(set(a["outputs"]) | set(b["outputs"])):
        va, vb = a["outputs"].get(key), b["outputs"].get(key)
        if va != vb:
            lines.append(f"  {key}: {_short(va)} -> {_short(vb)}")
    if run["reason"]:
        lines.append(f"  replay reason: {run['reason']}")
    return "\n".join(lines)
