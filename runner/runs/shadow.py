"""Shadow runs: a new spec version executed as a dry run on the inputs of recorded runs.

Each selected run is replayed offline against the new spec (runner/trace/replay.py): unchanged
nodes get the run's recorded answers and tool results, changed nodes run again (models from
recorded responses or a profile, writes as previews, never live). The report says, per run,
whether the decision changed (the run's outcome or outputs), which nodes decided otherwise, the
cost before and after, and how the tool calls differ.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.errors import FlowrunError, UsageError

if TYPE_CHECKING:
    from runner.plan.model import Plan
    from runner.store import RunRow, Store

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_LIMIT = 10_000  # runs one shadow compares, as `flowrun batches --limit`
FILTER_KEYS = ("since", "status", "tenant", "limit", "live", "workflow", "id")


@dataclass
class RunFilter:
    """Which recorded runs to shadow: `--runs since=7d,status=succeeded,limit=20` (terms joined
    by commas), or run ids. By default the last 20 live runs of the new spec's workflow."""

    workflow: str | None = None
    since: float | None = None
    status: str | None = None
    tenant: str | None = None
    limit: int = 20
    live: bool | None = True
    ids: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, *, now: float | None = None) -> RunFilter:
        f = cls()
        for term in (t.strip() for t in text.split(",")):
            if not term:
                continue
            key, sep, value = term.partition("=")
            key, value = key.strip(), value.strip()
            if not sep:
                f.ids.append(key)
                continue
            if key not in FILTER_KEYS or not value:
                raise UsageError(
                    f"--runs: cannot read {term!r}",
                    hint="terms: " + ", ".join(f"{k}=..." for k in FILTER_KEYS) + ", or run ids",
                )
            if key == "since":
                m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", value)
                if not m:
                    raise UsageError(f"--runs: since={value!r}: give a duration such as 7d")
                f.since = (now or time.time()) - float(m.group(1)) * _UNITS[m.group(2)]
                if f.since < 0:
                    raise UsageError(f"--runs: since={value!r}: reaches back before 1970")
            elif key == "limit":
                if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
                    raise UsageError(
                        f"--runs: limit={value!r}: give a number from 1 to {MAX_LIMIT}"
                    )
                f.limit = int(value)
            elif key == "live":
                if value not in ("true", "false", "any"):
                    raise UsageError(f"--runs: live={value!r}: true, false or any")
                f.live = None if value == "any" else value == "true"
            elif key == "id":
                f.ids.append(value)
            else:
                setattr(f, key, value)
        return f


def select(store: Store, plan: Plan, f: RunFilter) -> list[RunRow]:
    """The recorded runs the filter names, newest first."""
    if f.ids:
        return [store.get_run(run_id) for run_id in f.ids]
    workflow = f.workflow or plan.name
    rows = store.list_runs(
        status=f.status, workflow=workflow, tenant=f.tenant, limit=max(f.limit * 5, 100)
    )
    out = []
    for row in rows:
        if f.since is not None and row.created_at < f.since:
            continue
        if row.status in ("running", "waiting"):
            continue  # not finished: nothing to compare with
        if f.live is not None and bool((row.options or {}).get("live")) != f.live:
            continue
        out.append(row)
        if len(out) >= f.limit:
            break
    return out


def _tools_before(store: Store, run_id: str) -> Counter[str]:
    return Counter(c["name"] for c in store.calls(run_id) if c["kind"] == "tool")


def _tools_after(plan: Plan, result: Any) -> Counter[str]:
    out: Counter[str] = Counter()
    for nid, res in result.nodes.items():
        node = plan.nodes.get(nid)
        if node is None:
            continue
        step = node.tool or (node.map.inner.tool if node.map is not None else None)
        if step is not None and res.usage.tool_calls:
            out[step.name] += res.usage.tool_calls
    return out


async def shadow(
    store: Store,
    spec: str,
    plan: Plan,
    rows: list[RunRow],
    *,
    profile: str | None = None,
    responses: str | None = None,
) -> dict[str, Any]:
    """Replay each run against `spec` and compare; a run that cannot be replayed is reported
    with its reason, the others go on."""
    from runner.trace.replay import outcome_diff, replay_run

    runs: list[dict[str, Any]] = []
    for row in rows:
        try:
            r = await replay_run(store, row.run_id, spec=spec, profile=profile, responses=responses)
        except FlowrunError as e:
            runs.append({"run_id": row.run_id, "error": e.message})
            continue
        d = outcome_diff(r)
        before_tools = _tools_before(store, row.run_id)
        after_tools = _tools_after(plan, r.replay)
        tools = {
            t: {"before": before_tools.get(t, 0), "after": after_tools.get(t, 0)}
            for t in sorted(set(before_tools) | set(after_tools))
            if before_tools.get(t, 0) != after_tools.get(t, 0)
        }
        run = d["run"]
        cost_before = float(run["before"]["cost_usd"] or 0.0)
        cost_after = float(run["after"]["cost_usd"] or 0.0)
        runs.append(
            {
                "run_id": row.run_id,
                "tenant": row.tenant,
                "decision_changed": not run["same"],
                "status": {"before": run["before"]["status"], "after": run["after"]["status"]},
                "outputs_changed": run["before"]["outputs"] != run["after"]["outputs"],
                "nodes_changed": [
                    {
                        "node_id": n["node_id"],
                        "before": n["before"]["status"] or "not_run",
                        "after": n["after"]["status"] or "not_run",
                    }
                    for n in d["nodes"]
                    if not n["same"]
                ],
                "cost_usd": {
                    "before": round(cost_before, 8),
                    "after": round(cost_after, 8),
                    "delta": round(cost_after - cost_before, 8),
                },
                "tool_calls": tools,
                "reason": run["reason"],
                "rerun_nodes": sorted(set(d["changed_nodes"]) | set(d["rerun_nodes"])),
            }
        )
    done = [r for r in runs if "error" not in r]
    return {
        "workflow": plan.name,
        "spec": spec,
        "runs": runs,
        "summary": {
            "runs": len(runs),
            "replayed": len(done),
            "errors": len(runs) - len(done),
            "decisions_changed": sum(1 for r in done if r["decision_changed"]),
            "tool_calls_changed": sum(1 for r in done if r["tool_calls"]),
            "cost_before_usd": round(sum(r["cost_usd"]["before"] for r in done), 8),
            "cost_after_usd": round(sum(r["cost_usd"]["after"] for r in done), 8),
        },
    }


def record(store: Store, plan: Plan, report: dict[str, Any]) -> None:
    """Keep a shadow's summary (audit event `shadow_result`, run id '*') for `flowrun readiness`
    of the same spec version to show."""
    store.event(
        "*",
        "shadow_result",
        workflow=plan.name,
        spec_digest=_digest(plan),
        summary=report["summary"],
        changed_runs=[r["run_id"] for r in report["runs"] if r.get("decision_changed")][:50],
    )
    store.flush()


def _digest(plan: Plan) -> str:
    """The spec version's digest, as runs and eval results record it (its text's SHA-256)."""
    return hashlib.sha256(plan.loaded.source.text.encode()).hexdigest()
