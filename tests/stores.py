"""Both store implementations for tests: where a store goes, and what another process reads."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

KINDS = ("sqlite", "postgres")


def is_pg(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def pg_env(tmp: Path, url: str) -> dict[str, str]:
    """A process's environment for a PostgreSQL store: the URL, and its local folder and seal
    key's home under `tmp` (nothing of the user's)."""
    return {
        "FLOWRUN_STORE": url,
        "FLOWRUN_STORE_DIR": str(tmp / "local"),
        "HOME": str(tmp / "home"),
    }


def query(target: str | Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of `sql` (`?` placeholders) read through a connection of its own: what another
    process sees, committed rows only."""
    if is_pg(target):
        import psycopg

        with psycopg.connect(str(target), autocommit=True) as c:
            if not args:  # without parameters, '%' (LIKE 'a_%') is no placeholder
                return [tuple(r) for r in c.execute(sql).fetchall()]  # type: ignore[arg-type]
            return [tuple(r) for r in c.execute(sql.replace("?", "%s"), args).fetchall()]  # type: ignore[arg-type]
    conn = sqlite3.connect(target)
    try:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()
