"""Durable state of runs: runs, node results, events, approvals, the ledger, switches.

`Store` is the interface (runner/store/base.py); `open_store(target)` opens SQLite for a path
(runner/store/sqlite.py) and PostgreSQL for a `postgresql://` URL (runner/store/postgres.py)."""

from __future__ import annotations

import os
from pathlib import Path

from runner.store.base import (
    DEFAULT_STORE,
    DuplicateRun,
    FinishedRun,
    NotFound,
    RunRow,
    Store,
    StoreError,
    is_url,
    store_path,
    store_target,
)

__all__ = [
    "DEFAULT_STORE",
    "DuplicateRun",
    "FinishedRun",
    "NotFound",
    "RunRow",
    "Store",
    "StoreError",
    "is_url",
    "open_store",
    "public_target",
    "store_class",
    "store_path",
    "store_target",
]


def store_class(target: str | os.PathLike[str]) -> type[Store]:
    if is_url(target):
        try:
            from runner.store.postgres import PostgresStore
        except ImportError as e:
            raise StoreError(
                f"a PostgreSQL store needs psycopg ({e})",
                hint="pip install 'flowrun[postgres]'",
            ) from None
        cls: type[Store] = PostgresStore
        return cls
    from runner.store.sqlite import SqliteStore

    return SqliteStore


def public_target(target: str | os.PathLike[str]) -> str:
    """What names a store to other processes: a URL without its password, or a resolved path
    (the `target` attribute of the store it opens)."""
    t = store_target(target)
    if is_url(t):
        from runner.store.postgres import describe

        return describe(t)[2]
    return str(Path(t).resolve())


def open_store(target: str | os.PathLike[str] | None = None, *, create: bool = True) -> Store:
    """The store `target` names (default: $FLOWRUN_STORE or .flowrun/flowrun.db)."""
    t = store_target(target)
    return store_class(t)(t, create=create)
