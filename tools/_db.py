"""Shared SQLite access for the support tools, so every tool sees one seeded database."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ENV_VAR = "FLOWRUN_SUPPORT_DB"
DEFAULT_PATH = Path(".flowrun") / "support.db"
REQUIRED_TABLES = frozenset({"tickets", "orders", "refunds", "ticket_notes", "kb_articles"})


def db_path() -> Path:
    """Resolve the database location so tests and runs can point tools at their own file."""
    raw = os.environ.get(ENV_VAR, "").strip()
    return Path(raw) if raw else DEFAULT_PATH


def open_db(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) a database with the settings every writer relies on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are explicit (see transaction()), never implicit.
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def connect() -> sqlite3.Connection:
    """Open the seeded support database, failing with the fix when it was never seeded."""
    path = db_path()
    not_seeded = RuntimeError(f"support database {path} is not seeded; run: python -m tools.seed")
    if not path.is_file():  # never create an empty file here: that would hide the real fix
        raise not_seeded
    conn = open_db(path)
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError:
        conn.close()
        raise
    if not names >= REQUIRED_TABLES:
        conn.close()
        raise not_seeded
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Take the write lock up front so check-then-write sequences cannot interleave."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def now_iso() -> str:
    """Timestamp rows in one sortable UTC format."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
