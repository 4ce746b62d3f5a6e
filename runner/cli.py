"""The `flowrun` command: validate, execute, schema. Shells get exit codes; library callers get exceptions."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from runner import __version__
from runner.errors import ExitCode, FlowrunError, UsageError

STATUS_EXIT: dict[str, int] = {
    "succeeded": ExitCode.SUCCEEDED,
    "failed": ExitCode.FAILED,
    "escalated": ExitCode.ESCALATED,
    "budget_exceeded": ExitCode.BUDGET_EXCEEDED,
    "denied": ExitCode.DENIED,
    "waiting": ExitCode.WAITING,
    "killed": ExitCode.KILLED,
}


def _fail(err: FlowrunError) -> NoReturn:
    click.echo(err.render(), err=True)
    sys.exit(err.exit_code)


def _load_plan(spec: str, profile: str | None) -> Any:
    from runner.plan.compile import compile_plan
    from runner.spec import load_spec

    return compile_plan(load_spec(spec), profile)


class _Group(click.Group):
    """Turns FlowrunError into its message and exit code, in standalone mode and under CliRunner."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FlowrunError as e:
            click.echo(e.render(), err=True)
            ctx.exit(e.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowrun")
def cli() -> None:
    """Run LLM-agent workflows written as YAML graphs, inside an envelope enforced outside the model."""


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--profile", help="check this profile's routes only (default: every profile)")
@click.option("--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def validate(spec: str, profile: str | None, fmt: str) -> None:
    """Check a spec without spending a token: exit 0 with a summary, or 2 with every problem."""
    from runner.summary import summarize

    plan = _load_plan(spec, profile)
    summary = summarize(plan)
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2, sort_keys=False))
    else:
        from runner.summary import render_summary

        click.echo(render_summary(summary))
        for w in plan.warnings:
            click.echo(w.render(), err=True)


def _read_input(input_path: str | None, input_json: str | None) -> Any:
    if input_path and input_json:
        raise UsageError("give --input or --input-json, not both")
    if input_json is not None:
        try:
            return json.loads(input_json)
        except json.JSONDecodeError as e:
            raise UsageError(f"--input-json: not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    if input_path is None:
        return {}
    p = Path(input_path)
    if not p.is_file():
        raise UsageError(f"--input: no such file {input_path!r}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
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
@click.option("--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--run-id", help="id for this run (default: generated)")
def execute(
    spec: str,
    input_path: str | None,
    input_json: str | None,
    responses: str | None,
    profile: str | None,
    fmt: str,
    run_id: str | None,
) -> None:
    """Run a workflow to an outcome; the exit code tells which (see README)."""
    from runner.engine.run import check_inputs, check_responses, execute as run_plan
    from runner.models.responses import RecordedResponses

    plan = _load_plan(spec, profile)
    inputs = check_inputs(plan, _read_input(input_path, input_json), input_path or "--input-json")
    recorded = None
    if responses is not None:
        recorded = RecordedResponses.load(Path(responses))
        check_responses(plan, recorded, responses)
    if any(n.llm is not None or (n.map is not None and n.map.inner.llm) for n in plan.nodes.values()):
        from runner.models.client import ensure_litellm

        ensure_litellm()  # import once up front (seconds), so node timings show the nodes
    from runner.progress import progress_hooks

    hooks, live = progress_hooks(plan, enabled=fmt == "text" and sys.stderr.isatty())
    try:
        result = asyncio.run(run_plan(plan, inputs, responses=recorded, run_id=run_id, hooks=hooks))
    finally:
        if live is not None:
            live.stop()
    if fmt == "json":
        click.echo(json.dumps(result.to_json(), indent=2, default=str))
    else:
        from runner.progress import render_result

        click.echo(render_result(plan, result))
    sys.exit(STATUS_EXIT[result.status])


@cli.command()
@click.option("--check", "check_file", metavar="FILE", help="exit 1 if FILE differs from the generated schema")
def schema(check_file: str | None) -> None:
    """Print the JSON Schema of the spec language (flowrun/v1)."""
    from runner.spec.schema import schema_text

    text = schema_text()
    if check_file is not None:
        p = Path(check_file)
        current = p.read_text(encoding="utf-8") if p.is_file() else ""
        if current != text:
            click.echo(f"{check_file} is stale; regenerate it with: flowrun schema > {check_file}", err=True)
            sys.exit(ExitCode.FAILED)
        click.echo(f"{check_file} is up to date")
        return
    click.echo(text, nl=False)


def main() -> None:
    """Console entry point: every flowrun error becomes a message and its exit code, never a traceback."""
    try:
        cli.main(standalone_mode=False)
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
    except Exception as e:  # a bug: say so plainly, keep the traceback for those who ask
        if os.environ.get("FLOWRUN_DEBUG"):
            raise
        click.echo(
            f"internal error: {type(e).__name__}: {e}\n"
            "  hint: this is a bug in flowrun; rerun with FLOWRUN_DEBUG=1 for the traceback and report it",
            err=True,
        )
        sys.exit(ExitCode.INTERNAL)


if __name__ == "__main__":
    main()
