"""`flowrun store migrate`: a SQLite store copied into PostgreSQL goes on there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.durable.conftest import ROOT, process_env, refund_case, rows


def _flowrun(env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=ROOT,
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = process_env(tmp_path, DTOOLS_LOG=str(tmp_path / "dtools.log"))
    e.update(FLOWRUN_STORE_DIR=str(tmp_path / "local"), HOME=str(tmp_path / "home"))
    return e


def test_a_sqlite_store_moves_to_postgres_and_its_runs_go_on(
    env: dict[str, str], pg_url: str
) -> None:
    sqlite = env["FLOWRUN_STORE"]
    assert _flowrun(env, *refund_case("refund_granted")).returncode == 0
    waiting = _flowrun(env, *refund_case("refund_needs_approval"))
    assert waiting.returncode == 6, waiting.stderr
    assert _flowrun(env, "writes", "off", "--by", "ops").returncode == 0
    before = {t: rows(sqlite, f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("runs", "events")}

    moved = _flowrun(env, "store", "migrate", "--from", sqlite, "--to", pg_url, "--output", "json")
    assert moved.returncode == 0, moved.stderr
    tables = json.loads(moved.stdout)["tables"]
    assert tables["runs"] == 2 and tables["events"] == before["events"]
    assert tables["ledger"] > 0 and tables["approvals"] == 1 and tables["switches"] == 1

    on_pg = {**env, "FLOWRUN_STORE": pg_url}
    shown = _flowrun(on_pg, "runs", "--output", "json")
    assert shown.returncode == 0, shown.stderr
    runs = {r["status"]: r["run_id"] for r in json.loads(shown.stdout)}
    assert set(runs) == {"succeeded", "waiting"}
    # the switch came along: writes are off on the new store; on again, the approval goes on
    assert "off" in _flowrun(on_pg, "writes").stdout
    assert _flowrun(on_pg, "writes", "on", "--by", "ops").returncode == 0
    inbox = json.loads(_flowrun(on_pg, "inbox", "--output", "json").stdout)
    assert [i["run_id"] for i in inbox] == [runs["waiting"]]
    assert "42.0 USD on order O-5005" in inbox[0]["summary"]  # sealed at rest, opened here
    done = _flowrun(on_pg, "approve", runs["waiting"], "approve", "--by", "lead@example.com")
    assert done.returncode == 0, done.stderr
    refunds = rows(env["FLOWRUN_SUPPORT_DB"], "SELECT order_id FROM refunds ORDER BY order_id")
    assert len(refunds) == 2  # one per run: nothing done twice by the move
    # the SQLite store is as it was
    assert rows(sqlite, "SELECT COUNT(*) FROM runs")[0][0] == before["runs"]


def test_migrating_into_a_store_that_holds_runs_is_refused(
    env: dict[str, str], pg_url: str
) -> None:
    assert _flowrun(env, *refund_case("refund_granted")).returncode == 0
    first = _flowrun(env, "store", "migrate", "--from", env["FLOWRUN_STORE"], "--to", pg_url)
    assert first.returncode == 0, first.stderr
    again = _flowrun(env, "store", "migrate", "--from", env["FLOWRUN_STORE"], "--to", pg_url)
    assert again.returncode == 2 and "is not empty (1 runs" in again.stderr
    assert "Traceback" not in again.stderr
    missing = _flowrun(env, "store", "migrate", "--from", "/nonexistent/x.db", "--to", pg_url)
    assert missing.returncode == 2 and "no run store" in missing.stderr


def test_sealed_values_are_sealed_again_under_the_new_stores_key(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.runs.migrate import migrate_store
    from runner.store import open_store
    from runner.store.seal import Sealer

    monkeypatch.delenv("FLOWRUN_SEAL_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWRUN_STORE_DIR", str(tmp_path / "local"))
    secret = "sk-ant-api03-" + "q" * 40
    src = open_store(tmp_path / "old" / "flowrun.db")
    src.create_run(
        run_id="r1", workflow="wf", spec_path="/x.yaml", spec_dir="/", spec_text="", spec_digest="d",
        profile=None, inputs={"key": secret}, responses_path=None, options={}, tenant=None,
        actor=None, status="failed", pid=None, host=None,
    )  # fmt: skip
    src.close()
    migrate_store(str(tmp_path / "old" / "flowrun.db"), pg_url)
    with psycopg.connect(pg_url) as c:
        row = c.execute("SELECT inputs FROM runs").fetchone()
    assert row is not None and secret not in row[0] and "[SEALED:" in row[0]
    new_key = (tmp_path / "home" / ".flowrun" / "seal.key").read_bytes().strip()
    assert secret in Sealer(new_key).unseal_json(row[0])  # the new key alone opens it
