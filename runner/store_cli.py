"""`flowrun store`: work with run stores (copy a SQLite store into PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from runner.errors import UsageError
from runner.redact import echo


@click.group("store")
def store_group() -> None:
    """Work with run stores: a SQLite file or a PostgreSQL database (docs/store.md)."""


@store_group.command("migrate")
@click.option(
    "--from", "source", required=True, metavar="PATH|URL", help="the store to copy (it exists)"
)
@click.option(
    "--to",
    "dest",
    required=True,
    metavar="URL|PATH",
    help="a new or empty store: postgresql://user@host:port/db (password from the URL, "
    "PGPASSWORD or ~/.pgpass), or a file",
)
@click.option(
    "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def migrate(source: str, dest: str, fmt: str) -> None:
    """Copy runs, node results, bundles, ledger, approvals, events, calls, switches and spend
    into an empty store in one transaction, then verify the row counts match.

    Exit codes: 0 copied and verified; 2 a store cannot be opened, the destination is not
    empty, or the counts differ (nothing is left half-copied).
    """
    from runner.options import store_folder
    from runner.runs.migrate import migrate_store

    store_folder(dest, "--to")
    if "://" not in source and Path(source).is_file() and Path(source).stat().st_size == 0:
        # opening it would make it a new, empty store: the source is read, never written
        raise UsageError(f"--from: {source!r} is an empty file, not a flowrun store")
    src, dst, counts = migrate_store(source, dest)
    if fmt == "json":
        echo(json.dumps({"from": src, "to": dst, "tables": {t: n for t, (n, _) in counts.items()}}))
        return
    echo(f"copied {src} -> {dst}")
    for table, (n, copied) in counts.items():
        echo(f"  {table:<13} {n:>8}  {'ok' if n == copied else f'copied {copied}'}")
