"""`flowrun trace`, `flowrun stats`, `flowrun replay`: what a run did, what runs cost, what-ifs."""

from __future__ import annotations

import click

from runner.options import not_empty
from runner.redact import echo, echo_json, show

_store_opt = click.option(
    "--store",
    "store_opt",
    metavar="PATH",
    help="run store (default: $FLOWRUN_STORE or .flowrun/flowrun.db)",
)
_output_opt = click.option(
    "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)


@click.command()
@click.argument("run_id")
@_store_opt
@_output_opt
def trace(run_id: str, store_opt: str | None, fmt: str) -> None:
    """Show a recorded run as a tree: per node duration, model, tokens, cost, attempts, policy."""
    from runner.store import open_store
    from runner.trace.tree import render_trace, trace_data

    data = show(trace_data(open_store(store_opt, create=False), run_id))
    if fmt == "json":
        echo_json(data)
    else:
        echo(render_trace(data))


@click.command()
@click.option("--workflow", callback=not_empty, help="only runs of this workflow")
@click.option("--tenant", callback=not_empty, help="only runs of this tenant")
@click.option("--since", metavar="WHEN", help="only runs started since (30m, 24h, 7d, ISO date)")
@_store_opt
@_output_opt
def stats(
    workflow: str | None, tenant: str | None, since: str | None, store_opt: str | None, fmt: str
) -> None:
    """Completion and escalation rates, latency and cost percentiles, tool errors, undo rate."""
    from runner.options import since as parse_since
    from runner.store import open_store
    from runner.trace.stats import compute_stats, render_stats

    when = parse_since(since) if since is not None else None
    s = compute_stats(
        open_store(store_opt, create=False), workflow=workflow, tenant=tenant, since=when
    )
    if fmt == "json":
        echo_json(s)  # value by value: redacting the JSON text could cut into a number
    else:
        echo(render_stats(s))


@click.command()
@click.argument("run_id")
@click.option(
    "--spec", "spec", metavar="FILE", help="replay against this spec (default: the run's)"
)
@click.option("--rerun", metavar="NODE,...", help="run these nodes again even if unchanged")
@click.option("--profile", help="model routes for the nodes that run again")
@click.option(
    "--responses", metavar="FILE", help="recorded answers for the nodes that run again (JSONL)"
)
@_store_opt
@_output_opt
@click.option(
    "--full",
    is_flag=True,
    help="serve the recorded calls from the full transcript in the vault (needs the key and "
    "--reason; the output stays redacted)",
)
@click.option("--reason", default=None, help="why you read the full transcript (recorded)")
@click.option(
    "--by", default=None, callback=not_empty, help="who reads it (recorded; default: user@host)"
)
def replay(
    run_id: str,
    spec: str | None,
    rerun: str | None,
    profile: str | None,
    responses: str | None,
    store_opt: str | None,
    fmt: str,
    full: bool = False,
    reason: str | None = None,
    by: str | None = None,
) -> None:
    """Re-execute a recorded run offline and print what changed; writes never happen.

    Unchanged nodes get their recorded model answers and tool results; changed or named nodes
    run again (models through --profile or --responses, write tools as dry runs).
    Exit codes: 0 replayed (whatever the outcome), 2 unknown run or not replayable.
    """
    import asyncio

    from runner.store import open_store
    from runner.trace.replay import outcome_diff, render_diff, replay_run

    names = tuple(n.strip() for n in (rerun or "").split(",") if n.strip())
    store = open_store(store_opt, create=False)
    calls = None
    if full:
        from runner.runs import Runs
        from runner.vault_cli import calls_of, read_full

        calls = calls_of(read_full(Runs(store), run_id, reason=reason, by=by, how="replay"))
    r = asyncio.run(
        replay_run(
            store,
            run_id,
            spec=spec,
            rerun=names,
            profile=profile,
            responses=responses,
            calls=calls,
        )
    )
    d = outcome_diff(r)
    d = show(d)
    if fmt == "json":
        echo_json(d)
    else:
        echo(render_diff(d))


TRACE_COMMANDS: tuple[click.Command, ...] = (trace, stats, replay)
