"""`flowrun batch` (one run per line of a data set) and `flowrun batches` (issue 24).

The batch logic is runner/runs/batch.py, reusable by the console and the MCP server; this
module reads options, prints results and picks the exit code."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from runner.errors import UsageError
from runner.options import finite, not_empty
from runner.redact import echo, echo_json


@click.command()
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@click.option("--data", "data_path", metavar="FILE", help="the data set: FILE.jsonl or FILE.csv")
@click.option(
    "--map",
    "maps",
    multiple=True,
    metavar="INPUT=COLUMN",
    help="take the spec's input INPUT from the data's column COLUMN (repeatable)",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=4,
    show_default=True,
    help="the most runs at once (fewer while the provider answers 429: AIMD)",
)
@click.option(
    "--max-usd",
    type=click.FloatRange(min=0),
    callback=finite,
    metavar="USD",
    help="batch cost ceiling: no line starts once the batch has spent this (each run keeps "
    "its own cap)",
)
@click.option("--tenant", callback=not_empty, help="tenant the runs act for (recorded)")
@click.option("--profile", help="model routes to use (a name under `profiles`)")
@click.option("--responses", metavar="FILE", help="serve LLM calls from recorded responses (JSONL)")
@click.option(
    "--live", "live_writes", is_flag=True, help="perform write tools for real (default: dry-run)"
)
@click.option("--scopes", metavar="A,B", default="", help="scopes every run holds")
@click.option(
    "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--fail-under",
    type=click.FloatRange(0, 1),
    callback=finite,
    metavar="RATE",
    help="exit 0 when the completion rate is at least RATE (0-1), else 1 (for CI)",
)
@click.option("--resume", "resume_id", metavar="BATCH_ID", help="run a batch's unfinished lines")
@click.option("--batch-id", help="id for this batch (default: generated)")
@click.option(
    "--store",
    "store_opt",
    metavar="PATH",
    help="run store (default: $FLOWRUN_STORE or .flowrun/flowrun.db)",
)
@click.option(
    "--backend",
    type=click.Choice(["local", "temporal"]),
    default=None,
    help="run the lines here (local, the default) or as Temporal workflows run by `flowrun "
    "worker` (temporal)",
)
@click.option("--temporal-address", metavar="HOST:PORT", help="default 127.0.0.1:7233")
@click.option("--namespace", help="Temporal namespace (default: default)")
@click.option("--task-queue", help="Temporal task queue (default: flowrun)")
def batch(
    spec: str | None,
    data_path: str | None,
    maps: tuple[str, ...],
    concurrency: int,
    max_usd: float | None,
    tenant: str | None,
    profile: str | None,
    responses: str | None,
    live_writes: bool,
    scopes: str,
    fmt: str,
    fail_under: float | None,
    resume_id: str | None,
    batch_id: str | None,
    store_opt: str | None,
    backend: str | None,
    temporal_address: str | None,
    namespace: str | None,
    task_queue: str | None,
) -> None:
    """Run SPEC once per line of --data (JSONL or CSV), a few at a time, as one batch.

    Every line is a normal run (id BATCH_ID.LINE) in the store; a line that is bad input fails
    alone. Fewer lines run at once while the provider answers 429 (AIMD); with --backend
    temporal each line is a workflow that `flowrun worker` runs. `--resume BATCH_ID` runs only
    the lines without a finished run (a crashed run is continued, its effects not repeated).
    Results: a summary (text), or one JSON object per line on stdout (--output json, the
    summary then goes to stderr).

    Exit code: the worst line's (failed 1 > killed 7 > denied 5 > budget_exceeded 4 and not
    started 4 > escalated 3 > waiting 6 > succeeded 0), or with --fail-under 0/1; 2 for bad
    options or an unreadable data file (nothing recorded).
    """
    import asyncio

    from runner.runs import Placement, Runs, check_run_id, preflight
    from runner.runs import batch as b
    from runner.store import store_target

    if resume_id is not None:
        given = [
            name
            for name, v in (
                ("SPEC", spec),
                ("--data", data_path),
                ("--map", maps),
                ("--max-usd", max_usd),
                ("--tenant", tenant),
                ("--profile", profile),
                ("--responses", responses),
                ("--batch-id", batch_id),
                ("--backend", backend),
                ("--temporal-address", temporal_address),
                ("--namespace", namespace),
                ("--task-queue", task_queue),
            )
            if v
        ]
        if given:
            raise UsageError(
                f"--resume: {', '.join(given)} cannot be changed on resume",
                hint="a batch resumes with the options it was started with",
            )
        runs = Runs.open(store_opt)
        row, plan, recorded = b.open_batch(runs, resume_id)
        where = b.placement(row["options"])
        Runs.check_backend(where.backend)
        if where.backend == "local":  # a worker calls the models of a Temporal run, with its keys
            preflight(plan, recorded)
        asyncio.run(Runs.check_placement(where))  # no Temporal server: exit 2, nothing changed
        the_id = resume_id
    else:
        if spec is None or data_path is None:
            raise UsageError("give SPEC and --data FILE (or --resume BATCH_ID)")
        where = Placement(backend=backend or "local")
        if where.backend == "temporal":
            where = Placement(
                backend="temporal",
                address=temporal_address or "127.0.0.1:7233",
                namespace=namespace or "default",
                task_queue=task_queue or "flowrun",
            )
        elif temporal_address or namespace or task_queue:
            raise UsageError(
                "--temporal-address, --namespace and --task-queue need --backend temporal"
            )
        Runs.check_backend(where.backend)  # say which extra is missing before anything else
        from runner.cli import _load_plan, _require_local_extra

        plan = _load_plan(spec, profile)
        parsed_maps = b.parse_maps(maps)
        recorded = None
        if responses is not None:
            from runner.models.responses import RecordedResponses
            from runner.runs import check_responses

            recorded = RecordedResponses.load(Path(responses))
            check_responses(plan, recorded, responses)
        _require_local_extra(plan)
        if batch_id is not None:
            check_run_id(batch_id)
        lines = b.read_data(data_path, parsed_maps, plan)
        if where.backend == "local":  # a worker calls the models of a Temporal run, with its keys
            preflight(plan, recorded)
        asyncio.run(Runs.check_placement(where))  # no Temporal server: exit 2, nothing recorded
        # everything above only reads: bad options or data change nothing
        runs = Runs.open(store_opt, create=True)
        the_id = b.create_batch(
            runs,
            plan,
            lines,
            data_path=data_path,
            batch_id=batch_id,
            options={
                "profile": profile,
                "maps": parsed_maps,
                "concurrency": concurrency,
                "max_usd": max_usd,
                "tenant": tenant,
                "responses_path": str(Path(responses).resolve()) if responses else None,
                "live": live_writes,
                "scopes": [s.strip() for s in scopes.split(",") if s.strip()],
                **b.placement_options(where),
            },
        )
    click.echo(f"batch {the_id}", err=True)
    tty = sys.stderr.isatty()

    def report(text: str) -> None:
        """A progress line every few seconds: rewritten in place on a terminal."""
        click.echo("\r\x1b[2K" + text if tty else text, err=True, nl=not tty)

    asyncio.run(
        b.run_batch(
            runs,
            the_id,
            plan,
            responses=recorded,
            store_target=store_target(store_opt),  # with a PostgreSQL URL's password
            report=report,
        )
    )
    if tty:
        click.echo("", err=True)
    items = b.outcomes(runs, the_id)
    summary = b.summarize(items)
    if fmt == "json":
        for item in items:
            echo_json(item, indent=None)
        echo(b.render_summary(the_id, summary), err=True)
    else:
        echo(b.render_summary(the_id, summary))
    runs.close()
    _exit(b.exit_code(items, fail_under))


def _exit(code: int) -> None:
    """End a `flowrun batch` process: its exit handlers run (spans exported, files flushed),
    then the interpreter's own teardown is skipped — after litellm's import it takes seconds
    (3.6 s measured here) and nothing a finished batch needs happens in it; a process that used
    a Temporal client must skip it anyway (runner.temporal.hard_exit_if_needed). Inside another
    program (tests' CliRunner) this is a plain exit."""
    import atexit
    import os

    from runner import cli
    from runner.runs import end_process

    end_process(code)
    main = sys.modules.get("__main__")  # `python -m runner.cli`: main() ran in that module
    if cli._OWN_PROCESS or getattr(main, "_OWN_PROCESS", False):
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


@click.command()
@click.option(
    "--store",
    "store_opt",
    metavar="PATH",
    help="run store (default: $FLOWRUN_STORE or .flowrun/flowrun.db)",
)
@click.option(
    "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
def batches(store_opt: str | None, fmt: str, limit: int) -> None:
    """List batches, newest first, with their lines by status."""
    from runner.runs import Runs
    from runner.runs.batch import list_batches

    items: list[dict[str, Any]] = list_batches(Runs.open(store_opt), limit=limit)
    if fmt == "json":
        echo_json(items)
        return
    if not items:
        echo("no batches")
        return
    for x in items:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(x["created_at"]))
        counts = ", ".join(f"{n} {k}" for k, n in x["line_statuses"].items())
        echo(f"{x['batch_id']}  {x['workflow']:<20} {x['status']:<12} {when}  {counts}")
