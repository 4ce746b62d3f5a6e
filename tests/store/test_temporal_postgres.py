"""Temporal workers on a PostgreSQL store: the run carries the store's URL without its password;
the worker opens it with its own credentials, and an approval continues the run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.durable.conftest import process_env
from tests.temporal.conftest import (  # noqa: F401  (fixtures)
    SPECS,
    Flowrun,
    Workers,
    temporal_address,
    tool_log,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path, pg_url: str) -> dict[str, str]:
    e = process_env(tmp_path, TTOOLS_LOG=str(tmp_path / "ttools.log"))
    e.update(
        FLOWRUN_STORE=pg_url,
        FLOWRUN_STORE_DIR=str(tmp_path / "local"),
        HOME=str(tmp_path / "home"),
        FLOWRUN_SEAL_KEY="a" * 43 + "=",  # one key for every process of the store
    )
    return e


@pytest.fixture
def workers(env: dict[str, str], temporal_address: str, tmp_path: Path) -> Iterator[Workers]:  # noqa: F811
    w = Workers(env, temporal_address, f"tq-pg-{tmp_path.name}", tmp_path)
    yield w
    w.stop_all()


def test_a_temporal_run_on_a_postgres_store(env: dict[str, str], workers: Workers) -> None:
    import subprocess
    import sys

    from tests.durable.conftest import ROOT

    def flowrun(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runner.cli", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    workers.start()
    started = flowrun(
        "execute", str(SPECS / "approve.yaml"), "--live", "--run-id", "a1", "--output", "json",
        "--backend", "temporal", "--temporal-address", workers.address,
        "--task-queue", workers.queue,
    )  # fmt: skip
    assert started.returncode == 6, started.stderr
    ok = flowrun("approve", "a1", "ok", "--by", "alice", "--decision", '{"note": "fast"}',
                 "--output", "json")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "succeeded"
    assert [e["label"] for e in tool_log(env) if e["kind"] == "write"] == ["fast"]
    again = flowrun("approve", "a1", "ok", "--by", "bob")
    assert again.returncode == 2 and "already approved by alice" in again.stderr
