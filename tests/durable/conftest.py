"""Real processes against one run store: `flowrun` runs as a subprocess, as an operator runs it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPECS = Path(__file__).parent / "specs"
REFERENCE = ROOT / "specs" / "support_refund.yaml"
EXAMPLES = ROOT / "examples"

Flowrun = Callable[..., subprocess.CompletedProcess[str]]


def process_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a flowrun process under test: its own store and seeded support
    database under `tmp`, the repository importable, no crash point; plus `extra`."""
    support = tmp / "support.db"
    subprocess.run(
        [sys.executable, "-m", "tools.seed", "--db", str(support)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    e = dict(os.environ)
    e.update(
        FLOWRUN_STORE=str(tmp / "flowrun.db"),
        FLOWRUN_SUPPORT_DB=str(support),
        PYTHONPATH=str(ROOT),
        **extra,
    )
    e.pop("FLOWRUN_CRASH_AT", None)
    return e


# a module about the store's guarantees runs its tests on both implementations:
# `pytestmark = BOTH_STORES`
BOTH_STORES = pytest.mark.parametrize("store_kind", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """The store implementation a test's processes use: SQLite unless the module asks for both."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def env(
    tmp_path: Path, store_kind: str, request: pytest.FixtureRequest
) -> Iterator[dict[str, str]]:
    """A private store (a file, or a new PostgreSQL database), support database and tool log
    for one test."""
    e = process_env(tmp_path, DTOOLS_LOG=str(tmp_path / "dtools.log"))
    file = Path(e["FLOWRUN_STORE"])
    if store_kind == "postgres":
        from tests.stores import pg_env

        e.update(pg_env(tmp_path, str(request.getfixturevalue("pg_url"))))
    yield e
    if store_kind == "postgres":
        assert not file.exists(), "a process of the test fell back to a SQLite store"


@pytest.fixture
def flowrun(env: dict[str, str]) -> Flowrun:
    def run(
        *args: str, crash_at: str | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        e = dict(env)
        if crash_at is not None:
            e["FLOWRUN_CRASH_AT"] = crash_at
        return subprocess.run(
            [sys.executable, "-m", "runner.cli", *args],
            cwd=ROOT,
            env=e,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def refund_case(name: str) -> list[str]:
    return [
        "execute",
        str(REFERENCE),
        "--input",
        str(EXAMPLES / "inputs" / f"{name}.json"),
        "--responses",
        str(EXAMPLES / "responses" / f"{name}.jsonl"),
        "--output",
        "json",
        "--live",
        "--scopes",
        "refunds:write",
    ]


def rows(db: str, sql: str) -> list[tuple[object, ...]]:
    """Rows of `sql` in a SQLite file or a PostgreSQL store (`db` a URL)."""
    from tests.stores import is_pg, query

    if is_pg(db):
        return query(db, sql)
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchall()


def only_run_id(env: dict[str, str]) -> str:
    (run_id,) = [r[0] for r in rows(env["FLOWRUN_STORE"], "SELECT run_id FROM runs")]
    return str(run_id)


def tool_log(env: dict[str, str]) -> list[dict[str, object]]:
    path = Path(env["DTOOLS_LOG"])
    if not path.exists():
        return []
    complete = path.read_text().split("\n")[:-1]  # a line still being written has no newline
    return [json.loads(line) for line in complete]
