"""The account's activity log: the audit entry a hygiene run leaves, and reads for reviewers."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing

from typing_extensions import TypedDict

from tools._db import now_iso, transaction
from tools.crm.db import connect

_CONTACT = re.compile(r"^C-[0-9]+$")
_MERGE = re.compile(r"^C-[0-9]+ -> C-[0-9]+$")


class Activity(TypedDict):
    """An activity row."""

    activity_id: int
    account_id: str
    contact_id: str | None
    kind: str
    body: str
    occurred_at: str


def _require_account(conn: sqlite3.Connection, account_id: str) -> None:
    row = conn.execute("SELECT 1 FROM accounts WHERE account_id = ?", (account_id,)).fetchone()
    if row is None:
        raise LookupError(f"account {account_id!r} not found")


def _audit_body(merged: list[str], archived: list[str]) -> str:
    """Compose the entry from ids only, so no free text (and nothing smuggled) reaches the log."""
    bad = [m for m in merged if not _MERGE.match(m)]
    bad += [a for a in archived if not _CONTACT.match(a)]
    if bad:
        raise ValueError(
            f"audit entries name contacts only ('C-1 -> C-2' or 'C-1'); got {bad[0]!r}"
        )
    parts = []
    if merged:
        parts.append("merged " + ", ".join(merged))
    if archived:
        parts.append("archived " + ", ".join(archived))
    return "crm-hygiene: " + ("; ".join(parts) if parts else "no changes")


def _activity(row: sqlite3.Row) -> Activity:
    return {
        "activity_id": row["activity_id"],
        "account_id": row["account_id"],
        "contact_id": row["contact_id"],
        "kind": row["kind"],
        "body": row["body"],
        "occurred_at": row["occurred_at"],
    }


def log_audit(
    account_id: str, merged: list[str], archived: list[str], idempotency_key: str | None = None
) -> Activity:
    """Record on the account what a hygiene run changed, once per key."""
    body = _audit_body(merged, archived)
    with closing(connect()) as conn, transaction(conn):
        if idempotency_key is not None:
            existing: sqlite3.Row | None = conn.execute(
                "SELECT * FROM activities WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if existing is not None:
                return _activity(existing)
        _require_account(conn, account_id)
        cur = conn.execute(
            "INSERT INTO activities (account_id, contact_id, kind, body, idempotency_key,"
            " occurred_at) VALUES (?, NULL, 'audit', ?, ?, ?)",
            (account_id, body, idempotency_key, now_iso()),
        )
        row = conn.execute(
            "SELECT * FROM activities WHERE activity_id = ?", (cur.lastrowid,)
        ).fetchone()
        return _activity(row)


def plan_audit(
    account_id: str, merged: list[str], archived: list[str], idempotency_key: str | None = None
) -> dict[str, object]:
    """The dry-run stand-in for log_audit: the entry it would write."""
    body = _audit_body(merged, archived)
    with closing(connect()) as conn:
        _require_account(conn, account_id)
    result: Activity = {
        "activity_id": 0,
        "account_id": account_id,
        "contact_id": None,
        "kind": "audit",
        "body": body,
        "occurred_at": "",
    }
    return {
        "result": dict(result),
        "change": {"action": "log_audit", "account_id": account_id, "body": body},
    }


def list_activities(account_id: str, kind: str | None = None) -> list[Activity]:
    """The account's activities, oldest first (for reviewers and tests)."""
    with closing(connect()) as conn:
        _require_account(conn, account_id)
        sql = "SELECT * FROM activities WHERE account_id = ?"
        params: tuple[str, ...] = (account_id,)
        if kind is not None:
            sql += " AND kind = ?"
            params = (account_id, kind)
        return [_activity(r) for r in conn.execute(sql + " ORDER BY activity_id", params)]
