"""Helpers that run the real `flowrun` command in a subprocess against a fresh seeded database."""

from __future__ import annotations

import os
import pty
import select
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "support_refund.yaml"
EXAMPLES = REPO / "examples"
_SCRIPT = Path(sys.executable).parent / "flowrun"
# the installed console script exercises runner.cli:main exactly as a shell does
FLOWRUN: tuple[str, ...] = (
    (str(_SCRIPT),) if _SCRIPT.is_file() else (sys.executable, "-m", "runner.cli")
)
DB_TABLES = ("orders", "tickets", "refunds", "ticket_notes", "kb_articles")


@dataclass(frozen=True)
class Proc:
    """What one flowrun process did: exit code and both streams, kept apart."""

    args: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        head = f"flowrun {' '.join(self.args)} -> {self.rc}"
        return f"{head}\n--stdout--\n{self.stdout}\n--stderr--\n{self.stderr}"


def flowrun_env(db: Path | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment: no debug tracebacks, and the tools pointed at the test's database."""
    env = {k: v for k, v in os.environ.items() if k not in {"FLOWRUN_DEBUG", "FLOWRUN_SUPPORT_DB"}}
    env["PYTHONPATH"] = str(REPO)
    if db is not None:
        env["FLOWRUN_SUPPORT_DB"] = str(db)
    env.update(extra or {})
    return env


def run_flowrun(
    *args: str | Path,
    cwd: Path,
    db: Path | None = None,
    timeout: float = 600,
    env: Mapping[str, str] | None = None,
) -> Proc:
    """Run flowrun to completion and return its exit code and separate stdout/stderr."""
    argv = tuple(str(a) for a in args)
    cp = subprocess.run(
        [*FLOWRUN, *argv],
        cwd=cwd,
        env=flowrun_env(db, env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Proc(argv, cp.returncode, cp.stdout, cp.stderr)


def run_on_pty(*args: str | Path, cwd: Path, db: Path | None = None, timeout: float = 600) -> Proc:
    """Run flowrun with stderr on a pseudo-terminal (stdout piped), draining it as it goes."""
    argv = tuple(str(a) for a in args)
    master, slave = pty.openpty()
    p = subprocess.Popen(
        [*FLOWRUN, *argv],
        cwd=cwd,
        env=flowrun_env(db, {"TERM": "xterm-256color", "COLUMNS": "100"}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    err = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO once the child has closed the terminal
                    break
                if not chunk:
                    break
                err += chunk
            elif p.poll() is not None:
                break
    finally:
        os.close(master)
    out = p.stdout.read().decode() if p.stdout else ""
    rc = p.wait(timeout=timeout)
    return Proc(argv, rc, out, err.decode(errors="replace"))


def seed_db(path: Path) -> Path:
    """Create the support database the way a user does: `python -m tools.seed --db PATH`."""
    cp = subprocess.run(
        [sys.executable, "-m", "tools.seed", "--db", str(path)],
        cwd=REPO,
        env=flowrun_env(None),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert cp.returncode == 0, cp.stderr
    return path


def table_counts(db: Path) -> dict[str, int]:
    """Row counts of every table, to prove a failed command wrote nothing."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in DB_TABLES}
    finally:
        conn.close()


def refund_rows(db: Path) -> list[dict[str, object]]:
    """The refunds table as dicts, straight from SQLite."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM refunds ORDER BY created_at")]
    finally:
        conn.close()


def listing(root: Path) -> set[str]:
    """Every path under root, so a test can see whether a command created files."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One seeded database per session; tests copy it instead of seeding again."""
    return seed_db(tmp_path_factory.mktemp("seed") / "support.sqlite")


@pytest.fixture
def fresh_db(tmp_path: Path, seeded_template: Path) -> Path:
    """A private copy of the seeded database for one test."""
    dst = tmp_path / "db" / "support.sqlite"
    dst.parent.mkdir()
    shutil.copyfile(seeded_template, dst)
    return dst
