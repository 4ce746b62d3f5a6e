"""Shared SQLite access for the reference tools: each workflow's tools see one seeded database."""

from __future__ import annotations

import argparse
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Database:
    """One workflow's SQLite file: where it lives, what a seeded one holds, how to seed it.

    Each reference workflow's tools own one (`SUPPORT` below); the path comes from an
    environment variable so that tests and runs point the tools at their own file.
    """

    env_var: str
    default_path: Path
    required_tables: frozenset[str]
    seed_command: str

    def path(self) -> Path:
        raw = os.environ.get(self.env_var, "").strip()
        return Path(raw) if raw else self.default_path

    def connect(self) -> sqlite3.Connection:
        """Open the seeded database, failing with the fix when it was never seeded."""
        path = self.path()
        not_seeded = RuntimeError(f"database {path} is not seeded; run: {self.seed_command}")
        if not path.is_file():  # never create an empty file here: that would hide the real fix
            raise not_seeded
        conn = open_db(path)
        try:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError:
            conn.close()
            raise
        if not names >= self.required_tables:
            conn.close()
            raise not_seeded
        return conn


SUPPORT = Database(
    env_var="FLOWRUN_SUPPORT_DB",
    default_path=Path(".flowrun") / "support.db",
    required_tables=frozenset({"tickets", "orders", "refunds", "ticket_notes", "kb_articles"}),
    seed_command="python -m tools.seed",
)
ENV_VAR = SUPPORT.env_var


def db_path() -> Path:
    """Where the support database is (FLOWRUN_SUPPORT_DB, else .flowrun/support.db)."""
    return SUPPORT.path()


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
    """Open the seeded support database."""
    return SUPPORT.connect()


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


def seed_main(
    argv: list[str] | None,
    *,
    database: Database,
    prog: str,
    description: str,
    fill: Callable[[Path, bool], int],
    contents: str,
) -> int:
    """The `python -m tools.<x>.seed [--db PATH] [--reset]` command every reference seed has."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--db", type=Path, default=None, help=f"database file (default: {database.path()})"
    )
    parser.add_argument("--reset", action="store_true", help="drop all tables first")
    args = parser.parse_args(argv)
    path: Path = args.db if args.db is not None else database.path()
    added = fill(path, args.reset)
    action = "reset and seeded" if args.reset else "seeded"
    print(f"{action} {path}: {contents} ({added} rows added)")
    return 0
