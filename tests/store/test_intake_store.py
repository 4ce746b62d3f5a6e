"""Deliveries, rate windows and approval notices: the same guarantees on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from runner.store import Store, open_store


def test_a_delivery_is_claimed_once_and_a_replay_gets_the_first_run(store: Store) -> None:
    assert store.delivery_claim("h", "d1", "run-a") == ("run-a", True)
    assert store.delivery_claim("h", "d1", "run-b") == ("run-a", False)
    assert store.delivery_claim("other", "d1", "run-c") == ("run-c", True)  # per hook
    store.delivery_release("h", "d1", "run-b")  # not its claim: nothing changes
    assert store.delivery_claim("h", "d1", "run-d") == ("run-a", False)
    store.delivery_release("h", "d1", "run-a")
    assert store.delivery_claim("h", "d1", "run-e") == ("run-e", True)


def test_concurrent_claims_of_one_delivery_record_one_run(target: str, store: Store) -> None:
    got: list[tuple[str, bool]] = []
    go = threading.Barrier(8)

    def claim(i: int) -> None:
        s = open_store(target)
        try:
            go.wait()
            got.append(s.delivery_claim("h", "same", f"run-{i}"))
        finally:
            s.close()

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(fresh for _, fresh in got) == 1
    assert len({run for run, _ in got}) == 1


def test_rate_windows_count_per_key_and_reset(store: Store) -> None:
    now = 1000.0  # in the window [960, 1020) of 60 s
    assert store.rate_take("k", limit=2, window_s=60, now=now) == 0.0
    assert store.rate_take("k", limit=2, window_s=60, now=now + 1) == 0.0
    assert store.rate_take("k", limit=2, window_s=60, now=now + 2) == 18.0
    assert store.rate_take("other", limit=2, window_s=60, now=now + 2) == 0.0
    assert store.rate_take("k", limit=2, window_s=60, now=1020.0) == 0.0  # a new window


def test_a_notice_is_claimed_once_and_its_outcome_recorded(store: Store) -> None:
    assert store.notice_claim("r1", "approve", "waiting", "slack")
    assert not store.notice_claim("r1", "approve", "waiting", "slack")
    assert store.notice_claim("r1", "approve", "waiting", "audit")
    store.notice_done(
        "r1", "approve", "waiting", "slack", status="failed", attempts=3, error="HTTP 500"
    )
    rows = {n["target"]: n for n in store.notices("r1")}
    assert rows["slack"]["status"] == "failed" and rows["slack"]["attempts"] == 3
    assert rows["slack"]["error"] == "HTTP 500"
    assert rows["audit"]["status"] == "sending"
    assert store.notices("r2") == []


def test_threads_reading_their_first_run_at_once_all_read_it(target: str, store: Store) -> None:
    """A webhook server opens stores and reads runs from several threads at once; the first
    reads of a fresh process must not trip over each other (each try is a new process)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    store.create_run(
        run_id="a", workflow="w", spec_path="/x", spec_dir="/", spec_text="", spec_digest="d",
        profile=None, inputs={"email": "maya@example.com"}, responses_path=None, options={},
        tenant=None, actor=None, status="running", pid=1, host="h",
    )  # fmt: skip
    script = f"""
import sys, threading
sys.path.insert(0, {str(root)!r})
from runner.store import open_store
errors, go = [], threading.Barrier(8)
def read():
    go.wait()
    try:
        s = open_store({target!r}, create=False)
        assert s.get_run("a").inputs == {{"email": "maya@example.com"}}
        s.close()
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=read) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(errors)
"""
    for _ in range(6):
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
