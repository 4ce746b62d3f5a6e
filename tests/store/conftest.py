"""The store API suite runs on both implementations: a SQLite file and a PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.store import Store, open_store


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where a new store goes: a file, or a new database on the session's PostgreSQL server
    (its local folder and its seal key's home under the test's folder)."""
    if request.param == "sqlite":
        return str(tmp_path / "flowrun.db")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWRUN_STORE_DIR", str(tmp_path / "local"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(target: str) -> Iterator[Store]:
    s = open_store(target)
    yield s
    s.close()
