"""`flowrun shadow NEW_SPEC --runs FILTER`: a new spec version as a dry run on recorded runs.

Exit codes: 0 shadowed (whatever changed), 1 with --fail-on-change when a decision changed,
2 bad input (nothing was run).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from runner.errors import FlowrunError, UsageError
from runner.redact import echo, echo_error, show


@click.command("shadow")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--runs",
    "runs_filter",
    default="",
    metavar="FILTER",
    help="which recorded runs: since=7d,status=S,tenant=T,limit=N,live=true|false|any,"
    "workflow=W, or run ids (default: the last 20 live runs of the spec's workflow)",
)
@click.option("--profile", help="model routes for the nodes the new version changed")
@click.option("--responses", metavar="FILE", help="recorded answers for the changed LLM nodes")
@click.option("--fail-on-change", is_flag=True, help="exit 1 when a run's decision changed")
@click.option(
    "--record", is_flag=True, help="keep the summary in the store: `flowrun readiness` shows it"
)
@click.option(
    "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--store", "store_opt", metavar="PATH", help="run store (default: $FLOWRUN_STORE)")
def shadow(
    spec: str,
    runs_filter: str,
    profile: str | None,
    responses: str | None,
    fail_on_change: bool,
    record: bool,
    fmt: str,
    store_opt: str | None,
) -> None:
    """Execute a new spec version as a dry run on the inputs of recorded runs of the old one.

    Unchanged nodes get the recorded answers and tool results; changed nodes run again, writes
    as previews. Reports per run: decision changes, cost, and tool-call differences.
    """
    import asyncio

    from runner.readiness_cli import load
    from runner.runs.shadow import RunFilter, select
    from runner.runs.shadow import record as record_shadow
    from runner.runs.shadow import shadow as run_shadow
    from runner.store import open_store

    try:
        f = RunFilter.parse(runs_filter)
        plan = load(spec, profile)
        store = open_store(store_opt, create=False)
        rows = select(store, plan, f)
        if not rows:
            raise UsageError(
                f"no recorded run of {f.workflow or plan.name!r} matches --runs {runs_filter!r}",
                hint="live runs only by default; add live=any to include dry runs",
            )
        report = asyncio.run(
            run_shadow(store, spec, plan, rows, profile=profile, responses=responses)
        )
        if record:
            record_shadow(store, plan, report)
    except FlowrunError as e:
        echo_error(e)
        sys.exit(e.exit_code)
    report = show(report)
    if fmt == "json":
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        echo(render(report))
    changed = report["summary"]["decisions_changed"]
    sys.exit(1 if fail_on_change and changed else 0)


def render(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [
        f"shadow of {report['spec']} on {s['runs']} recorded run(s) of {report['workflow']}: "
        f"{s['decisions_changed']} decision(s) changed, {s['tool_calls_changed']} with other "
        f"tool calls, cost ${s['cost_before_usd']:.6f} -> ${s['cost_after_usd']:.6f}"
        + (f", {s['errors']} not replayable" if s["errors"] else ""),
    ]
    for r in report["runs"]:
        if "error" in r:
            lines.append(f"  {r['run_id']}  not replayable: {r['error']}")
            continue
        mark = "CHANGED" if r["decision_changed"] else "same   "
        st, cost = r["status"], r["cost_usd"]
        lines.append(
            f"  {r['run_id']}  {mark}  {st['before']} -> {st['after']}  "
            f"${cost['before']:.6f} -> ${cost['after']:.6f} ({cost['delta']:+.6f})"
        )
        for n in r["nodes_changed"]:
            lines.append(f"      node {n['node_id']}: {n['before']} -> {n['after']}")
        for tool, c in r["tool_calls"].items():
            lines.append(f"      tool {tool}: {c['before']} -> {c['after']} call(s)")
        if r["decision_changed"] and r["reason"]:
            lines.append(f"      reason: {r['reason']}")
    return "\n".join(lines)
