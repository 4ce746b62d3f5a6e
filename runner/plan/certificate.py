"""The safety certificate of a spec: what `flowrun validate` proves about every run of it.

A spec that validates has passed loop-bound, ungated-write and tainted-write; the certificate
states what those proofs cover, once, as data: every loop and map bounded (and by what), the
worst case of cost, LLM calls and tool calls, every write with the gates and approvals on every
path to it (or the stated reason it has none), and every path from an untrusted source to a
write argument with the check that clears it. `flowrun validate --output json` prints it,
`flowrun diff` shows what a change adds to it or removes from it, and so does the PR comment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from runner.plan.digraph import DiGraph
from runner.plan.gating import guards
from runner.plan.model import Plan, PlanNode
from runner.plan.taint import TaintPath, plan_taint_paths, sanitizes, write_step

PROVES = (
    "every loop and map is bounded (max_iterations, max_items)",
    "no run spends more than the worst case below (LLM calls, tokens, USD; tool calls)",
    "every write runs only after the listed gates or approvals, on every path to it",
    "every value from an untrusted source that reaches a write argument is cleared by the"
    " listed check (docs/security.md#taint)",
)


@dataclass(frozen=True)
class _Seen:
    label: str
    node: PlanNode
    guards: tuple[str, ...]
    times: int  # how many times the node can run in one run (map items × loop passes)


def _walk(
    nodes: Mapping[str, PlanNode],
    graph: DiGraph[str],
    order: tuple[str, ...],
    prefix: str = "",
    outer: tuple[str, ...] = (),
    times: int = 1,
) -> Iterator[_Seen]:
    g = guards(graph, nodes)
    for n in order:
        pn = nodes.get(n)
        if pn is None:
            continue
        label = prefix + n
        own = tuple(prefix + x for x in sorted(g.get(n, ())) if x in nodes)
        here = (*outer, *own)
        k = times * pn.retry.max_attempts
        yield _Seen(label, pn, here, k)
        inner, fan = (pn.map.inner, pn.map.max_items) if pn.map is not None else (pn, 1)
        if inner.loop is not None:
            body = inner.loop.body
            passes = k * fan * inner.loop.max_iterations
            yield from _walk(body.nodes, body.graph, body.order, f"{label}.", here, passes)
        if inner.flow is not None:
            child = inner.flow.plan
            yield from _walk(child.nodes, child.graph, child.order, f"{label}:", here, k * fan)


def _guard(label: str, nodes: Mapping[str, PlanNode]) -> dict[str, Any]:
    pn = nodes.get(label)
    out: dict[str, Any] = {"node": label, "kind": pn.kind if pn is not None else "gate"}
    if pn is not None and pn.approval is not None and pn.approval.when is not None:
        out["when"] = pn.approval.when.source  # asks a person only when this holds
    return out


def _taint_entry(p: TaintPath) -> dict[str, Any]:
    from runner.plan.rules.tainted_write import ref_text

    return {
        "path": " -> ".join(p.chain),
        "write": p.write,
        "arg": p.arg,
        "value": ref_text(p.ref),
        "checked_by": p.checked_by,
    }


def certificate(plan: Plan) -> dict[str, Any]:
    """The certificate as plain data (the `certificate` object of `validate --output json`)."""
    seen = list(_walk(plan.nodes, plan.graph, plan.order))
    by_label = {s.label: s.node for s in seen}
    loops = [
        {"node": s.label, "max_iterations": s.node.loop.max_iterations}
        for s in seen
        if s.node.loop is not None
    ]
    loops += [
        {"node": s.label, "max_iterations": s.node.map.inner.loop.max_iterations}
        for s in seen
        if s.node.map is not None and s.node.map.inner.loop is not None
    ]
    maps = [{"node": s.label, "max_items": s.node.map.max_items} for s in seen if s.node.map]
    tool_calls = 0
    writes: list[dict[str, Any]] = []
    sanitizers: dict[str, str] = {}
    for s in seen:
        fan = s.node.map.max_items if s.node.map is not None else 1
        inner = s.node.map.inner if s.node.map is not None else s.node
        if inner.tool is not None:
            tool_calls += s.times * fan * inner.retry.max_attempts
            if sanitizes(inner.tool):
                sanitizers[inner.tool.name] = str(inner.tool.contract.sanitizer)
        step = write_step(s.node)
        if step is None:
            continue
        entry: dict[str, Any] = {
            "node": s.label,
            "tool": step.name,
            "guards": [_guard(x, by_label) for x in s.guards],
        }
        ungated = getattr(s.node.spec, "ungated", None)
        if ungated:
            entry["ungated"] = ungated
        writes.append(entry)
    budget = plan.budget
    return {
        "proves": list(PROVES),
        "loops": loops,
        "maps": maps,
        "worst_case": {
            "usd": round(plan.cost.usd, 6),
            "llm_calls": plan.cost.llm_calls,
            "output_tokens": plan.cost.output_tokens,
            "tool_calls": tool_calls,
            "caps": budget.model_dump(exclude_none=True),
        },
        "writes": writes,
        "taint": [_taint_entry(p) for p in plan_taint_paths(plan.nodes, plan.graph, plan.order)],
        "sanitizers": sanitizers,
    }


def render_certificate(cert: Mapping[str, Any]) -> list[str]:
    """The certificate in the text summary of `flowrun validate`."""
    w = cert["worst_case"]
    loops = ", ".join(f"{x['node']} <= {x['max_iterations']}" for x in cert["loops"])
    maps = ", ".join(f"{x['node']} <= {x['max_items']} items" for x in cert["maps"])
    bounds = "; ".join(b for b in (loops, maps) if b) or "no loops or maps"
    lines = [
        "  certificate (what validate proves; docs/security.md)",
        f"    bounded      {bounds}",
        f"    worst case   ${w['usd']:.4f}, {w['llm_calls']} LLM calls, "
        f"{w['tool_calls']} tool calls",
    ]
    if not cert["writes"]:
        lines.append("    writes       none")
    for x in cert["writes"]:
        by = (
            ", ".join(
                f"{g['kind']} {g['node']}" + (" (conditional)" if "when" in g else "")
                for g in x["guards"]
            )
            or "nothing"
        )
        extra = f" (ungated: {x['ungated']})" if x.get("ungated") else ""
        lines.append(f"    write        {x['node']} ({x['tool']}) after {by}{extra}")
    for t in cert["taint"]:
        lines.append(f"    taint        {t['path']}: {t['checked_by'] or 'NOT CHECKED'}")
    for tool, why in cert["sanitizers"].items():
        lines.append(f"    sanitizer    {tool}: {why}")
    return lines
