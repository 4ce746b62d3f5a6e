"""The store's interface, the same on SQLite and PostgreSQL (each test runs on both)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runner.store import DuplicateRun, NotFound, Store, StoreError, open_store


def _run(store: Store, run_id: str = "r1", **over: Any) -> None:
    row: dict[str, Any] = {
        "run_id": run_id,
        "workflow": "wf",
        "spec_path": "/x/wf.yaml",
        "spec_dir": "/x",
        "spec_text": "name: wf",
        "spec_digest": "d" * 64,
        "profile": None,
        "inputs": {"q": 1},
        "responses_path": None,
        "options": {"live": False},
        "tenant": "acme",
        "actor": "ann",
        "status": "running",
        "pid": 123,
        "host": "h1",
    }
    row.update(over)
    store.create_run(**row)


def _intent(store: Store, key: str, run_id: str = "r1", *, defer: bool = False) -> None:
    store.ledger_intent(
        key,
        run_id=run_id,
        node_id="n",
        tool="refund",
        effect="write",
        args={"amount": 5},
        compensate=None,
        spec_dir="/x",
        defer=defer,
    )


def test_a_run_is_created_read_updated_and_listed(store: Store) -> None:
    bundle = {"digest": "b" * 64, "entry": "wf.yaml", "files": {"wf.yaml": "name: wf"}}
    _run(store, bundle=bundle)
    _run(store, "r2", workflow="other", tenant=None, status="succeeded", bundle=bundle)
    row = store.get_run("r1")
    assert (row.workflow, row.inputs, row.options, row.tenant) == (
        "wf",
        {"q": 1},
        {"live": False},
        "acme",
    )
    assert row.bundle_digest == "b" * 64 and row.kill_requested is False
    assert store.get_bundle("b" * 64)["files"] == {"wf.yaml": "name: wf"}
    store.update_run("r1", status="waiting", reason="needs a human")
    assert (store.get_run("r1").status, store.get_run("r1").reason) == ("waiting", "needs a human")
    store.finish_run("r1", add_duration_s=1.5, status="succeeded", outputs={"ok": True})
    store.finish_run("r1", add_duration_s=0.5, status="succeeded", outputs={"ok": True})
    store.flush()
    done = store.get_run("r1")
    assert (done.status, done.outputs, done.duration_s) == ("succeeded", {"ok": True}, 2.0)
    assert [r.run_id for r in store.list_runs()] == ["r2", "r1"]
    assert [r.run_id for r in store.list_runs(workflow="other")] == ["r2"]
    assert [r.run_id for r in store.list_runs(tenant="acme", status="succeeded")] == ["r1"]
    assert store.list_runs(limit=1)[0].run_id == "r2"
    assert store.workflows() == ["other", "wf"]
    assert store.status_counts() == {"succeeded": 2}


def test_unknown_and_duplicate_runs(store: Store) -> None:
    _run(store, "r-2026-12-05-abc")
    with pytest.raises(DuplicateRun):
        _run(store, "r-2026-12-05-abc")
    with pytest.raises(NotFound) as e:
        store.get_run("r-2026-12-05-abd")
    assert "did you mean 'r-2026-12-05-abc'" in str(e.value.hint)
    with pytest.raises(NotFound):
        store.get_bundle("0" * 64)


def test_a_run_is_claimed_by_one_process(store: Store) -> None:
    _run(store, status="failed", pid=None)
    assert store.claim_run("r1", was_status="failed", was_pid=None, host="h2")
    # the second claimant read the same row before the first claimed it: it loses
    assert not store.claim_run("r1", was_status="failed", was_pid=None, host="h3")
    row = store.get_run("r1")
    assert (row.status, row.host) == ("running", "h2")


def test_node_results_keep_the_latest_attempt(store: Store) -> None:
    _run(store)
    store.save_node("r1", "a", "failed", {"error": "x"})
    store.save_node("r1", "a", "succeeded", {"output": 1})
    store.save_node("r1", "b", "succeeded", {"output": 2})
    assert store.node_results("r1") == {"a": {"output": 1}, "b": {"output": 2}}
    finished = [e["node_id"] for e in store.events("r1", "node_finished")]
    assert finished == ["a", "a", "b"]


def test_events_and_calls(store: Store) -> None:
    _run(store)
    store.event("r1", "custom", "n", answer=42)
    store.record_call(
        run_id="r1",
        node_id="n",
        idx=0,
        attempt=1,
        kind="tool",
        name="t",
        data={"args": {}},
        error=None,
        started_at=1.0,
        duration_s=0.1,
    )
    store.record_call(
        run_id="r1",
        node_id="n",
        idx=1,
        attempt=1,
        kind="tool",
        name="t",
        data={"args": {}},
        error="boom",
        started_at=2.0,
        duration_s=0.1,
    )
    store.record_call(
        run_id="r1",
        node_id="n",
        idx=2,
        attempt=1,
        kind="model",
        name="m",
        data={"tokens": 3},
        error=None,
        started_at=3.0,
        duration_s=0.1,
    )
    assert [e["type"] for e in store.events("r1")] == ["run_created", "custom"]
    assert store.events("r1", "custom")[0]["data"] == {"answer": 42}
    calls = store.calls("r1")
    assert [(c["kind"], c["error"]) for c in calls] == [
        ("tool", None),
        ("tool", "boom"),
        ("model", None),
    ]
    assert calls[2]["data"] == {"tokens": 3}
    assert store.tool_call_counts(["r1"]) == (2, 1)
    assert store.tool_call_counts([]) == (0, 0)
    store.event("r1", "undo")
    store.event("r1", "undo")
    assert store.runs_with_event("undo", ["r1", "r9"]) == 1


def test_finished_runs_filter(store: Store) -> None:
    _run(store, "r1", status="succeeded")
    _run(store, "r2", status="failed", tenant="other")
    _run(store, "r3", status="running")
    got = store.finished_runs(("succeeded", "failed"))
    assert sorted(r.run_id for r in got) == ["r1", "r2"]
    assert [r.run_id for r in store.finished_runs(("succeeded", "failed"), tenant="other")] == [
        "r2"
    ]
    assert store.finished_runs(("succeeded",), since=9e12) == []


def test_the_ledger(store: Store) -> None:
    _run(store)
    assert store.ledger_get("r1:a") is None
    _intent(store, "r1:a")
    assert store.ledger_get("r1:a", run_id="r1")["status"] == "intent"  # type: ignore[index]
    store.ledger_done("r1:a", {"id": 7})
    _intent(store, "r1:b", defer=True)
    store.ledger_done("r1:b", {"id": 8}, defer=True)
    _intent(store, "r1:c")
    store.ledger_failed("r1:c", "refused")
    store.flush()
    rows = {r["key"]: r for r in store.ledger_for_run("r1")}
    assert rows["r1:a"]["result"] == {"id": 7} and rows["r1:a"]["args"] == {"amount": 5}
    assert (rows["r1:a"]["done_seq"], rows["r1:b"]["done_seq"]) == (1, 2)
    assert (rows["r1:c"]["status"], rows["r1:c"]["error"]) == ("failed", "refused")
    store.ledger_mark_undone("r1:a")
    assert store.ledger_get("r1:a")["undone"] == 1  # type: ignore[index]
    # an intent again under a key replaces the row, as a new row
    _intent(store, "r1:a")
    again = store.ledger_get("r1:a")
    assert again is not None and (again["status"], again["result"], again["undone"]) == (
        "intent",
        None,
        0,
    )


def test_an_approval_is_decided_once(store: Store) -> None:
    _run(store)
    store.approval_request("r1", "ok", summary="refund 5", assignees=["ops"], decision_schema=None)
    store.approval_request("r1", "ok", summary="again", assignees=None, decision_schema=None)
    waiting = store.inbox()
    assert [(a["node_id"], a["summary"], a["assignees"]) for a in waiting] == [
        ("ok", "refund 5", ["ops"])
    ]
    store.approval_decide("r1", "ok", status="approved", by="ann", decision={"x": 1})
    with pytest.raises(NotFound, match="already approved by ann"):
        store.approval_decide("r1", "ok", status="rejected", by="bob", reason="no")
    with pytest.raises(NotFound, match="no approval waiting"):
        store.approval_decide("r1", "nope", status="approved", by="ann")
    got = store.approval_get("r1", "ok")
    assert got is not None and (got["status"], got["decision"]) == ("approved", {"x": 1})
    assert store.inbox() == []


def test_kill_and_the_writes_switch_are_seen_by_another_connection(target: str) -> None:
    a, b = open_store(target), open_store(target)
    try:
        _run(a)
        assert not a.kill_requested("r1") and a.writes_enabled()
        b.request_kill("r1", by="ops")
        b.set_writes(False, by="ops")
        assert a.kill_requested("r1") and not a.writes_enabled()
        b.set_writes(True, by="ops")
        assert a.writes_enabled()
        assert [e["data"]["on"] for e in a.events("*", "writes_switch")] == [False, True]
    finally:
        a.close()
        b.close()


def test_deferred_rows_are_committed_by_the_barrier(target: str) -> None:
    async def go(s: Store) -> None:
        _run(s)
        s.event("r1", "deferred")
        s.save_node("r1", "a", "succeeded", {"output": 1})
        await s.barrier()

    writer, reader = open_store(target), open_store(target)
    try:
        asyncio.run(go(writer))
        assert reader.node_results("r1") == {"a": {"output": 1}}
        assert [e["type"] for e in reader.events("r1")][-1] == "node_finished"
    finally:
        writer.close()
        reader.close()


def test_secrets_are_sealed_at_rest(store: Store) -> None:
    _run(store, inputs={"key": "sk-ant-api03-" + "x" * 40})
    assert store.get_run("r1").inputs == {"key": "sk-ant-api03-" + "x" * 40}


def test_a_store_opened_without_create_must_exist(target: str) -> None:
    with pytest.raises(StoreError, match=r"no (run store|flowrun store)"):
        open_store(target, create=False)


def test_spend_is_reserved_against_the_caps_and_settled(store: Store) -> None:
    _run(store)
    caps = {"llm_calls": 2, "usd": 1.0}

    def reserve(usd: float) -> tuple[int | None, dict[str, float]]:
        return store.spend_reserve(
            "r1", caps=caps, node_id="a", at="a", model="m", usd=usd,
            input_tokens=10, output_tokens=5,
        )  # fmt: skip

    first, before = reserve(0.4)
    assert first is not None and before == {"usd": 0.0, "tokens": 0.0, "llm_calls": 0}
    assert reserve(0.7)[0] is None  # 0.4 + 0.7 > 1.0: refused, no row
    second, before = reserve(0.5)
    assert second is not None and before["llm_calls"] == 1
    assert reserve(0.01)[0] is None  # a third call passes max llm_calls
    store.spend_settle(first, "billed", usd=0.1, input_tokens=3, output_tokens=2)
    store.spend_settle(second, "released")
    store.flush()
    assert store.spend_by_node("r1") == {
        "a": {"llm_calls": 1, "cost_usd": 0.1, "input_tokens": 3, "output_tokens": 2}
    }
    assert [r["status"] for r in store.spend_rows("r1")] == ["billed", "released"]


def _reserve(store: Store, caps: dict[str, float], run_id: str = "r1", **over: Any) -> Any:
    call: dict[str, Any] = {
        "node_id": "each",
        "at": "each[0]",
        "model": "openai/gpt-4o-mini",
        "usd": 0.001,
        "input_tokens": 100,
        "output_tokens": 50,
    }
    call.update(over)
    return store.spend_reserve(run_id, caps=caps, **call)


def test_model_call_spend_is_reserved_against_caps_and_settled(store: Store) -> None:
    _run(store)
    caps = {"llm_calls": 3, "usd": 0.0025}
    first, before = _reserve(store, caps)
    assert first is not None and before == {"usd": 0.0, "tokens": 0.0, "llm_calls": 0}
    second, before = _reserve(store, caps, node_id="other", at="other")
    assert second is not None and before["llm_calls"] == 1
    # a third call would pass max_usd (3 x $0.001 reserved): refused, nothing written
    refused, before = _reserve(store, caps)
    assert refused is None and before["usd"] == pytest.approx(0.002)
    store.spend_settle(first, "billed", usd=0.0004, input_tokens=100, output_tokens=10)
    store.spend_settle(second, "released")
    store.flush()
    third, before = _reserve(store, caps)  # billed less than reserved, released: room again
    assert third is not None and before == {
        "usd": pytest.approx(0.0004),
        "tokens": 110,
        "llm_calls": 1,
    }
    store.spend_settle(third, "cancelled")  # cut off in flight: keeps its reservation
    assert store.spend_by_node("r1") == {
        "each": {
            "llm_calls": 2,
            "cost_usd": pytest.approx(0.0014),
            "input_tokens": 200,
            "output_tokens": 60,
        }
    }
    assert store.spend_by_node("r1", "other") == {}
    assert [(r["at"], r["status"]) for r in store.spend_rows("r1")] == [
        ("each[0]", "billed"),
        ("other", "released"),
        ("each[0]", "cancelled"),
    ]
    assert store.spend_rows("r2") == [] and store.spend_by_node("r2") == {}


def test_reservations_from_many_connections_never_pass_a_cap(target: str) -> None:
    """Eight connections (as eight worker processes would) reserve calls of one run at once:
    exactly the cap is reserved, never more."""
    import threading

    stores = [open_store(target) for _ in range(8)]
    _run(stores[0])
    got: list[int | None] = []
    lock = threading.Lock()

    def worker(s: Store) -> None:
        for _ in range(10):
            row, _ = _reserve(s, {"llm_calls": 25})
            with lock:
                got.append(row)

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(got) == 80
        assert sum(1 for r in got if r is not None) == 25
        assert len(stores[1].spend_rows("r1")) == 25
    finally:
        for s in stores:
            s.close()


def test_both_stores_offer_exactly_the_interface() -> None:
    """A method added to one implementation only would fail on the other store at run time."""
    from runner.store.postgres import PostgresStore
    from runner.store.sqlite import SqliteStore

    def public(cls: type) -> set[str]:
        return {n for n in dir(cls) if not n.startswith("_")}

    assert public(SqliteStore) - public(Store) == {"tx"}  # SQLite's write transaction, inside
    assert public(PostgresStore) - public(Store) == set()


def test_a_store_is_named_to_other_processes_without_its_password(tmp_path: object) -> None:
    from runner.store import public_target

    assert public_target("postgresql://u:pw@h:5432/db") == "postgresql://u@h:5432/db"
    assert public_target("postgres://u:pw@h/db?sslmode=require") == (
        "postgres://u@h/db?sslmode=require"
    )
    assert public_target("postgresql://h/db") == "postgresql://h/db"


def test_a_ledger_key_is_claimed_by_one_run(target: str) -> None:
    """Two connections (two processes, two machines) claim one key for two runs: one wins."""
    a, b = open_store(target), open_store(target)
    try:
        _run(a, "r1")
        _run(a, "r2")
        row = {"node_id": "w", "tool": "charge", "effect": "write", "args": {"n": 1}}
        assert a.ledger_claim("charge-1", run_id="r1", **row)
        assert not b.ledger_claim("charge-1", run_id="r2", **row)  # in flight in r1
        assert b.ledger_get("charge-1")["run_id"] == "r1"  # type: ignore[index]
        assert a.ledger_claim("charge-1", run_id="r1", **row)  # r1 again: a retry, a resume
        a.ledger_failed("charge-1", "timed out")
        assert b.ledger_claim("charge-1", run_id="r2", **row)  # a failed call is free
        b.ledger_done("charge-1", {"ok": True})
        assert not a.ledger_claim("charge-1", run_id="r1", **row)  # done by r2
        done = a.ledger_get("charge-1")
        assert done is not None and (done["run_id"], done["result"]) == ("r2", {"ok": True})
    finally:
        a.close()
        b.close()


def test_a_batch_is_recorded_with_its_lines_and_linked_to_runs(store: Store) -> None:
    lines = [
        {"line": 1, "inputs": {"ticket_id": "T-1"}, "status": "pending"},
        {"line": 2, "inputs": None, "status": "invalid", "reason": "not JSON"},
        {"line": 4, "inputs": {"ticket_id": "T-3", "api_key": "sk-abcdef0123456789abcdef"},
         "status": "pending"},
    ]  # fmt: skip
    store.batch_create(
        "b1",
        lines=lines,
        workflow="wf",
        spec_path="/x/wf.yaml",
        data_path="/x/data.jsonl",
        options={"concurrency": 2, "max_usd": 0.5},
        status="running",
        pid=123,
        host="h1",
    )
    with pytest.raises(DuplicateRun):
        store.batch_create(
            "b1", lines=[], workflow="wf", spec_path="/x", data_path="/y", options={},
            status="running", pid=None, host=None,
        )  # fmt: skip
    got = store.batch_get("b1")
    assert (got["workflow"], got["total"], got["status"], got["pid"]) == ("wf", 3, "running", 123)
    assert got["options"] == {"concurrency": 2, "max_usd": 0.5}
    _run(store, "b1.1")
    store.batch_line_set("b1", 1, run_id="b1.1", status="started")
    store.batch_line_set("b1", 4, status="not_started", reason="not started: batch ceiling")
    got_lines = store.batch_lines("b1")
    assert [(x["line"], x["run_id"], x["status"], x["reason"]) for x in got_lines] == [
        (1, "b1.1", "started", None),
        (2, None, "invalid", "not JSON"),
        (4, None, "not_started", "not started: batch ceiling"),
    ]
    assert got_lines[2]["inputs"]["api_key"] == "sk-abcdef0123456789abcdef"  # sealed, opened
    store.batch_update("b1", status="finished", pid=None, finished_at=5.0)
    assert store.batch_get("b1")["status"] == "finished"
    store.batch_create(
        "b2", lines=[], workflow="wf", spec_path="/x", data_path="/y", options={},
        status="running", pid=None, host=None,
    )  # fmt: skip
    assert [b["batch_id"] for b in store.list_batches()][0:2] in (["b2", "b1"], ["b1", "b2"])
    assert {b["batch_id"] for b in store.list_batches(limit=1)} <= {"b1", "b2"}
    assert store.row_counts()["batch_lines"] == 3
    with pytest.raises(NotFound):
        store.batch_get("nope")
