"""`flowrun budgets`: ceilings over many runs and rate limits, held in the run store."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click

from runner.options import not_empty
from runner.redact import echo, echo_json
from runner.runs import Runs

OUTPUT = click.option(
    "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
STORE = click.option(
    "--store",
    "store_opt",
    metavar="PATH|URL",
    help="run store (default: $FLOWRUN_STORE or .flowrun/flowrun.db)",
)


@click.group("budgets")
def budgets_group() -> None:
    """Ceilings over many runs (per tenant, workflow, tool; USD, tokens, calls; per window) and
    rate limits, held in the run store and obeyed by every process (docs/budgets.md)."""


@budgets_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Check a budgets file without putting it in force.

    Exit codes: 0 valid; 2 problems, each printed `path:line:col: rule-id: message`.
    """
    from runner.spec.budgets import load_budgets

    f, _ = load_budgets(file)
    echo(f"{file}: ok: {len(f.ceilings)} ceilings, {len(f.rate_limits)} rate limits")


@budgets_group.command("set")
@click.option(
    "--file", "file", required=True, type=click.Path(dir_okay=False), help="a budgets file"
)
@click.option("--by", callback=not_empty, help="who sets them (recorded)")
@STORE
def set_command(file: str, by: str | None, store_opt: str | None) -> None:
    """Put a budgets file in force: the whole set replaces the one in force (earlier sets are
    kept in the store); every process's next call obeys it.

    Exit codes: 0 set; 2 the file has problems (printed `path:line:col: rule-id: message`) or
    the store cannot be opened: nothing changed.
    """
    from runner.runs.budgets import set_budgets
    from runner.spec.budgets import load_budgets

    load_budgets(file)  # a bad file fails before the store is opened or created
    runs = Runs.open(store_opt, create=True)
    try:
        version, f = set_budgets(runs.store, file, by=by)
    finally:
        runs.close()
    echo(
        f"budgets version {version} in force: {len(f.ceilings)} ceilings, "
        f"{len(f.rate_limits)} rate limits (from {file})"
    )


@budgets_group.command("show")
@click.option("--tenant", callback=not_empty, help="only scopes of this tenant")
@click.option("--workflow", callback=not_empty, help="only scopes of this workflow")
@OUTPUT
@STORE
def show(tenant: str | None, workflow: str | None, fmt: str, store_opt: str | None) -> None:
    """Spend against every ceiling in force, per scope (each tenant of a `"*"` ceiling apart):
    used, left, burn rate over the last hour, forecast to the end of the window.

    Exit codes: 0 shown; 2 the store cannot be opened.
    """
    from runner.runs.budgets import budgets_in_force, spend_report

    runs = Runs.open(store_opt)
    try:
        budgets, row = budgets_in_force(runs.store)
        now = time.time()
        report = spend_report(runs.store, budgets, now=now)
    finally:
        runs.close()
    report = [
        r
        for r in report
        if (tenant is None or r.scope.get("tenant") in (tenant, None))
        and (workflow is None or r.scope.get("workflow") in (workflow, None))
    ]
    if fmt == "json":
        echo_json(
            {
                "version": row["version"] if row else None,
                "source": row["source"] if row else None,
                "set_by": row["set_by"] if row else None,
                "set_at": row["set_at"] if row else None,
                "at": now,
                "ceilings": [r.to_json() for r in report],
                "rate_limits": (row["body"].get("rate_limits", {}) if row else {}),
            }
        )
        return
    if row is None:
        echo("no budgets in force (set them with `flowrun budgets set --file FILE`)")
        return
    echo(f"budgets version {row['version']} from {row['source']}, set {_when(row['set_at'])}"
         + (f" by {row['set_by']}" if row["set_by"] else ""))  # fmt: skip
    if not report:
        echo("no ceiling selects any spend here yet")
    for r in report:
        scope = ", ".join(f"{k} {v}" for k, v in r.scope.items()) or "everything"
        window = "all time" if r.window is None else f"window {r.window}"
        echo(f"\n{r.ceiling}  ({scope}; {window}; on_exceed {r.on_exceed})")
        for dim, limit in r.limits.items():
            used = r.used[dim]
            pct = f"{used / limit * 100:5.1f}%" if limit else "  n/a"
            fc = r.forecast[dim]
            echo(
                f"  {dim:<10} {_amount(dim, used):>12} of {_amount(dim, limit):>12} {pct}"
                f"   burn {_amount(dim, r.burn_per_hour[dim])}/h"
                + ("" if fc is None else f"   forecast {_amount(dim, fc)}"
                   + (" (over)" if fc > limit else ""))
            )  # fmt: skip
    limits = row["body"].get("rate_limits", {})
    if limits:
        echo("\nrate limits")
        for name, rl in limits.items():
            what = f"tool {rl['tool']}" if rl.get("tool") else f"model {rl['model']}"
            echo(f"  {name}: {what}, {rl['limit']} {rl.get('unit', 'calls')} per {rl['per']:g}s"
                 f", on_limit {rl.get('on_limit', 'wait')}")  # fmt: skip


@budgets_group.command("schema")
def schema() -> None:
    """Print the JSON Schema of budgets files (runner/spec/budgets.schema.json)."""
    from runner.spec.budgets import budgets_schema_text

    click.echo(budgets_schema_text(), nl=False)


def _amount(dim: str, v: float) -> str:
    return f"${v:.6f}" if dim == "usd" else f"{v:,.0f}"


def _when(ts: Any) -> str:
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
