"""`flowrun autonomy show|promote|demote`: the autonomy level of a workflow's write tools.

Exit codes: 0 done, 1 a promotion refused (a readiness gate does not allow it), 2 bad input
(nothing was changed).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from runner.errors import FlowrunError
from runner.options import not_empty
from runner.redact import echo, echo_error

LEVEL_CHOICE = click.Choice(["dry_run", "approval", "autonomous"])
_store_opt = click.option(
    "--store", "store_opt", metavar="PATH", help="run store (default: $FLOWRUN_STORE)"
)
_tenant_opt = click.option(
    "--tenant",
    callback=not_empty,
    help="this tenant's own level (default: the level for every tenant)",
)


def _fail(e: FlowrunError) -> None:
    echo_error(e)
    sys.exit(e.exit_code)


@click.group()
def autonomy() -> None:
    """Show, promote or demote the autonomy level of a workflow's write tools.

    dry_run (writes run their preview) -> approval (each write waits for a person) ->
    autonomous (the spec and its policies decide). A level only tightens what the spec allows.
    """


@autonomy.command("show")
@click.argument("spec", type=click.Path(dir_okay=False))
@_store_opt
@click.option(
    "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def show_command(spec: str, store_opt: str | None, fmt: str) -> None:
    """Each write tool's level, its undo and deny rates, and the level changes, newest first."""
    from runner.readiness_cli import load
    from runner.runs.autonomy import show
    from runner.store import open_store

    try:
        data = show(open_store(store_opt, create=False), load(spec))
    except FlowrunError as e:
        _fail(e)
        return
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, default=str))
        return
    echo(render_show(data))


def render_show(data: dict[str, Any]) -> str:
    def rate(v: Any) -> str:
        return "-" if v is None else f"{v:.0%}"

    t = data["thresholds"]
    lines = [
        f"autonomy of {data['workflow']} (demotion to {t['demote_to']!r} when undo rate > "
        f"{t['max_undo_rate']:.0%} or deny rate > {t['max_deny_rate']:.0%} over "
        f"{data['window_s'] / 86400:g}d, at least {t['min_samples']} samples)",
    ]
    for tool in data["tools"]:
        r = tool["rates"]
        note = "" if tool["recorded"] else " (default)"
        lines.append(
            f"  {tool['tool']:<22} {tool['level']}{note}  undo {r['undone']}/{r['writes']} "
            f"({rate(r['undo_rate'])})  deny {r['denied']}/{r['decisions']} "
            f"({rate(r['deny_rate'])})"
        )
        for tenant, level in sorted(tool["tenants"].items()):
            lines.append(f"    tenant {tenant:<15} {level}")
    if data["changes"]:
        lines.append("changes:")
    for c in data["changes"][:20]:
        when = datetime.fromtimestamp(c["ts"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        who = "automatic" if c.get("automatic") else f"by {c.get('by') or '?'}"
        flag = " OVERRIDE" if c.get("override") else ""
        scope = f" tenant {c['tenant']}" if c.get("tenant") else ""
        why = f": {c['reason']}" if c.get("reason") else ""
        lines.append(
            f"  {when}  {c['tool']}{scope} {c.get('from') or 'autonomous'} -> {c['to']} "
            f"({who}){flag}{why}"
        )
    return "\n".join(lines)


@autonomy.command("promote")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.argument("tool")
@_tenant_opt
@click.option("--to", "to", type=LEVEL_CHOICE, help="the level to reach (default: one step up)")
@click.option("--by", callback=not_empty, help="who promotes (recorded)")
@click.option(
    "--override",
    metavar="REASON",
    help="promote although a readiness gate does not allow it; the reason is recorded",
)
@click.option("--since", metavar="WHEN", help="the readiness window (default: the spec's)")
@_store_opt
def promote_command(
    spec: str,
    tool: str,
    tenant: str | None,
    to: str | None,
    by: str | None,
    override: str | None,
    since: str | None,
    store_opt: str | None,
) -> None:
    """Raise a write tool's level; refused while a readiness gate fails (to `autonomous`: while
    one does not pass). Exit 0 promoted, 1 refused, 2 bad input."""
    from runner.options import since as parse_since
    from runner.readiness_cli import load, readiness_of
    from runner.runs.autonomy import check_tool, promote
    from runner.store import open_store

    try:
        if override is not None and not override.strip():
            from runner.errors import UsageError

            raise UsageError("--override needs a reason")
        when = parse_since(since) if since is not None else None
        plan = load(spec)
        check_tool(plan, tool)
        store = open_store(store_opt, create=False)
        report = readiness_of(store, plan, tenant=tenant, since=when)
        change = promote(
            store, plan, tool, tenant=tenant, to=to, by=by, readiness=report, override=override
        )
    except FlowrunError as e:
        _fail(e)
        return
    flag = " (override recorded)" if change.override else ""
    scope = f" for tenant {tenant}" if tenant else ""
    echo(f"{tool}{scope}: {change.was} -> {change.level}{flag}")


@autonomy.command("demote")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.argument("tool")
@_tenant_opt
@click.option("--to", "to", type=LEVEL_CHOICE, help="the level to reach (default: one step down)")
@click.option("--by", callback=not_empty, help="who demotes (recorded)")
@click.option("--reason", callback=not_empty, help="why (recorded)")
@_store_opt
def demote_command(
    spec: str,
    tool: str,
    tenant: str | None,
    to: str | None,
    by: str | None,
    reason: str | None,
    store_opt: str | None,
) -> None:
    """Lower a write tool's level (always allowed). Exit 0 demoted, 2 bad input."""
    from runner.readiness_cli import load
    from runner.runs.autonomy import demote
    from runner.store import open_store

    try:
        plan = load(spec)
        store = open_store(store_opt, create=False)
        change = demote(store, plan, tool, tenant=tenant, to=to, by=by, reason=reason)
    except FlowrunError as e:
        _fail(e)
        return
    scope = f" for tenant {tenant}" if tenant else ""
    echo(f"{tool}{scope}: {change.was} -> {change.level}")
