"""`flowrun readiness`: the five gates of a workflow, from recorded evidence (docs/readiness.md).

Exit codes: 0 every gate passes, 1 a gate fails, 2 bad input (nothing was read or written),
3 no gate fails but at least one has not enough evidence.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from runner.errors import ExitCode, FlowrunError, UsageError
from runner.options import not_empty
from runner.redact import echo_error

if TYPE_CHECKING:
    from runner.plan.model import Plan
    from runner.runs.readiness import PolicyCases, Report
    from runner.store import Store

EXIT_FAIL = 1
EXIT_NOT_ENOUGH = 3
MARK = {"pass": "PASS", "fail": "FAIL", "not_enough_evidence": "NOT ENOUGH EVIDENCE"}
ICON = {"pass": "✅", "fail": "❌", "not_enough_evidence": "⚠️"}


def policy_cases_of(plan: Plan) -> PolicyCases | None:
    """Run the spec's `readiness.safety.policy_cases` (if it names a file) now: they are pure."""
    from runner.policy_cli import run_cases
    from runner.runs.readiness import PolicyCases

    rel = plan.loaded.spec.readiness.safety.policy_cases
    if rel is None:
        return None
    spec_path = Path(plan.loaded.source.path)
    path = spec_path.parent / rel
    if not path.is_file():
        raise UsageError(
            f"{spec_path}: readiness.safety.policy_cases: no file {str(path)!r}",
            hint="name a `flowrun policy test` case file, relative to the spec",
        )
    results = run_cases(plan, str(path), str(spec_path))
    return PolicyCases(
        path=str(path),
        passed=sum(1 for r in results if r["ok"]),
        failed=[r["name"] for r in results if not r["ok"]],
    )


def readiness_of(
    store: Store, plan: Plan, *, tenant: str | None, since: float | None, now: float | None = None
) -> Report:
    """The readiness report of a compiled spec: what the CLI, `autonomy promote` and the
    console show."""
    from runner.runs.readiness import assess

    return assess(
        store, plan, tenant=tenant, since=since, now=now, policy_cases=policy_cases_of(plan)
    )


def exit_code(report: Report) -> int:
    status = report.status
    if status == "pass":
        return ExitCode.SUCCEEDED
    return EXIT_FAIL if status == "fail" else EXIT_NOT_ENOUGH


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_text(r: Report) -> str:
    scope = f"tenant {r.tenant}" if r.tenant else "every tenant"
    lines = [
        f"readiness of {r.workflow} ({scope}, runs since {_when(r.since)}): {MARK[r.status]}",
        "",
    ]
    for g in r.gates:
        lines.append(f"{MARK[g.status]:<20} {g.title}")
        for c in g.checks:
            flag = "ok " if c.ok else "-- " if c.ok is None else "!! "
            lines.append(f"    {flag}{c.text}")
        for m in g.missing:
            lines.append(f"    ?? {m}")
        for rem in g.remedy:
            lines.append(f"    -> {rem}")
    if r.shadow is not None:
        s = r.shadow["summary"]
        lines += [
            "",
            f"shadow of this version ({_when(r.shadow['ts'])}): {s['replayed']} recorded run(s), "
            f"{s['decisions_changed']} decision(s) changed, cost ${s['cost_before_usd']:.6f} -> "
            f"${s['cost_after_usd']:.6f}",
        ]
    if r.autonomy:
        lines.append("")
        lines.append("autonomy of write tools:")
        for a in r.autonomy:
            where = f" (tenant {a['tenant']})" if a["tenant"] else ""
            note = "" if a["recorded"] else " (default: the spec decides)"
            lines.append(f"    {a['tool']:<24} {a['level']}{where}{note}")
    return "\n".join(lines)


def render_markdown(r: Report) -> str:
    scope = f"tenant `{r.tenant}`" if r.tenant else "every tenant"
    out = [
        f"### Readiness of `{r.workflow}`: {ICON[r.status]} {MARK[r.status].lower()}",
        "",
        f"Runs since {_when(r.since)}, {scope}.",
        "",
        "| gate | status | measured | remedy |",
        "|---|---|---|---|",
    ]
    for g in r.gates:
        measured = "<br>".join(c.text for c in g.checks) or "—"
        if g.missing:
            measured += "<br>" + "<br>".join(f"_{m}_" for m in g.missing)
        remedy = "<br>".join(g.remedy) or "—"
        out.append(
            f"| {g.title} | {ICON[g.status]} {MARK[g.status].lower()} | "
            f"{_md(measured)} | {_md(remedy)} |"
        )
    if r.shadow is not None:
        s = r.shadow["summary"]
        out += [
            "",
            f"Shadow of this version on {s['replayed']} recorded run(s): "
            f"{s['decisions_changed']} decision(s) changed.",
        ]
    if r.autonomy:
        out += ["", "| write tool | autonomy |", "|---|---|"]
        out += [f"| `{a['tool']}` | {a['level']} |" for a in r.autonomy]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def load(spec: str, profile: str | None = None) -> Plan:
    from runner.plan.compile import compile_plan
    from runner.spec import load_spec

    return compile_plan(load_spec(spec), profile)


@click.command("readiness")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--tenant", callback=not_empty, help="only the runs of this tenant (default: every tenant)"
)
@click.option(
    "--since",
    metavar="WHEN",
    help="runs created since (30m, 24h, 7d, ISO date); default: the spec's readiness.window (30d)",
)
@click.option(
    "--output",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
)
@click.option("--store", "store_opt", metavar="PATH", help="run store (default: $FLOWRUN_STORE)")
def readiness(
    spec: str, tenant: str | None, since: str | None, fmt: str, store_opt: str | None
) -> None:
    """Judge a workflow's five readiness gates on recorded evidence.

    Task success, cost control, safety, observability and human fallback, each pass, fail or
    not enough evidence, with the numbers and a remedy. Exit codes: 0 every gate passes,
    1 a gate fails, 2 bad input, 3 no gate fails but some lack evidence.
    """
    from runner.options import since as parse_since
    from runner.store import open_store

    try:
        when = parse_since(since) if since is not None else None
        plan = load(spec)
        store = open_store(store_opt, create=False)
        report = readiness_of(store, plan, tenant=tenant, since=when)
    except FlowrunError as e:
        echo_error(e)
        sys.exit(e.exit_code)
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), indent=2, default=str))
    elif fmt == "markdown":
        click.echo(render_markdown(report), nl=False)
    else:
        click.echo(render_text(report))
    sys.exit(exit_code(report))
