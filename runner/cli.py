"""The `flowrun` command (validate, execute, schema): shells get exit codes, callers exceptions."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from runner import __version__, files, started_as_flowrun
from runner.errors import ExitCode, FlowrunError, UsageError

MAX_INPUT_BYTES = 16 * 1024 * 1024  # a task input is a JSON object, not a data set


def _fail(err: FlowrunError) -> NoReturn:
    from runner.redact import echo_error

    echo_error(err)
    sys.exit(err.exit_code)


def _freeze_heap() -> None:
    """Move every object made so far (imported modules, the compiled plan) out of the cyclic
    garbage collector's sight for the rest of this process.

    perf (issue 26): a `flowrun` command is one short process; its imports leave ~300,000
    long-lived objects that every full collection triggered by the spec's and the run's own
    allocations walks again. Freezing them took ~10-15% off validating a 2,000-node spec and
    executing a 500-node chain. Only in a `flowrun` process (main()), never where the command
    runs inside another program (click's CliRunner in tests, library use)."""
    if _OWN_PROCESS:
        import gc

        gc.freeze()


_OWN_PROCESS = False  # set by main(): this interpreter exists to run one flowrun command


def _load_plan(spec: str, profile: str | None) -> Any:
    """The spec's plan; a `flowrun` process keeps it for the next command (runner/plan/cache.py)."""
    _freeze_heap()
    if _OWN_PROCESS:
        from runner.plan.cache import load_plan

        return load_plan(spec, profile)
    from runner.plan.compile import compile_plan
    from runner.spec import load_spec

    return compile_plan(load_spec(spec), profile)


# Every command outside this module: name -> ("module:attribute", its short help in `--help`).
# A command's module is imported only when that command runs (or its own --help is shown), so
# `flowrun --help` and `flowrun validate` never pay for the run stack, Temporal or the web server.
# A new command is one line here; tests/cli/test_lazy.py checks each entry against its command.
COMMANDS: dict[str, tuple[str, str]] = {
    "approve": ("runner.ops_cli:approve", "Approve a waiting approval node, then resume the run."),
    "autonomy": ("runner.autonomy_cli:autonomy", "Show, promote or demote write tools' autonomy."),
    "batch": ("runner.batch_cli:batch", "Run a spec once per line of a data set, as one batch."),
    "budgets": ("runner.budgets_cli:budgets_group", "Ceilings over many runs and rate limits."),
    "batches": ("runner.batch_cli:batches", "List batches, newest first."),
    "diff": ("runner.review_cli:diff", "Semantic diff of two spec versions for review."),
    "eval": ("runner.eval_cli:eval_command", "Run eval cases against a spec; hold them to gates."),
    "graph": ("runner.review_cli:graph", "Draw a spec: node kinds, conditions on edges, models."),
    "inbox": ("runner.ops_cli:inbox", "List approvals that wait, oldest first."),
    "init": ("runner.init_cli:init_command", "Create a workflow project in DIR."),
    "intake": ("runner.intake_cli:intake", "Start runs from signed webhooks (POST /hooks/NAME)."),
    "kill": ("runner.ops_cli:kill", "Stop a run at its next node boundary (status killed)."),
    "mcp": ("runner.mcp_cli:mcp_group", "Serve workflows to MCP clients."),
    "policy": ("runner.policy_cli:policy", "Work with a spec's policies."),
    "readiness": ("runner.readiness_cli:readiness", "Judge a workflow's five readiness gates."),
    "reject": ("runner.ops_cli:reject", "Reject a waiting approval node; the run ends denied."),
    "replay": ("runner.trace_cli:replay", "Re-execute a recorded run offline; print what changed."),
    "resume": ("runner.ops_cli:resume", "Continue a run whose process died (or that waits)."),
    "runs": ("runner.ops_cli:runs", "List runs, newest first."),
    "serve": ("runner.web_cli:serve", "Serve the web console: approval inbox, runs, graphs."),
    "shadow": ("runner.shadow_cli:shadow", "Run a new spec version as a dry run on recorded runs."),
    "show": ("runner.ops_cli:show", "Show a run: per node status, output, attempts, cost."),
    "stats": ("runner.trace_cli:stats", "Completion and escalation rates, latency and cost."),
    "store": ("runner.store_cli:store_group", "Work with run stores: copy one into PostgreSQL."),
    "sweep": ("runner.ops_cli:sweep", "Resume every waiting run whose approval timed out."),
    "tools": ("runner.mcp_cli:tools_group", "Tool contracts: lock what MCP servers say."),
    "trace": ("runner.trace_cli:trace", "Show a recorded run as a tree of its nodes."),
    "users": ("runner.users_cli:users", "Users and clients who may act, each with a token."),
    "undo": ("runner.ops_cli:undo", "Run the compensations of a run's completed writes."),
    "vault": ("runner.vault_cli:vault_group", "Full transcripts encrypted at rest: keys, rekey."),
    "worker": ("runner.temporal_cli:worker", "Run flowrun workflows on Temporal."),
    "writes": ("runner.ops_cli:writes", "Show or flip the global writes switch."),
}


class _Group(click.Group):
    """Lazy commands (COMMANDS) plus FlowrunError turned into its message and exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        import importlib

        module, _, attr = COMMANDS[cmd_name][0].partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List every command from the table, importing none of their modules."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)
        rows = []
        for name in names:
            if name in self.commands:
                cmd = self.commands[name]
                if cmd.hidden:
                    continue
                text = cmd.get_short_help_str(limit)
            else:
                text = click.Command(name, short_help=COMMANDS[name][1]).get_short_help_str(limit)
            rows.append((name, text))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FlowrunError as e:
            from runner.redact import echo_error
            from runner.runs import end_process

            echo_error(e)  # a message may quote a value (an input, a reason)
            end_process(e.exit_code)  # after talking to Temporal, exit at once (issue 10)
            ctx.exit(e.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowrun")
def cli() -> None:
    """Run LLM-agent workflows written as YAML graphs, in an envelope enforced outside the model."""


@cli.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--profile", help="check this profile's routes only (default: every profile)")
@click.option(
    "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--check-mcp", is_flag=True, help="also ask the MCP servers; fail on a stale lock")
@click.option(
    "--check-env",
    is_flag=True,
    help="also check that every model the run can call has its API key here (as execute does)",
)
def validate(
    specs: tuple[str, ...], profile: str | None, fmt: str, check_mcp: bool, check_env: bool
) -> None:
    """Check specs without spending a token: exit 0 with a summary, or 2 with every problem.

    Several SPECS (a pre-commit hook passes the changed ones) are each checked; the exit code
    is the worst of them.
    """
    worst = 0
    summaries = []
    for spec in specs:
        try:
            summaries.append(_validate_one(spec, profile, fmt, check_mcp, check_env))
        except FlowrunError as e:
            if len(specs) == 1:
                raise
            click.echo(e.render(), err=True)
            worst = max(worst, e.exit_code)
    if fmt == "json":
        out = summaries[0] if len(specs) == 1 else summaries
        click.echo(json.dumps(out, indent=2, sort_keys=False))
    if worst:
        sys.exit(worst)


def _validate_one(
    spec: str, profile: str | None, fmt: str, check_mcp: bool, check_env: bool
) -> Any:
    from runner.summary import summarize

    plan = _load_plan(spec, profile)
    if check_mcp:  # connect to the MCP servers: the lock must match them (runner/mcp_cli.py)
        from runner.mcp_cli import check_mcp as check_servers

        check_servers(plan)
    if check_env:
        from runner.models.credentials import check_credentials
        from runner.plan.routes import plan_models

        check_credentials(plan_models(plan))
    summary = summarize(plan)
    if fmt == "text":
        from runner.summary import render_summary

        click.echo(render_summary(summary))
        for w in plan.warnings:
            click.echo(w.render(), err=True)
    return summary


def _tighten_max_usd(plan: Any, max_usd: float) -> Any:
    """Lower the USD cap for this run only: a flag may narrow the envelope, never widen it."""
    cap = plan.budget.max_usd
    if cap is not None and max_usd > cap:
        click.echo(
            f"note: --max-usd {max_usd:g} is above the spec's max_usd {cap:g}; keeping {cap:g}",
            err=True,
        )
    return plan.with_max_usd(max_usd)


def _require_local_extra(plan: Any) -> None:
    """A `local/` model needs the [local] extra: say so before the run starts, as bad input."""
    import importlib.util

    used = {n.llm.alias for n in plan.nodes.values() if n.llm is not None}
    used |= {n.map.inner.llm.alias for n in plan.nodes.values() if n.map and n.map.inner.llm}
    local = sorted(
        m for a in used if a in plan.routes for m in plan.routes[a].models if m.startswith("local/")
    )
    if local and importlib.util.find_spec("llama_cpp") is None:
        raise UsageError(
            f"model {local[0]!r} runs in-process on llama-cpp-python, which is not installed",
            hint="pip install 'flowrun[local]' (or choose another --profile)",
        )


def _read_input(input_path: str | None, input_json: str | None) -> Any:
    if input_path and input_json:
        raise UsageError("give --input or --input-json, not both")
    if input_json is not None:
        try:
            return files.loads(input_json)
        except json.JSONDecodeError as e:
            raise UsageError(
                f"--input-json: not JSON: {e.msg} at line {e.lineno} column {e.colno}"
            ) from None
    if input_path is None:
        return {}
    p = Path(input_path)
    if not p.exists():
        raise UsageError(f"--input: no such file {input_path!r}")
    try:
        return files.loads(files.read_text(p, limit=MAX_INPUT_BYTES))
    except json.JSONDecodeError as e:
        raise UsageError(f"{input_path}:{e.lineno}:{e.colno}: not JSON: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--input: cannot read {input_path!r}: {e}") from None


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--input", "input_path", metavar="FILE", help="task input, a JSON object")
@click.option("--input-json", metavar="JSON", help="task input given inline")
@click.option("--responses", metavar="FILE", help="serve LLM calls from recorded responses (JSONL)")
@click.option("--profile", help="model routes to use (a name under `profiles`)")
@click.option(
    "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--run-id", help="id for this run (default: generated)")
@click.option(
    "--max-usd",
    type=click.FloatRange(min=0),
    metavar="USD",
    help="tighten the spec's budget.max_usd for this run (never loosens it)",
)
@click.option("--tenant", help="tenant the run acts for (recorded; filters `flowrun runs`)")
@click.option("--actor", help="who starts the run (the policy principal; recorded)")
@click.option(
    "--scopes",
    metavar="A,B",
    default="",
    help="scopes the run holds; a tool that declares scopes the run lacks is denied",
)
@click.option(
    "--live",
    "live_writes",
    is_flag=True,
    help="perform write tools for real (default: dry-run — writes run their preview)",
)
@click.option(
    "--store",
    "store_opt",
    metavar="PATH",
    help="run store (default: $FLOWRUN_STORE or .flowrun/flowrun.db)",
)
@click.option("--otlp-endpoint", metavar="URL", help="send OpenTelemetry spans here (OTLP/HTTP)")
@click.option(
    "--capture",
    type=click.Choice(["default", "full", "off"]),
    default="default",
    show_default=True,
    help="message content kept: PII-redacted, full (mode 0600 transcript, spans), or none",
)
@click.option("--trace-console", is_flag=True, help="print spans to stderr (debugging)")
# -- the Temporal backend (issue 10): runner/temporal_cli.py ------------------------------------
@click.option(
    "--backend",
    type=click.Choice(["local", "temporal"]),
    default="local",
    show_default=True,
    help="run here (local) or as a Temporal workflow run by `flowrun worker` (temporal)",
)
@click.option(
    "--temporal-address", default="127.0.0.1:7233", show_default=True, metavar="HOST:PORT"
)
@click.option("--namespace", default="default", show_default=True, help="Temporal namespace")
@click.option("--task-queue", default="flowrun", show_default=True, help="Temporal task queue")
def execute(
    spec: str,
    input_path: str | None,
    input_json: str | None,
    responses: str | None,
    profile: str | None,
    fmt: str,
    run_id: str | None,
    max_usd: float | None,
    tenant: str | None,
    actor: str | None,
    scopes: str,
    live_writes: bool,
    store_opt: str | None,
    otlp_endpoint: str | None,
    capture: Any,
    trace_console: bool,
    backend: str = "local",
    temporal_address: str = "127.0.0.1:7233",
    namespace: str = "default",
    task_queue: str = "flowrun",
) -> None:
    """Run a workflow to an outcome; the exit code tells which (see README).

    Writes are a dry run unless --live: a write tool runs its preview and the planned
    change is recorded. Every tool call is checked against the spec's policies first.

    Exit codes: 0 succeeded, 1 failed, 2 invalid input (nothing run), 3 escalated,
    4 budget_exceeded, 5 denied, 6 waiting, 7 killed, 70 internal error.
    """
    import asyncio

    from runner.models.responses import RecordedResponses
    from runner.runs import (
        STATUS_EXIT,
        Observe,
        Placement,
        Runs,
        check_inputs,
        check_responses,
        check_run_id,
        end_process,
        new_run_id,
        preflight,
    )

    Runs.check_backend(backend)  # say which extra is missing before anything else
    plan = _load_plan(spec, profile)
    if max_usd is not None:
        plan = _tighten_max_usd(plan, max_usd)
    inputs = check_inputs(plan, _read_input(input_path, input_json), input_path or "--input-json")
    recorded = None
    if responses is not None:
        recorded = RecordedResponses.load(Path(responses))
        check_responses(plan, recorded, responses)
    _require_local_extra(plan)
    if run_id is not None:
        check_run_id(run_id)  # bad input is reported as such, before the keys are asked for
    if backend == "local":  # keys are checked before the run exists (a worker has its own)
        preflight(plan, recorded)
    from runner.progress import progress_hooks, render_result

    _freeze_heap()  # the plan and the run stack's modules live as long as the process
    # everything above only reads: a bad spec, input or file changes nothing
    runs = Runs.open(store_opt, create=True)
    run_id = run_id or new_run_id()
    where = Placement(backend=backend)
    hooks, live = None, None
    if backend == "temporal":
        where = Placement(
            backend=backend, address=temporal_address, namespace=namespace, task_queue=task_queue
        )
        if trace_console:  # the endpoint is recorded with the run and the workers use it
            click.echo(
                "note: on --backend temporal the workers make the spans; --trace-console "
                "prints nothing here (use --otlp-endpoint, which the workers export to)",
                err=True,
            )
    else:
        hooks, live = progress_hooks(plan, enabled=fmt == "text" and sys.stderr.isatty())
    try:
        result = asyncio.run(
            runs.start(
                plan,
                inputs,
                run_id=run_id,
                responses=recorded,
                responses_path=responses,
                tenant=tenant,
                actor=actor,
                options={
                    "live": live_writes,
                    "scopes": [s.strip() for s in scopes.split(",") if s.strip()],
                    **({"max_usd": max_usd} if max_usd is not None else {}),
                },
                where=where,
                observe=Observe(
                    otlp_endpoint=otlp_endpoint, console=trace_console, capture=capture
                ),
                hooks=hooks,
            )
        )
    finally:
        if live is not None:
            live.stop()
    from runner.redact import echo, echo_json

    if fmt == "json":
        echo_json(result.to_json())
    else:
        echo(render_result(plan, result))
    end_process(STATUS_EXIT[result.status])
    sys.exit(STATUS_EXIT[result.status])


@cli.command()
@click.option(
    "--check", "check_file", metavar="FILE", help="exit 1 if FILE differs from the generated schema"
)
def schema(check_file: str | None) -> None:
    """Print the JSON Schema of the spec language (flowrun/v1)."""
    from runner.spec.schema import schema_text

    text = schema_text()
    if check_file is not None:
        p = Path(check_file)
        current = p.read_text(encoding="utf-8") if p.is_file() else ""
        if current != text:
            click.echo(
                f"{check_file} is stale; regenerate it with: flowrun schema > {check_file}",
                err=True,
            )
            sys.exit(ExitCode.FAILED)
        click.echo(f"{check_file} is up to date")
        return
    click.echo(text, nl=False)


def main() -> None:
    """Console entry point: every error becomes a message and an exit code, never a traceback."""
    global _OWN_PROCESS
    # a program calling main() in its own process (a test runner) is neither frozen nor ended
    # by os._exit after main() returns, whatever its argv says during the call
    _OWN_PROCESS = started_as_flowrun()
    if _OWN_PROCESS:
        from runner.pydantic_plugins import skip_scan_without_plugins

        skip_scan_without_plugins()
    try:
        _main()
    finally:
        _OWN_PROCESS = False


def _main() -> None:
    _check_argv(sys.argv[1:])
    try:
        # standalone_mode=False returns ctx.exit()'s code instead of exiting: pass it on
        rc = cli.main(standalone_mode=False)
    except FlowrunError as e:
        _fail(e)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(ExitCode.INVALID if e.exit_code == 2 else e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as e:
        if e.filename is None or e.errno not in _PATH_ERRNOS:
            _internal(e)
        # a path the user gave that cannot be one (too long, a file used as a folder, a loop
        # of links, no permission): bad input, whichever command's reader reached it first
        _fail(UsageError(f"cannot use {str(e.filename)[:200]!r}: {e.strerror}"))
    except Exception as e:  # a bug: say so plainly, keep the traceback for those who ask
        _internal(e)
    sys.exit(rc if isinstance(rc, int) else ExitCode.SUCCEEDED)


def _check_argv(args: list[str]) -> None:
    """Arguments are UTF-8 text: other bytes (kept by Python as lone surrogates) would reach a
    store, a file or the terminal and fail there as an internal error."""
    for n, arg in enumerate(args, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raw = arg.encode("utf-8", "surrogateescape")
            _fail(UsageError(f"argument {n} ({str(raw)[:80]}) is not UTF-8 text"))


_PATH_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP, errno.EACCES, errno.EPERM, errno.EROFS}
)


def _internal(e: BaseException) -> NoReturn:
    if os.environ.get("FLOWRUN_DEBUG"):
        raise e
    click.echo(
        f"internal error: {type(e).__name__}: {e}\n"
        "  hint: this is a bug in flowrun; rerun with FLOWRUN_DEBUG=1 for the traceback "
        "and report it",
        err=True,
    )
    sys.exit(ExitCode.INTERNAL)


if __name__ == "__main__":
    main()
