"""Copy a store into another (`flowrun store migrate`): a SQLite file into PostgreSQL, say."""

from __future__ import annotations

from runner.errors import UsageError
from runner.store import open_store, store_target
from runner.store.copy import copy_store


def migrate_store(source: str, dest: str) -> tuple[str, str, dict[str, tuple[int, int]]]:
    """Copy every row of the store at `source` into the new or empty store at `dest`; returns
    how each is named and {table: (source rows, copied rows)}, the counts verified equal."""
    if store_target(source) == store_target(dest):
        raise UsageError("--from and --to name the same store")
    src = open_store(source, create=False)
    try:
        # opened second: its key seals what is copied (a source key still opens what it sealed)
        dst = open_store(dest, create=True)
        try:
            return src.location, dst.location, copy_store(src, dst)
        finally:
            dst.close()
    finally:
        src.close()
