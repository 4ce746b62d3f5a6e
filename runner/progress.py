"""Live node progress on a TTY (rich) and the final outcome, as text."""

from __future__ import annotations

import time
from typing import Any

from runner.engine.hooks import Hooks
from runner.engine.results import NodeResult, RunResult
from runner.plan.model import Plan

_MARK = {
    "succeeded": "[green]✓[/]",
    "failed": "[red]✗[/]",
    "skipped": "[dim]–[/]",
    "escalated": "[yellow]↑[/]",
    "budget_exceeded": "[red]$[/]",
    "denied": "[red]⊘[/]",
    "waiting": "[cyan]…[/]",
    "killed": "[red]☠[/]",
}


_PLAIN = {"succeeded": "✓", "failed": "✗", "skipped": "–", "escalated": "↑", "waiting": "…"}


class _Live(Hooks):
    def __init__(self, plan: Plan) -> None:
        from rich.console import Console
        from rich.live import Live

        self.plan = plan
        self.state: dict[str, str] = {n: "pending" for n in plan.order}
        self.started: dict[str, float] = {}
        console = Console(stderr=True)
        self.live = Live(self._table(), console=console, refresh_per_second=8, transient=True)
        self.live.start()

    def _table(self) -> Any:
        from rich.table import Table

        t = Table(box=None, show_header=False, pad_edge=False)
        for nid in self.plan.order:
            st = self.state[nid]
            mark = _MARK.get(st, "[cyan]⠿[/]" if st == "running" else "[dim]·[/]")
            t.add_row(mark, nid, self.plan.nodes[nid].kind, st)
        return t

    async def node_started(self, *, run_id: str, node_id: str, **_: Any) -> None:
        self.state[node_id] = "running"
        self.started[node_id] = time.perf_counter()
        self.live.update(self._table())

    async def node_finished(self, *, run_id: str, result: NodeResult, **_: Any) -> None:
        self.state[result.node_id] = result.status
        self.live.update(self._table())

    def stop(self) -> None:
        self.live.stop()


def progress_hooks(plan: Plan, *, enabled: bool) -> tuple[Hooks | None, _Live | None]:
    """Live progress on a TTY; None when off, so the run fans no hook call out to a no-op."""
    if not enabled:
        return None, None
    live = _Live(plan)
    return live, live


def render_result(plan: Plan, result: RunResult) -> str:
    rows = []
    for nid in plan.order:
        r = result.nodes.get(nid)
        if r is None:
            rows.append(f"  ·  {nid:<16} not started")
            continue
        mark = _PLAIN.get(r.status, "!")
        bits = [f"{r.duration_s * 1000:.0f} ms"]
        if r.model:
            bits.append(r.model)
        if r.usage.tokens:
            bits.append(f"{r.usage.tokens} tok")
        if r.usage.cost_usd:
            bits.append(f"${r.usage.cost_usd:.6f}")
        if r.attempts > 1:
            bits.append(f"{r.attempts} attempts")
        why = r.error or r.detail.get("reason") or ""
        line = f"  {mark}  {nid:<16} {r.status:<15} {', '.join(bits)}"
        if why:
            line += f"  — {why}"
        rows.append(line)
    u = result.usage
    head = f"run {result.run_id} ({result.workflow}): {result.status}"
    if result.reason:
        head += f" — {result.reason}"
    tail = (
        f"  total: ${u.cost_usd:.6f}, {u.tokens} tokens, {u.llm_calls} LLM calls, "
        f"{u.tool_calls} tool calls, {result.duration_s:.2f} s"
    )
    import json

    outputs = [f"  output {k}: {json.dumps(v, default=str)}" for k, v in result.outputs.items()]
    return "\n".join([head, *rows, tail, *outputs])
