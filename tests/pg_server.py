"""A throwaway PostgreSQL server from Debian's package: for the store tests and benchmarks."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PASSWORD = "flowrun-test"
READY_TIMEOUT_S = 60.0
_DBS = itertools.count(1)


def pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _as_postgres(args: list[str]) -> list[str]:
    """Tests run as root in CI; PostgreSQL refuses to run as root: run it as `postgres`."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextmanager
def postgres() -> Iterator[str]:
    """Start a server in a temporary folder on a free localhost port; yield the URL of its
    `postgres` database (password auth over TCP); stop it and remove the folder after."""
    import psycopg

    bin_dir = pg_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="flowrun-pg-"))
    data = folder / "data"
    pwfile = folder / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    folder.chmod(0o700)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log")]
    try:
        subprocess.run(
            _as_postgres(
                [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                 "--auth-host=scram-sha-256", "--auth-local=trust", f"--pwfile={pwfile}",
                 "--no-sync"]
            ),
            check=True, capture_output=True,
        )  # fmt: skip
        opts = (
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200 -c synchronous_commit=off"
        )
        subprocess.run(
            _as_postgres([*ctl, "-o", opts, "-w", "-t", str(int(READY_TIMEOUT_S)), "start"]),
            check=True,
            capture_output=True,
        )
        url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + READY_TIMEOUT_S
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


def new_database(server_url: str) -> str:
    """A new, empty database on the server at `server_url`; its URL."""
    import psycopg

    name = f"t{os.getpid()}_{next(_DBS)}"
    with psycopg.connect(server_url, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")  # type: ignore[arg-type]
        c.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    return server_url.rsplit("/", 1)[0] + "/" + name
