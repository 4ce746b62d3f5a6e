"""Operate durable runs: runs, show, resume, approve, reject, inbox, kill, writes, undo, sweep."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from runner.errors import ExitCode, UsageError
from runner.redact import echo, echo_json
from runner.redact import show as shown
from runner.runs import STATUS_EXIT, NotFound, Observe, Runs, end_process

F = Callable[..., Any]


def store_option(f: F) -> F:
    return click.option(
        "--store",
        "store_opt",
        metavar="PATH",
        help="run store (default: $FLOWRUN_STORE or .flowrun/flowrun.db)",
    )(f)


def output_option(f: F) -> F:
    return click.option(
        "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
    )(f)


def _open(store_opt: str | None) -> Runs:
    return Runs.open(store_opt)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _finish(result: Any, fmt: str) -> None:
    """Print a run's outcome after resuming it, and exit with the outcome's code."""
    _finish_text(result, fmt)
    sys.exit(STATUS_EXIT[result.status])


def _finish_text(result: Any, fmt: str) -> None:
    if fmt == "json":
        echo_json(result.to_json())
    else:
        line = f"run {result.run_id} ({result.workflow}): {result.status}"
        if result.reason:
            line += f" — {result.reason}"
        echo(line)


def _resume(runs: Runs, run_id: str, fmt: str, observe: Observe | None = None) -> None:
    import asyncio

    _finish(asyncio.run(runs.resume(run_id, observe=observe)), fmt)


@click.command()
@store_option
@output_option
@click.option("--status", help="only runs with this status")
@click.option("--workflow", help="only runs of this workflow")
@click.option("--tenant", help="only runs of this tenant")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
def runs(
    store_opt: str | None,
    fmt: str,
    status: str | None,
    workflow: str | None,
    tenant: str | None,
    limit: int,
) -> None:
    """List runs, newest first."""
    rows = _open(store_opt).list_runs(status=status, workflow=workflow, tenant=tenant, limit=limit)
    if fmt == "json":
        echo_json(
            [
                {
                    "run_id": r.run_id,
                    "workflow": r.workflow,
                    "status": r.status,
                    "reason": r.reason,
                    "tenant": r.tenant,
                    "actor": r.actor,
                    "cost_usd": r.cost_usd,
                    "tokens": r.tokens,
                    "created_at": r.created_at,
                    "finished_at": r.finished_at,
                }
                for r in rows
            ]
        )
        return
    if not rows:
        echo("no runs")
        return
    for r in rows:
        echo(
            f"{r.run_id}  {r.workflow:<20} {r.status:<15} ${r.cost_usd:.6f}  "
            f"{_when(r.created_at)}  {r.tenant or ''}"
        )


def _show_batch(runs: Runs, batch_id: str, fmt: str, missing: NotFound) -> None:
    """`flowrun show BATCH_ID`: the batch's summary and lines (the run's NotFound otherwise)."""
    from runner.runs import batch as b

    try:
        batch = b.batch_row(runs, batch_id)
    except NotFound:
        raise missing from None
    items = b.outcomes(runs, batch_id)
    summary = b.summarize(items)
    if fmt == "json":
        echo_json({**batch, "status": b.batch_state(batch), "summary": summary, "lines": items})
        return
    echo(
        f"batch {batch_id} ({batch['workflow']}): {b.batch_state(batch)}; data {batch['data_path']}"
    )
    echo(b.render_summary(batch_id, summary))
    for i in items:
        why = f" — {i['reason']}" if i["reason"] else ""
        echo(f"  line {i['line']}: {i['run_id'] or '-'} {i['status']} ${i['cost_usd']:.6f}{why}")


@click.command()
@click.argument("run_id")
@store_option
@output_option
@click.option(
    "--full",
    is_flag=True,
    help="the full transcript, unredacted, from the vault (needs the vault key and --reason)",
)
@click.option("--reason", default=None, help="why you read the full transcript (recorded)")
@click.option("--by", default=None, help="who reads it (recorded; default: user@host)")
def show(
    run_id: str,
    store_opt: str | None,
    fmt: str,
    full: bool = False,
    reason: str | None = None,
    by: str | None = None,
) -> None:
    """Show a run: per node status, output, attempts, model, cost, duration; totals and outcome.

    A batch's id (`flowrun batches`) shows the batch: its summary and each line's outcome.
    With --full, the run's full transcript from the vault, as it was (docs/intake.md)."""
    runs = _open(store_opt)
    if full:
        from runner.vault_cli import show_full

        show_full(runs, run_id, reason=reason, by=by, fmt=fmt)
        return
    try:
        row = runs.get(run_id)
    except NotFound as missing:
        _show_batch(runs, run_id, fmt, missing)
        return
    nodes = runs.nodes(run_id)
    approvals = runs.inbox(run_id)
    ledger = runs.effects(run_id)
    spend = runs.spend(run_id)
    # every value shown redacted (key-named fields too); echo redacts the text it prints again
    inputs, outputs, nodes, approvals = shown([row.inputs, row.outputs, nodes, approvals])
    if fmt == "json":
        echo_json(
            {
                "run_id": row.run_id,
                "workflow": row.workflow,
                "status": row.status,
                "reason": row.reason,
                "profile": row.profile,
                "bundle_digest": row.bundle_digest,
                "tenant": row.tenant,
                "actor": row.actor,
                "inputs": inputs,
                "outputs": outputs,
                "totals": {
                    "cost_usd": row.cost_usd,
                    "tokens": row.tokens,
                    "llm_calls": row.llm_calls,
                    "tool_calls": row.tool_calls,
                    "duration_s": row.duration_s,
                },
                "nodes": nodes,
                "waiting_approvals": approvals,
                "effects": [
                    {k: e[k] for k in ("key", "node_id", "tool", "effect", "status", "undone")}
                    for e in ledger
                ],
                "model_calls": [s for s in spend if s.get("kind", "llm") == "llm"],
                "tool_bills": [s for s in spend if s.get("kind") == "tool"],
            }
        )
        return
    head = f"run {row.run_id} ({row.workflow}): {row.status}"
    if row.reason:
        head += f" — {row.reason}"
    echo(head)
    echo(f"  started {_when(row.created_at)}  finished {_when(row.finished_at)}")
    if row.bundle_digest:
        echo(f"  plan bundle sha256:{row.bundle_digest}")
    for node_id, n in nodes.items():
        usage = n.get("usage") or {}
        bits = [f"{(n.get('duration_s') or 0) * 1000:.0f} ms", f"attempts {n.get('attempts', 0)}"]
        if n.get("model"):
            bits.append(n["model"])
        if usage.get("cost_usd"):
            bits.append(f"${usage['cost_usd']:.6f}")
        echo(f"  {node_id:<16} {n['status']:<15} {', '.join(bits)}")
        if n.get("output") is not None:
            echo(f"      output: {json.dumps(n['output'], default=str)[:300]}")
        planned = (n.get("detail") or {}).get("planned")
        if planned is not None:
            echo(f"      planned change (dry run): {json.dumps(planned, default=str)[:500]}")
        for d in (n.get("detail") or {}).get("policy") or []:
            echo(f"      policy: {d['effect']} by {d['rule']} — {d['reason']}")
        if n.get("error"):
            echo(f"      error: {n['error']}")
    for a in approvals:
        echo(f"  waiting for approval at {a['node_id']}: {a['summary']}")
    for e in ledger:
        if e["effect"] == "write":
            state = "undone" if e["undone"] else e["status"]
            echo(f"  effect {e['tool']} [{e['key']}] {state}")
    cut = [s for s in spend if s["status"] in ("open", "cancelled")]
    if cut:
        echo(
            f"  {len(cut)} call(s) without a bill (in flight, or cut off by a crash, a kill "
            f"or a timeout) count at their reservation: ${sum(s['usd'] for s in cut):.6f}"
        )
    echo(
        f"  total: ${row.cost_usd:.6f}, {row.tokens} tokens, {row.llm_calls} LLM calls, "
        f"{row.tool_calls} tool calls, {row.duration_s:.2f} s"
    )
    if outputs:
        for k, v in outputs.items():
            echo(f"  output {k}: {json.dumps(v, default=str)}")


def observe_options(f: F) -> F:
    """Where the continued run's spans go; by default where the run's start sent them."""
    f = click.option("--trace-console", is_flag=True, help="print spans to stderr (debugging)")(f)
    return click.option(
        "--otlp-endpoint", metavar="URL", help="send OpenTelemetry spans here (OTLP/HTTP)"
    )(f)


def _observe(otlp_endpoint: str | None, trace_console: bool) -> Observe:
    return Observe(otlp_endpoint=otlp_endpoint, console=trace_console)


@click.command()
@click.argument("run_id")
@store_option
@output_option
@observe_options
def resume(
    run_id: str, store_opt: str | None, fmt: str, otlp_endpoint: str | None, trace_console: bool
) -> None:
    """Continue a run whose process died (or that waits) from its last checkpoint."""
    _resume(_open(store_opt), run_id, fmt, _observe(otlp_endpoint, trace_console))


def _decide(
    runs: Runs,
    run_id: str,
    node: str,
    fmt: str,
    no_resume: bool,
    observe: Observe,
    **decision: Any,
) -> None:
    """Record the decision, then follow the run: resumed here (local) or on its workflow."""
    import asyncio

    def recorded(verb: str) -> None:
        # the decider's identity is not run data: shown as is
        click.echo(f"{verb} {run_id} at {node} by {decision['by']}", err=True)

    decided = asyncio.run(
        runs.decide(
            run_id, node, follow=not no_resume, observe=observe, recorded=recorded, **decision
        )
    )
    if decided.result is None:
        end_process(0)
        return
    _finish_text(decided.result, fmt)
    end_process(STATUS_EXIT[decided.result.status])
    sys.exit(STATUS_EXIT[decided.result.status])


def _decision(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--decision: not JSON: {e.msg}") from None


@click.command()
@click.argument("run_id")
@click.argument("node")
@click.option("--by", required=True, help="who approves (recorded in the audit trail)")
@click.option("--decision", metavar="JSON", help="a decision matching the node's decision schema")
@click.option("--no-resume", is_flag=True, help="only record the decision; resume later")
@store_option
@output_option
@observe_options
def approve(
    run_id: str,
    node: str,
    by: str,
    decision: str | None,
    no_resume: bool,
    store_opt: str | None,
    fmt: str,
    otlp_endpoint: str | None,
    trace_console: bool,
) -> None:
    """Approve a waiting approval node, then continue the run in this process."""
    _decide(
        _open(store_opt),
        run_id,
        node,
        fmt,
        no_resume,
        _observe(otlp_endpoint, trace_console),
        approve=True,
        by=by,
        decision=_decision(decision),
    )


@click.command()
@click.argument("run_id")
@click.argument("node")
@click.option("--by", required=True, help="who rejects (recorded in the audit trail)")
@click.option("--reason", required=True, help="why (recorded)")
@click.option("--no-resume", is_flag=True, help="only record the decision; resume later")
@store_option
@output_option
@observe_options
def reject(
    run_id: str,
    node: str,
    by: str,
    reason: str,
    no_resume: bool,
    store_opt: str | None,
    fmt: str,
    otlp_endpoint: str | None,
    trace_console: bool,
) -> None:
    """Reject a waiting approval node; the run ends denied."""
    _decide(
        _open(store_opt),
        run_id,
        node,
        fmt,
        no_resume,
        _observe(otlp_endpoint, trace_console),
        approve=False,
        by=by,
        reason=reason,
    )


@click.command()
@store_option
@output_option
def inbox(store_opt: str | None, fmt: str) -> None:
    """List approvals that wait, oldest first, with their summaries."""
    items = _open(store_opt).inbox()
    if fmt == "json":
        echo_json(items)
        return
    if not items:
        echo("nothing waits for approval")
        return
    now = time.time()
    for a in items:
        age = int(now - a["requested_at"])
        due = ""
        if a.get("timeout_at"):
            left = int(a["timeout_at"] - now)
            due = f", times out in {left}s" if left > 0 else ", timed out"
        who = f" for {', '.join(a['assignees'])}" if a.get("assignees") else ""
        echo(f"{a['run_id']}  {a['node_id']:<14} waiting {age}s{due}{who}")
        echo(f"    {a['summary']}")


@click.command()
@click.argument("run_id")
@click.option("--by", help="who kills the run (recorded)")
@store_option
def kill(run_id: str, by: str | None, store_opt: str | None) -> None:
    """Stop a run at its next node boundary (status killed)."""
    import asyncio

    outcome = asyncio.run(_open(store_opt).kill(run_id, by=by))
    echo(f"{run_id}: {outcome}")
    end_process(0)  # a Temporal run was cancelled through a client (issue 10)


@click.command()
@click.argument("state", required=False, type=click.Choice(["on", "off"]))
@click.option("--by", help="who flips the switch (recorded)")
@store_option
def writes(state: str | None, by: str | None, store_opt: str | None) -> None:
    """Show or flip the global writes switch: `off` makes every write in every run refuse."""
    runs = Runs.open(store_opt, create=True) if state else _open(store_opt)
    if state is not None:
        runs.set_writes(state == "on", by)
    echo(f"writes are {'on' if runs.writes_enabled() else 'off'}")


@click.command()
@click.argument("run_id")
@click.option("--by", help="who undoes the run (recorded)")
@store_option
@output_option
def undo(run_id: str, by: str | None, store_opt: str | None, fmt: str) -> None:
    """Run the compensations of a run's completed writes, newest first."""
    import asyncio

    report = asyncio.run(_open(store_opt).undo(run_id, by=by))
    if fmt == "json":
        echo_json(report)
    elif not report:
        echo(f"{run_id}: no completed writes to undo")
    for e in report if fmt == "text" else []:
        echo(f"{e['node_id']:<14} {e['tool']:<16} {e['status']}")
    if any(e["status"].startswith("failed") for e in report):
        sys.exit(ExitCode.FAILED)


@click.command()
@store_option
def sweep(store_opt: str | None) -> None:
    """Resume every waiting run whose approval timed out, so its on_timeout applies."""
    import asyncio

    due = asyncio.run(_open(store_opt).sweep())
    for run_id, status in due:
        echo(f"{run_id}: {status}")
    if not due:
        echo("no approval has timed out")


OPS_COMMANDS = (runs, show, resume, approve, reject, inbox, kill, writes, undo, sweep)
