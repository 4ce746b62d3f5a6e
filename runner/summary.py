"""The one-screen summary of `flowrun validate`: shape, routes, tools, budget, worst-case cost."""

from __future__ import annotations

from collections import Counter
from typing import Any

from runner.plan.certificate import certificate, render_certificate
from runner.plan.compile import Compiler
from runner.plan.cost import cost_under
from runner.plan.model import Plan


def summarize(plan: Plan) -> dict[str, Any]:
    spec = plan.loaded.spec
    compiler = Compiler(plan.loaded)
    profiles: list[str | None] = [None, *spec.profiles]
    routes: dict[str, dict[str, list[str]]] = {}
    costs: dict[str, dict[str, Any]] = {}
    for prof in profiles:
        label = prof or "default"
        r = compiler.resolve_routes(prof)
        routes[label] = {alias: list(route.models) for alias, route in r.items()}
        est = cost_under(plan, prof)
        costs[label] = {
            "usd": round(est.usd, 6),
            "llm_calls": est.llm_calls,
            "output_tokens": est.output_tokens,
            "unpriced_models": list(est.unpriced_models),
        }
    return {
        "spec": plan.loaded.path,
        "workflow": plan.name,
        "valid": True,
        "nodes": dict(Counter(n.kind for n in plan.nodes.values())),
        "node_count": len(plan.nodes),
        "edges": plan.graph.number_of_edges(),
        "order": list(plan.order),
        "routes": routes,
        "tools": {name: t.effect for name, t in spec.tools.items()}
        | {  # MCP tools: the effect resolved from the lock (runner/mcp/contracts.py)
            n.tool.name: n.tool.contract.effect
            for n in plan.nodes.values()
            if n.tool is not None and n.tool.contract.mcp is not None
        },
        "budget": spec.budget.model_dump(exclude_none=True),
        "worst_case_cost": costs,
        "warnings": [w.render() for w in plan.warnings],
        "certificate": certificate(plan),
    }


def render_summary(s: dict[str, Any]) -> str:
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(s["nodes"].items()))
    lines = [
        f"{s['spec']}: ok — workflow {s['workflow']!r}",
        f"  nodes    {s['node_count']} ({kinds}), {s['edges']} edges",
    ]
    tools = ", ".join(f"{t} ({e})" for t, e in s["tools"].items()) or "(none)"
    lines.append(f"  tools    {tools}")
    aliases = sorted({a for r in s["routes"].values() for a in r})
    if aliases:
        lines.append("  models   " + "  ".join(f"[{p}]" for p in s["routes"]))
        for alias in aliases:
            cells = []
            for r in s["routes"].values():
                models = r.get(alias, [])
                cell = models[0] if models else "-"
                if len(models) > 1:
                    cell += f" (+{len(models) - 1} fallback{'s' if len(models) > 2 else ''})"
                cells.append(cell)
            lines.append(f"    {alias}: " + " | ".join(cells))
    budget = ", ".join(f"{k} {v}" for k, v in s["budget"].items()) or "no caps"
    lines.append(f"  budget   {budget}")
    for prof, c in s["worst_case_cost"].items():
        extra = f"; unpriced: {', '.join(c['unpriced_models'])}" if c["unpriced_models"] else ""
        lines.append(
            f"  worst-case cost [{prof}] ${c['usd']:.4f} "
            f"({c['llm_calls']} LLM calls, {c['output_tokens']} output tokens){extra}"
        )
    cap = s["budget"].get("max_usd")
    if cap is not None:
        over = [p for p, c in s["worst_case_cost"].items() if c["usd"] > cap]
        if over:
            lines.append(f"  note     worst case exceeds max_usd ${cap:g} under: {', '.join(over)}")
    if "certificate" in s:
        lines += render_certificate(s["certificate"])
    return "\n".join(lines)
