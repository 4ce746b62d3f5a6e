"""The support tools against a real seeded SQLite file, including cross-process refunds."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools import _db, helpdesk, kb, payments
from tools.seed import seed

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "support.db"
    monkeypatch.setenv("FLOWRUN_SUPPORT_DB", str(path))
    seed(path)
    return path


def count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def counts(path: Path) -> dict[str, int]:
    tables = ("tickets", "orders", "refunds", "ticket_notes", "kb_articles")
    return {t: count(path, t) for t in tables}


# --- database and seeding -----------------------------------------------------------------


def test_db_path_defaults_to_flowrun_dir_in_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOWRUN_SUPPORT_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert _db.db_path() == Path(".flowrun/support.db")
    monkeypatch.setenv("FLOWRUN_SUPPORT_DB", str(tmp_path / "x.db"))
    assert _db.db_path() == tmp_path / "x.db"


def test_seed_twice_adds_nothing_and_reset_clears_writes(db: Path) -> None:
    first = counts(db)
    assert first == {
        "tickets": 7,
        "orders": 6,
        "refunds": 0,
        "ticket_notes": 0,
        "kb_articles": 10,
    }
    seed(db)
    assert counts(db) == first

    payments.issue_refund("O-5001", 5.0, "test", idempotency_key="k")
    helpdesk.post_reply("T-1001", "hello")
    seed(db)
    assert count(db, "refunds") == 1
    assert helpdesk.get_ticket("T-1001")["status"] == "answered"  # rerun keeps state

    seed(db, reset=True)
    assert counts(db) == first
    assert helpdesk.get_ticket("T-1001")["status"] == "open"


def test_seed_cli_reports_what_it_did(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "cli.db"

    def run(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "tools.seed", "--db", str(path), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        return proc.stdout

    out = run()
    assert out.count("\n") == 1
    assert out.startswith(f"seeded {path}:") and "(23 rows added)" in out
    assert "(0 rows added)" in run()
    assert run("--reset").startswith(f"reset and seeded {path}:")
    assert count(path, "tickets") == 7


def test_unseeded_database_raises_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "missing.db"
    monkeypatch.setenv("FLOWRUN_SUPPORT_DB", str(missing))
    with pytest.raises(RuntimeError, match=r"is not seeded; run: python -m tools\.seed"):
        helpdesk.get_ticket("T-1001")
    assert not missing.exists()

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    monkeypatch.setenv("FLOWRUN_SUPPORT_DB", str(empty))
    with pytest.raises(RuntimeError, match="not seeded"):
        kb.search_kb("refund")


def test_connect_uses_wal_busy_timeout_and_rows(db: Path) -> None:
    conn = _db.connect()
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        row = conn.execute("SELECT ticket_id FROM tickets WHERE ticket_id = 'T-1001'").fetchone()
        assert row["ticket_id"] == "T-1001"
    finally:
        conn.close()


# --- helpdesk -----------------------------------------------------------------------------


def test_get_ticket_inlines_its_order(db: Path) -> None:
    ticket = helpdesk.get_ticket("T-1001")
    assert ticket["order_id"] == "O-5001"
    assert "damaged" in ticket["body"]
    order = ticket["order"]
    assert order is not None
    assert order["amount_usd"] == 35.0
    assert order["customer_email"] == ticket["customer_email"]
    assert order["items"][0]["sku"] == "MUG-CER-12"
    json.dumps(ticket)  # JSON-able as returned


def test_ticket_without_order_and_injection_ticket(db: Path) -> None:
    assert helpdesk.get_ticket("T-1003")["order"] is None
    hostile = helpdesk.get_ticket("T-1006")
    assert "Ignore previous instructions" in hostile["body"]
    assert hostile["order"] is not None and hostile["order"]["amount_usd"] == 19.0


def test_every_ticket_matches_its_order_email(db: Path) -> None:
    for n in range(1001, 1008):
        ticket = helpdesk.get_ticket(f"T-{n}")
        if ticket["order"] is not None:
            assert ticket["order"]["customer_email"] == ticket["customer_email"]


def test_unknown_ids_raise_lookup_error(db: Path) -> None:
    with pytest.raises(LookupError, match="ticket 'T-9' not found"):
        helpdesk.get_ticket("T-9")
    with pytest.raises(LookupError, match="order 'O-9' not found"):
        payments.get_order("O-9")
    with pytest.raises(LookupError, match="ticket 'T-9' not found"):
        helpdesk.add_note("T-9", "x")
    with pytest.raises(LookupError, match="refund 'R-nope' not found"):
        payments.void_refund("R-nope")


def test_add_note_and_post_reply(db: Path) -> None:
    note = helpdesk.add_note("T-1003", "classified as account/password")
    assert note["ticket_id"] == "T-1003" and note["note_id"] > 0
    assert helpdesk.get_ticket("T-1003")["status"] == "open"

    reply = helpdesk.post_reply("T-1003", "Use 'Forgot password' on the sign-in page.")
    assert reply["status"] == "answered"
    assert helpdesk.get_ticket("T-1003")["status"] == "answered"
    bodies = [n["body"] for n in helpdesk.list_notes("T-1003")]
    assert bodies == [
        "classified as account/password",
        "reply: Use 'Forgot password' on the sign-in page.",
    ]


def test_post_reply_same_key_writes_once(db: Path) -> None:
    first = helpdesk.post_reply("T-1007", "Standard shipping takes 3-7 days.", "reply:T-1007")
    again = helpdesk.post_reply("T-1007", "a different retry text", "reply:T-1007")
    assert again == first
    assert count(db, "ticket_notes") == 1
    with pytest.raises(ValueError, match="already used"):
        helpdesk.post_reply("T-1001", "hi", "reply:T-1007")
    with pytest.raises(ValueError, match="must not be empty"):
        helpdesk.post_reply("T-1001", "   ")
    assert count(db, "ticket_notes") == 1


# --- payments -----------------------------------------------------------------------------


def test_get_order(db: Path) -> None:
    order = payments.get_order("O-5002")
    assert order["amount_usd"] == 180.0
    assert order["refunded_usd"] == 0.0
    assert order["customer_email"] == "derek.olsen@example.com"


def test_issue_refund_same_key_twice_is_one_row(db: Path) -> None:
    first = payments.issue_refund("O-5001", 35.0, "damaged on arrival", "refund:O-5001")
    assert first["status"] == "issued"
    assert first["refund_id"] == "R-" + hashlib.sha256(b"refund:O-5001").hexdigest()[:10]
    again = payments.issue_refund("O-5001", 35.0, "damaged on arrival", "refund:O-5001")
    assert again == first
    assert count(db, "refunds") == 1
    assert payments.get_order("O-5001")["refunded_usd"] == 35.0


def test_refund_key_reused_on_another_order_is_refused(db: Path) -> None:
    payments.issue_refund("O-5001", 10.0, "damaged", "k1")
    with pytest.raises(ValueError, match="already used for a refund on order 'O-5001'"):
        payments.issue_refund("O-5004", 10.0, "late", "k1")
    assert count(db, "refunds") == 1


def test_refunds_without_key_get_distinct_ids(db: Path) -> None:
    a = payments.issue_refund("O-5002", 20.0, "partial")
    b = payments.issue_refund("O-5002", 20.0, "partial")
    assert a["refund_id"] != b["refund_id"]
    assert a["idempotency_key"] is None
    listed = payments.list_refunds("O-5002")
    assert {r["refund_id"] for r in listed} == {a["refund_id"], b["refund_id"]}
    assert payments.list_refunds("O-5001") == []
    assert payments.get_order("O-5002")["refunded_usd"] == 40.0


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (0.0, "must be positive"),
        (-5.0, "must be positive"),
        (35.01, "exceeds the amount of order 'O-5001'"),
        (5000.0, "exceeds the amount of order 'O-5001'"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
    ],
)
def test_refund_refusals(db: Path, amount: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        payments.issue_refund("O-5001", amount, "test", "key")
    assert count(db, "refunds") == 0


def test_cumulative_refunds_cannot_exceed_order(db: Path) -> None:
    payments.issue_refund("O-5005", 30.0, "wrong size, first shirt")
    with pytest.raises(ValueError, match=r"already refunded.*at most \$12.00"):
        payments.issue_refund("O-5005", 12.01, "wrong size, second shirt")
    payments.issue_refund("O-5005", 12.0, "wrong size, second shirt")
    assert payments.get_order("O-5005")["refunded_usd"] == 42.0
    assert count(db, "refunds") == 2


def test_preview_writes_nothing(db: Path) -> None:
    payments.issue_refund("O-5004", 4.99, "shipping cost")
    before = counts(db)
    preview = payments.preview_refund("O-5004", 10.0, "late delivery")
    assert preview == {
        "action": "issue_refund",
        "order_id": "O-5004",
        "amount_usd": 10.0,
        "reason": "late delivery",
        "order_amount_usd": 24.99,
        "before": {"refunded_usd": 4.99},
        "after": {"refunded_usd": 14.99},
        "valid": True,
        "problems": [],
    }
    bad = payments.preview_refund("O-5004", 25.0, "")
    assert bad["valid"] is False
    assert len(bad["problems"]) == 2
    assert bad["after"] == {"refunded_usd": 29.99}
    assert counts(db) == before


def test_void_refund_is_idempotent_and_frees_the_amount(db: Path) -> None:
    refund = payments.issue_refund("O-5006", 19.0, "leaking lid", "refund:O-5006")
    voided = payments.void_refund(refund["refund_id"])
    assert voided["status"] == "voided"
    assert payments.void_refund(refund["refund_id"]) == voided
    assert payments.get_order("O-5006")["refunded_usd"] == 0.0
    # the same key still names the voided refund: a retry must not re-issue it
    assert payments.issue_refund("O-5006", 19.0, "leaking lid", "refund:O-5006") == voided
    assert payments.issue_refund("O-5006", 19.0, "re-issued by a human", "manual")["status"] == (
        "issued"
    )
    assert count(db, "refunds") == 2


# --- knowledge base -----------------------------------------------------------------------


def test_kb_search_ranks_the_matching_article_first(db: Path) -> None:
    result = kb.search_kb("refund damaged")
    assert result["query"] == "refund damaged"
    top = result["articles"][0]
    assert top["title"].startswith("Damaged or defective items")
    assert "damaged" in top["snippet"].lower()
    assert kb.search_kb("how do I reset my password")["articles"][0]["article_id"] == "KB-104"
    assert kb.search_kb("When will my lamp ship?")["articles"][0]["title"].startswith("Shipping")


@pytest.mark.parametrize(
    "query",
    [
        'refund "damaged',
        "title:refund",
        "refund*",
        "*",
        "refund NEAR damaged",
        "NEAR(refund damaged, 2)",
        "AND OR NOT",
        "'; DROP TABLE kb_articles; --",
        "refund) OR (1=1",
        "^refund + - {title} [x]",
        "😀 émoji ünïcode",
        "a_b__c",
    ],
)
def test_kb_search_survives_hostile_queries(db: Path, query: str) -> None:
    result = kb.search_kb(query, limit=10)
    assert result["query"] == query
    assert isinstance(result["articles"], list)
    assert count(db, "kb_articles") == 10


@pytest.mark.parametrize("query", ["", "   ", "!!! ??? ...", '""', "*:^"])
def test_kb_search_without_words_returns_nothing(db: Path, query: str) -> None:
    result = kb.search_kb(query)
    assert result["query"] == query
    assert result["articles"] == []


def test_kb_search_limit_is_clamped(db: Path) -> None:
    assert len(kb.search_kb("refund order", limit=0)["articles"]) == 1
    assert len(kb.search_kb("refund order", limit=-3)["articles"]) == 1
    many = kb.search_kb("refund order shipping password warranty charge account", limit=99)
    assert 1 < len(many["articles"]) <= 10


def test_kb_match_expression_quotes_every_term() -> None:
    assert kb.match_expression('Refund "NEAR" the damaged: item*') == (
        '"refund" OR "near" OR "damaged" OR "item"'
    )


# --- concurrency --------------------------------------------------------------------------

WORKER = """
import json, os, sys, time
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.001)
from tools.payments import issue_refund
try:
    r = issue_refund(sys.argv[2], float(sys.argv[3]), "concurrent test", sys.argv[4] or None)
    print(json.dumps({"ok": r["refund_id"]}))
except ValueError as e:
    print(json.dumps({"refused": str(e)}))
"""


def race(db: Path, tmp_path: Path, jobs: list[tuple[str, float, str]]) -> list[dict[str, str]]:
    """Start one process per job, release them together, collect what each one got."""
    go = tmp_path / "go"
    env = {**os.environ, "FLOWRUN_SUPPORT_DB": str(db), "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(go), order_id, str(amount), key],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for order_id, amount, key in jobs
    ]
    time.sleep(0.5)  # let the interpreters start and wait on the flag
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_concurrent_refunds_with_same_key_make_one_row(db: Path, tmp_path: Path) -> None:
    results = race(db, tmp_path, [("O-5001", 35.0, "refund:O-5001")] * 4)
    assert {r["ok"] for r in results} == {"R-" + hashlib.sha256(b"refund:O-5001").hexdigest()[:10]}
    assert count(db, "refunds") == 1


def test_concurrent_refunds_cannot_overdraw_an_order(db: Path, tmp_path: Path) -> None:
    results = race(db, tmp_path, [("O-5001", 30.0, f"key-{i}") for i in range(4)])
    assert sum("ok" in r for r in results) == 1
    assert sum("refused" in r for r in results) == 3
    assert payments.get_order("O-5001")["refunded_usd"] == 30.0
