"""The CLI on a PostgreSQL store: runs, approvals decided once and runs claimed once across
processes, crash and resume, and bad input (exit 2 naming host, database and cause)."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from tests.durable.conftest import ROOT, Flowrun, process_env, refund_case, rows


@pytest.fixture
def env(tmp_path: Path, pg_url: str) -> dict[str, str]:
    """A process environment whose store is a new PostgreSQL database."""
    e = process_env(tmp_path, DTOOLS_LOG=str(tmp_path / "dtools.log"))
    e.update(
        FLOWRUN_STORE=pg_url,
        FLOWRUN_STORE_DIR=str(tmp_path / "local"),  # transcripts
        HOME=str(tmp_path / "home"),  # ~/.flowrun/seal.key
    )
    return e


@pytest.fixture
def flowrun(env: dict[str, str]) -> Flowrun:
    def run(
        *args: str, crash_at: str | None = None, timeout: float = 600, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        e = {**env, **extra}
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


def pg_rows(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as c:
        return c.execute(sql).fetchall()  # type: ignore[arg-type]


def _only_run_id(env: dict[str, str]) -> str:
    (run_id,) = [r[0] for r in pg_rows(env["FLOWRUN_STORE"], "SELECT run_id FROM runs")]
    return str(run_id)


def test_a_run_and_what_reads_it(flowrun: Flowrun, env: dict[str, str]) -> None:
    done = flowrun(*refund_case("refund_granted"))
    assert done.returncode == 0, done.stderr
    run_id = _only_run_id(env)
    shown = flowrun("show", run_id, "--output", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "succeeded"
    stats = flowrun("stats", "--output", "json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["runs"] == 1
    trace = flowrun("trace", run_id)
    assert trace.returncode == 0 and "act" in trace.stdout, trace.stderr
    runs = flowrun("runs", "--output", "json")
    assert runs.returncode == 0 and run_id in runs.stdout, runs.stderr
    assert len(rows(env["FLOWRUN_SUPPORT_DB"], "SELECT order_id FROM refunds")) == 1


def test_an_approval_is_decided_once_by_racing_processes(
    flowrun: Flowrun, env: dict[str, str]
) -> None:
    assert flowrun(*refund_case("refund_needs_approval")).returncode == 6
    run_id = _only_run_id(env)
    with ThreadPoolExecutor(4) as pool:
        procs = list(
            pool.map(
                lambda i: flowrun("approve", run_id, "approve", "--by", f"lead{i}@example.com"),
                range(4),
            )
        )
    codes = sorted(p.returncode for p in procs)
    assert codes.count(0) == 1, [(p.returncode, p.stderr[-300:]) for p in procs]
    assert all(c == 2 for c in codes[1:])
    assert all("Traceback" not in p.stderr for p in procs)
    decided = pg_rows(
        env["FLOWRUN_STORE"], "SELECT type FROM events WHERE type LIKE 'approval_%' ORDER BY id"
    )
    assert [d[0] for d in decided] == ["approval_requested", "approval_approved"]
    refunds = rows(env["FLOWRUN_SUPPORT_DB"], "SELECT order_id, amount_usd FROM refunds")
    assert refunds == [("O-5005", 42.0)]


def test_a_crashed_run_is_resumed_by_one_of_racing_processes(
    flowrun: Flowrun, env: dict[str, str]
) -> None:
    crashed = flowrun(*refund_case("refund_granted"), crash_at="after-effect:act")
    assert crashed.returncode != 0
    run_id = _only_run_id(env)
    with ThreadPoolExecutor(4) as pool:
        procs = list(pool.map(lambda _: flowrun("resume", run_id, "--output", "json"), range(4)))
    ok = [p for p in procs if p.returncode == 0]
    assert len(ok) == 1, [(p.returncode, p.stderr[-300:]) for p in procs]
    assert json.loads(ok[0].stdout)["status"] == "succeeded"
    assert all(p.returncode == 2 and "Traceback" not in p.stderr for p in procs if p not in ok)
    # each write happened once: the refund before the crash, the note after the resume
    assert len(rows(env["FLOWRUN_SUPPORT_DB"], "SELECT order_id FROM refunds")) == 1
    assert len(rows(env["FLOWRUN_SUPPORT_DB"], "SELECT ticket_id FROM ticket_notes")) == 1


def _bad(flowrun: Flowrun, store: str) -> subprocess.CompletedProcess[str]:
    return flowrun("runs", FLOWRUN_STORE=store)


def test_an_unreachable_server(flowrun: Flowrun, postgres_server: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    proc = _bad(flowrun, f"postgresql://postgres:x@127.0.0.1:{port}/flowrun")
    assert proc.returncode == 2, proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr and "'flowrun'" in proc.stderr
    assert "refused" in proc.stderr.lower() and "Traceback" not in proc.stderr


def test_wrong_credentials(flowrun: Flowrun, pg_url: str) -> None:
    wrong = pg_url.replace(":flowrun-test@", ":not-the-password@")
    proc = _bad(flowrun, wrong)
    assert proc.returncode == 2, proc.stderr
    db = pg_url.rsplit("/", 1)[1]
    assert f"'{db}'" in proc.stderr and "password authentication failed" in proc.stderr
    assert "not-the-password" not in proc.stderr and "Traceback" not in proc.stderr
    assert pg_rows(pg_url, "SELECT COUNT(*) FROM information_schema.tables "
                   "WHERE table_schema = 'public'") == [(0,)]  # fmt: skip


def test_another_applications_database(flowrun: Flowrun, pg_url: str) -> None:
    with psycopg.connect(pg_url) as c:
        c.execute("CREATE TABLE invoices (id INTEGER)")
    proc = _bad(flowrun, pg_url)
    assert proc.returncode == 2, proc.stderr
    assert "another application's tables (invoices)" in proc.stderr
    assert "Traceback" not in proc.stderr
    tables = pg_rows(
        pg_url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    assert tables == [("invoices",)]


def test_a_store_from_a_newer_flowrun(flowrun: Flowrun, pg_url: str) -> None:
    from runner.store import open_store

    open_store(pg_url).close()
    with psycopg.connect(pg_url) as c:
        c.execute("UPDATE flowrun_meta SET value = '99' WHERE key = 'schema_version'")
    proc = _bad(flowrun, pg_url)
    assert proc.returncode == 2, proc.stderr
    assert "schema version 99" in proc.stderr and "upgrade flowrun" in proc.stderr
