"""Group commit in the run store: when deferred rows become durable, seen from another connection;
on both implementations (`target`: a SQLite file, a PostgreSQL database)."""

from __future__ import annotations

import asyncio

import pytest

from runner.store import Store, open_store
from runner.store.postgres import GROUP_COMMIT_S as PG_GROUP_COMMIT_S
from runner.store.sqlite import GROUP_COMMIT_S
from tests.stores import query

assert PG_GROUP_COMMIT_S == GROUP_COMMIT_S  # one meaning on both


def _committed(path: str, sql: str, *args: object) -> int:
    """What another process would read: a separate connection sees committed rows only."""
    return int(query(path, sql, *args)[0][0])


def _events(path: str, run_id: str) -> int:
    return _committed(path, "SELECT COUNT(*) FROM events WHERE run_id = ?", run_id)


def test_outside_an_event_loop_every_write_commits_at_once(target: str) -> None:
    store = open_store(target)
    store.event("r1", "note", "n1", text="hello")
    store.save_node("r1", "n1", "succeeded", {"node_id": "n1", "status": "succeeded"})
    assert _events(target, "r1") == 2  # the note and node_finished
    assert _committed(target, "SELECT COUNT(*) FROM node_results") == 1


def test_deferred_rows_commit_together_at_a_barrier(target: str) -> None:
    path = target
    store = open_store(path)

    async def run() -> tuple[int, int]:
        for i in range(5):
            store.event("r1", "note", f"n{i}", i=i)
        queued = _events(path, "r1")
        await store.barrier()
        return queued, _events(path, "r1")

    queued, after = asyncio.run(run())
    assert (queued, after) == (0, 5)


def test_the_timer_commits_queued_rows_without_a_barrier(target: str) -> None:
    path = target
    store = open_store(path)

    async def run() -> tuple[int, int]:
        store.event("r1", "note", "n1")
        before = _events(path, "r1")
        # the group-commit timer was set before this sleep's, for an earlier deadline: it runs first
        await asyncio.sleep(GROUP_COMMIT_S * 4)
        return before, _events(path, "r1")

    assert asyncio.run(run()) == (0, 1)


def test_a_store_outlives_its_event_loop(target: str) -> None:
    """A timer of an ended loop never fires: the next loop's rows get a timer of their own."""
    path = target
    store = open_store(path)

    async def first() -> None:
        store.event("r1", "note", "first")  # the loop ends before the timer fires

    async def second() -> int:
        store.event("r1", "note", "second")
        await asyncio.sleep(GROUP_COMMIT_S * 4)
        return _events(path, "r1")

    asyncio.run(first())
    assert asyncio.run(second()) == 2


def test_a_write_transaction_commits_what_was_queued_before_it_in_order(target: str) -> None:
    path = target
    store = open_store(path)

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
        return [r[0] for r in query(path, "SELECT type FROM events ORDER BY id")] + [
            r[0] for r in query(path, "SELECT status FROM ledger")
        ]

    assert asyncio.run(run()) == ["policy_decision", "intent"]


def test_reads_through_the_store_see_its_queued_rows(target: str) -> None:
    path = target
    store = open_store(path)

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


def test_rows_queued_when_a_run_breaks_off_are_committed_on_close(target: str) -> None:
    path = target
    store = open_store(path)

    async def run() -> None:
        store.event("r1", "note", "n1")
        raise RuntimeError("the run broke off")

    with pytest.raises(RuntimeError):
        asyncio.run(run())
    store.close()
    assert _events(path, "r1") == 1


def _new_run(store: Store, run_id: str) -> None:
    store.create_run(
        run_id=run_id,
        workflow="w",
        spec_path="w.yaml",
        spec_dir=".",
        spec_text="",
        spec_digest="",
        inputs={},
        status="running",
    )


def test_a_kill_from_another_process_is_seen_at_the_next_node(target: str) -> None:
    path = target
    runner_side = open_store(path)
    _new_run(runner_side, "r1")
    assert runner_side.kill_requested("r1") is False
    assert runner_side.kill_requested("r1") is False  # answered from what it knows
    open_store(path).request_kill("r1", by="ops")  # another connection: another process
    assert runner_side.kill_requested("r1") is True


def _intent(store: Store, key: str, run_id: str, node_id: str) -> None:
    store.ledger_intent(
        key,
        run_id=run_id,
        node_id=node_id,
        tool="get",
        effect="read",
        args={"i": 1},
        compensate=None,
        spec_dir=".",
        defer=True,
    )


def test_a_queued_intent_and_its_result_commit_as_one_done_row_in_order(target: str) -> None:
    path = target
    store = open_store(path)
    _new_run(store, "r1")

    async def run() -> None:
        for i in range(3):
            _intent(store, f"get/r1:n{i}", "r1", f"n{i}")
            store.ledger_done(f"get/r1:n{i}", {"i": i}, defer=True)
        _intent(store, "get/r1:n3", "r1", "n3")  # no result yet: stays an intent
        await store.barrier()

    asyncio.run(run())
    rows = query(path, "SELECT key, status, result, done_seq, error FROM ledger ORDER BY key")
    assert rows == [
        ("get/r1:n0", "done", '{"i":0}', 1, None),
        ("get/r1:n1", "done", '{"i":1}', 2, None),
        ("get/r1:n2", "done", '{"i":2}', 3, None),
        ("get/r1:n3", "intent", None, None, None),
    ]
    # and a result that comes after its intent was committed updates the row
    store.ledger_done("get/r1:n3", {"i": 3})
    row = store.ledger_get("get/r1:n3") or {}
    assert (row.get("status"), row.get("result"), row.get("done_seq")) == ("done", {"i": 3}, 4)


def test_a_new_runs_ledger_is_known_here_and_read_from_the_file_once_it_ended(
    target: str,
) -> None:
    path = target
    store = open_store(path)
    _new_run(store, "r1")
    # nobody else makes this run's default keys while it runs here: no read needed
    assert store.ledger_get("get/r1:n0", run_id="r1") is None
    _intent(store, "get/r1:n0", "r1", "n0")  # outside a loop: committed at once
    assert (store.ledger_get("get/r1:n0", run_id="r1") or {})["status"] == "intent"
    # a key that is not the run's own is always read, even during a new run
    other = open_store(path)
    _intent(other, "get/shared-key", "r0", "n0")
    assert (store.ledger_get("get/shared-key") or {})["status"] == "intent"
    # once this process's execution of the run has ended, its ledger is read from the file
    store.run_ended("r1")
    _intent(other, "get/r1:n9", "r1", "n9")  # e.g. a resume in another process
    assert (store.ledger_get("get/r1:n9", run_id="r1") or {})["status"] == "intent"


def test_queued_rows_of_many_kinds_keep_their_order_within_each_table(target: str) -> None:
    path = target
    store = open_store(path)

    async def run() -> None:
        for i in range(4):
            store.event("r1", "note", "n1", i=i)
            store.save_node("r1", "n1", "succeeded", {"attempt": i})
            store.record_call(
                run_id="r1",
                node_id="n1",
                idx=None,
                attempt=i + 1,
                kind="tool",
                name="get",
                data={"i": i},
                error=None,
                started_at=float(i),
                duration_s=0.0,
            )
        await store.barrier()

    asyncio.run(run())
    assert [e["data"].get("i") for e in store.events("r1") if e["type"] == "note"] == [0, 1, 2, 3]
    assert [c["attempt"] for c in store.calls("r1")] == [1, 2, 3, 4]
    assert store.node_results("r1") == {"n1": {"attempt": 3}}  # the latest of four checkpoints
    seqs = _committed(path, "SELECT MAX(seq) FROM node_results WHERE run_id = 'r1'")
    assert seqs == 4
