"""Suite-wide isolation: every test gets its own run store, never the repository's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _plan_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of kept plans for the session's `flowrun` processes (runner/plan/cache.py)."""
    return tmp_path_factory.mktemp("plans")


@pytest.fixture(autouse=True)
def _isolated_store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, _plan_cache: Path
) -> Path:
    path = tmp_path_factory.mktemp("store") / "flowrun.db"
    monkeypatch.setenv("FLOWRUN_STORE", str(path))
    monkeypatch.setenv("FLOWRUN_PLAN_CACHE", str(_plan_cache))
    return path


# -- a real PostgreSQL server (Debian's `postgresql` package) for the PostgreSQL store tests -----


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server in a temporary folder on a free localhost port, stopped at the end;
    yields the URL of its `postgres` database (password auth over TCP)."""
    import os

    from tests.pg_server import pg_bin, postgres

    if pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is missing; CI installs it (tests/store/setup_postgres.sh)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with postgres() as url:
        yield url


@pytest.fixture
def pg_url(postgres_server: str) -> str:
    """A new, empty database on the session's server (CREATE DATABASE is cheap)."""
    from tests.pg_server import new_database

    return new_database(postgres_server)


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where a new store goes, once per implementation: a file, or a new database on the
    session's PostgreSQL server (its local folder and its seal key's home under the test's
    folder)."""
    if request.param == "sqlite":
        return str(tmp_path / "flowrun.db")
    from tests.stores import pg_env

    url = str(request.getfixturevalue("pg_url"))
    for k, v in pg_env(tmp_path, url).items():
        if k != "FLOWRUN_STORE":
            monkeypatch.setenv(k, v)
    return url
