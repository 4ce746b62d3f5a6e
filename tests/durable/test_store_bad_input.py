"""Bad input to the run commands: a clear error, exit 2, and the store left exactly as it was."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from tests.durable.conftest import Flowrun, only_run_id, refund_case


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "args",
    [
        ["show", "r-nope"],
        ["resume", "r-nope"],
        ["approve", "r-nope", "approve", "--by", "x"],
        ["reject", "r-nope", "approve", "--by", "x", "--reason", "no"],
        ["kill", "r-nope"],
        ["undo", "r-nope"],
    ],
)
def test_unknown_run_id(flowrun: Flowrun, env: dict[str, str], args: list[str]) -> None:
    assert flowrun(*refund_case("refund_granted")).returncode == 0
    before = _digest(env["FLOWRUN_STORE"])
    proc = flowrun(*args)
    assert proc.returncode == 2
    assert "no run 'r-nope'" in proc.stderr and "Traceback" not in proc.stderr
    assert _digest(env["FLOWRUN_STORE"]) == before


def test_approving_a_node_that_does_not_wait(flowrun: Flowrun, env: dict[str, str]) -> None:
    assert flowrun(*refund_case("refund_needs_approval")).returncode == 6
    run_id = only_run_id(env)
    proc = flowrun("approve", run_id, "act", "--by", "x")
    assert proc.returncode == 2
    assert "no approval at node 'act'" in proc.stderr and "waiting here: approve" in proc.stderr


def test_resuming_a_finished_run(flowrun: Flowrun, env: dict[str, str]) -> None:
    assert flowrun(*refund_case("refund_granted")).returncode == 0
    proc = flowrun("resume", only_run_id(env))
    assert proc.returncode == 2 and "already finished (succeeded)" in proc.stderr


def _corrupt(path: Path) -> None:
    path.write_bytes(b"this is not a database" * 100)


def _not_ours(path: Path) -> None:
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE invoices (id INTEGER)")


def _newer(path: Path) -> None:
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA application_id = 1179408210")
        c.execute("PRAGMA user_version = 99")
        c.execute("CREATE TABLE runs (run_id TEXT)")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_corrupt, "not a usable flowrun store"),
        (_not_ours, "not a flowrun store"),
        (_newer, "schema version 99"),
    ],
)
def test_a_store_that_cannot_be_used(
    flowrun: Flowrun, env: dict[str, str], make: object, message: str
) -> None:
    path = Path(env["FLOWRUN_STORE"])
    make(path)  # type: ignore[operator]
    before = _digest(str(path))
    for args in (["runs"], refund_case("refund_granted")):
        proc = flowrun(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr
    assert _digest(str(path)) == before
    assert sqlite3.connect(env["FLOWRUN_SUPPORT_DB"]).execute(
        "SELECT COUNT(*) FROM refunds"
    ).fetchone() == (0,)


def test_no_store_yet(flowrun: Flowrun, env: dict[str, str]) -> None:
    proc = flowrun("runs")
    assert proc.returncode == 2 and "no run store" in proc.stderr
    assert not Path(env["FLOWRUN_STORE"]).exists()
