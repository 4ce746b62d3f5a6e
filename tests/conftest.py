"""Suite-wide isolation: every test gets its own run store, never the repository's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    path = tmp_path_factory.mktemp("store") / "flowrun.db"
    monkeypatch.setenv("FLOWRUN_STORE", str(path))
    return path


# -- a real PostgreSQL server (Debian's `postgresql` package) for the PostgreSQL store tests -----

PG_PASSWORD = "flowrun-test"
PG_READY_TIMEOUT_S = 60.0


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _as_postgres(args: list[str]) -> list[str]:
    """Tests run as root in CI; PostgreSQL refuses to run as root: run it as `postgres`."""
    import os

    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server in a temporary folder on a free localhost port, stopped at the end;
    yields the URL of its `postgres` database (password auth over TCP)."""
    import os
    import shutil
    import socket
    import subprocess
    import tempfile
    import time

    bin_dir = _pg_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is missing; CI installs it (tests/store/setup_postgres.sh)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="flowrun-pg-"))
    data = folder / "data"
    pwfile = folder / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    folder.chmod(0o700)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    subprocess.run(
        _as_postgres(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                f"--pwfile={pwfile}",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    opts = (
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c max_connections=200 -c synchronous_commit=off"
    )
    ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log")]
    subprocess.run(
        _as_postgres([*ctl, "-o", opts, "-w", "-t", str(int(PG_READY_TIMEOUT_S)), "start"]),
        check=True,
        capture_output=True,
    )
    url = f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + PG_READY_TIMEOUT_S
        import psycopg

        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        subprocess.run(_as_postgres([*ctl, "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


_PG_DBS = [0]


@pytest.fixture
def pg_url(postgres_server: str) -> str:
    """A new, empty database on the session's server (CREATE DATABASE is cheap)."""
    import psycopg

    _PG_DBS[0] += 1
    name = f"t{_PG_DBS[0]}"
    with psycopg.connect(postgres_server, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}")
    return postgres_server.rsplit("/", 1)[0] + "/" + name
