"""`flowrun eval`: run eval cases; exit 0 when every gate holds, 1 if one fails, 2 on bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from runner.errors import ExitCode, FlowrunError, UsageError
from runner.redact import echo_error

GATE_EXIT_FAILED = 1


def _gates(plan: Any, overrides: tuple[str, ...]) -> Any:
    """The spec's `eval:` thresholds with --gate NAME=VALUE flags on top."""
    from runner.spec.models import EvalGates

    base = plan.loaded.spec.eval or EvalGates()
    values: dict[str, Any] = base.model_dump()
    names = sorted(EvalGates.model_fields)
    for item in overrides:
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in EvalGates.model_fields:
            raise UsageError(
                f"--gate {item!r}: expected NAME=VALUE with NAME one of the eval gates",
                hint=f"gates: {', '.join(names)}",
            )
        try:
            values[name] = json.loads(raw)
        except json.JSONDecodeError:
            raise UsageError(f"--gate {item!r}: {raw!r} is not a number") from None
    try:
        return EvalGates.model_validate(values)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise UsageError(f"--gate {where}: {err['msg']}") from None


def _write(path: str, text: str) -> None:
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write {path!r}: {e.strerror}") from None


@click.command("eval")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--cases", "cases_path", required=True, metavar="PATH", help="case file or folder")
@click.option("--profile", help="model routes to use (a name under `profiles`)")
@click.option(
    "--repeat",
    type=click.IntRange(min=1, max=1000),
    default=1,
    show_default=True,
    help="runs per case; with K > 1 a case passes on its 95% Wilson lower bound",
)
@click.option("--baseline", metavar="FILE", help="committed baseline JSON to measure drift against")
@click.option("--update-baseline", is_flag=True, help="write this run's figures to --baseline")
@click.option(
    "--gate",
    "gate_flags",
    multiple=True,
    metavar="NAME=VALUE",
    help="override a threshold of the spec's `eval:` section (repeatable)",
)
@click.option("--junit", "junit_path", metavar="FILE", help="write JUnit XML for CI")
@click.option("--report", "report_path", metavar="FILE.md", help="write a Markdown report")
@click.option(
    "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--record",
    is_flag=True,
    help="keep the results in the run store, as evidence for `flowrun readiness`",
)
@click.option("--store", "store_opt", metavar="PATH", help="run store for --record")
def eval_command(
    spec: str,
    cases_path: str,
    profile: str | None,
    repeat: int,
    baseline: str | None,
    update_baseline: bool,
    gate_flags: tuple[str, ...],
    junit_path: str | None,
    report_path: str | None,
    fmt: str,
    record: bool,
    store_opt: str | None,
) -> None:
    """Run eval cases against a spec and hold the results to its gates.

    Exit codes: 0 every gate holds, 1 a gate failed, 2 bad input (nothing was run).
    """
    try:
        code = _eval(
            spec,
            cases_path,
            profile,
            repeat,
            baseline,
            update_baseline,
            gate_flags,
            junit_path,
            report_path,
            fmt,
            store_opt if record else None,
            record,
        )
    except FlowrunError as e:
        echo_error(e)
        sys.exit(ExitCode.INVALID if e.exit_code == ExitCode.INVALID else e.exit_code)
    sys.exit(code)


def _eval(
    spec: str,
    cases_path: str,
    profile: str | None,
    repeat: int,
    baseline_path: str | None,
    update_baseline: bool,
    gate_flags: tuple[str, ...],
    junit_path: str | None,
    report_path: str | None,
    fmt: str,
    store_opt: str | None = None,
    record: bool = False,
) -> int:
    from runner.evals import apply_gates, baseline_of, load_baseline, load_cases, run_suite
    from runner.evals.render import junit_xml, markdown, text
    from runner.plan.compile import compile_plan
    from runner.spec import load_spec

    if update_baseline and not baseline_path:
        raise UsageError("--update-baseline needs --baseline FILE (where to write it)")
    plan = compile_plan(load_spec(spec), profile)
    gates = _gates(plan, gate_flags)
    cases = load_cases(cases_path, plan)
    baseline = None
    if baseline_path and not update_baseline:
        baseline = load_baseline(baseline_path, plan)
    elif baseline_path and Path(baseline_path).is_file():
        load_baseline(baseline_path, plan)  # never overwrite another spec's baseline
    # everything above only reads: bad input exits 2 before a case runs
    store = None
    if record:
        from runner.store import open_store

        store = open_store(store_opt)  # a store that cannot be opened fails before any case
    report = run_suite(plan, cases, repeat=repeat)
    apply_gates(report, gates, baseline)
    if store is not None:
        from runner.runs.readiness import record_eval

        eval_id = record_eval(store, plan, report)
        report.notes.append(f"results recorded in {store.location} (eval {eval_id})")
    if update_baseline and baseline_path:
        if report.passed:
            _write(baseline_path, json.dumps(baseline_of(report), indent=2, sort_keys=True) + "\n")
            report.notes.append(f"baseline written to {baseline_path}")
        else:
            report.notes.append("baseline NOT written: a gate failed")
    if junit_path:
        _write(junit_path, junit_xml(report))
    if report_path:
        _write(report_path, markdown(report))
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), indent=2, default=str))
    else:
        click.echo(text(report))
    return ExitCode.SUCCEEDED if report.passed else GATE_EXIT_FAILED
