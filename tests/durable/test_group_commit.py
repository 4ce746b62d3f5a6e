"""Group commit in the run store: when deferred rows become durable, seen from another connection."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from runner.store.db import GROUP_COMMIT_S, Store


def _committed(path: Path, sql: str, *args: object) -> int:
    """What another process would read: a separate connection sees committed rows only."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql, args).fetchone()[0])
    finally:
        conn.close()


def _events(path: Path, run_id: str) -> int:
    return _committed(path, "SELECT COUNT(*) FROM events WHERE run_id = ?", run_id)


def test_outside_an_event_loop_every_write_commits_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.event("r1", "note", "n1", text="hello")
    store.save_node("r1", "n1", "succeeded", {"node_id": "n1", "status": "succeeded"})
    assert _events(tmp_path / "s.db", "r1") == 2  # the note and node_finished
    assert _committed(tmp_path / "s.db", "SELECT COUNT(*) FROM node_results") == 1


def test_deferred_rows_commit_together_at_a_barrier(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)

    async def run() -> tuple[int, int]:
        for i in range(5):
            store.event("r1", "note", f"n{i}", i=i)
        queued = _events(path, "r1")
        await store.barrier()
        return queued, _events(path, "r1")

    queued, after = asyncio.run(run())
    assert (queued, after) == (0, 5)


def test_the_timer_commits_queued_rows_without_a_barrier(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)

    async def run() -> tuple[int, int]:
        store.event("r1", "note", "n1")
        before = _events(path, "r1")
        # the group-commit timer was set before this sleep's, for an earlier deadline: it runs first
        await asyncio.sleep(GROUP_COMMIT_S * 4)
        return before, _events(path, "r1")

    assert asyncio.run(run()) == (0, 1)


def test_a_store_outlives_its_event_loop(tmp_path: Path) -> None:
    """A timer of an ended loop never fires: the next loop's rows get a timer of their own."""
    path = tmp_path / "s.db"
    store = Store(path)

    async def first() -> None:
        store.event("r1", "note", "first")  # the loop ends before the timer fires

    async def second() -> int:
        store.event("r1", "note", "second")
        await asyncio.sleep(GROUP_COMMIT_S * 4)
        return _events(path, "r1")

    asyncio.run(first())
    assert asyncio.run(second()) == 2


def test_a_write_transaction_commits_what_was_queued_before_it_in_order(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)

    async def run() -> list[str]:
        store.event("r1", "policy_decision", "pay", effect="allow")
        store.ledger_intent(  # a write: durable before its side effect, with what led to it
            "pay/k1",
            run_id="r1",
            node_id="pay",
            tool="pay",
            effect="write",
            args={"amount": 5},
            compensate=None,
            spec_dir=None,
        )
        conn = sqlite3.connect(path)
        try:
            return [r[0] for r in conn.execute("SELECT type FROM events ORDER BY id")] + [
                r[0] for r in conn.execute("SELECT status FROM ledger")
            ]
        finally:
            conn.close()

    assert asyncio.run(run()) == ["policy_decision", "intent"]


def test_reads_through_the_store_see_its_queued_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)

    async def run() -> None:
        store.save_node("r1", "a", "succeeded", {"node_id": "a", "status": "succeeded"})
        store.save_node("r1", "a", "failed", {"node_id": "a", "status": "failed"})
        store.ledger_intent(
            "read/k",
            run_id="r1",
            node_id="a",
            tool="read",
            effect="read",
            args={},
            compensate=None,
            spec_dir=None,
            defer=True,
        )
        store.ledger_done("read/k", {"x": 1}, defer=True)
        assert _committed(path, "SELECT COUNT(*) FROM node_results") == 0
        assert store.node_results("r1")["a"]["status"] == "failed"  # the latest of two
        row = store.ledger_get("read/k")
        assert row is not None and row["status"] == "done" and row["result"] == {"x": 1}
        assert row["done_seq"] == 1

    asyncio.run(run())


def test_rows_queued_when_a_run_breaks_off_are_committed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)

    async def run() -> None:
        store.event("r1", "note", "n1")
        raise RuntimeError("the run broke off")

    with pytest.raises(RuntimeError):
        asyncio.run(run())
    store.close()
    assert _events(path, "r1") == 1


def test_a_kill_from_another_process_is_seen_at_the_next_node(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    runner_side = Store(path)
    runner_side.create_run(
        run_id="r1",
        workflow="w",
        spec_path="w.yaml",
        spec_dir=".",
        spec_text="",
        spec_digest="",
        inputs={},
        status="running",
    )
    assert runner_side.kill_requested("r1") is False
    assert runner_side.kill_requested("r1") is False  # answered from what it knows
    Store(path).request_kill("r1", by="ops")  # another connection: another process
    assert runner_side.kill_requested("r1") is True
