"""Incident reads and the incident timeline, so triage starts from the alert and leaves a trail."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

from typing_extensions import TypedDict

from tools._db import now_iso, transaction
from tools.itops import connect

MAX_ENTRY_CHARS = 2000


class Incident(TypedDict):
    """An alert as monitoring raised it; `log_excerpt` is application output (untrusted text)."""

    incident_id: str
    service: str
    host: str
    alert_name: str
    alert_severity: str  # critical | warning | info, from the alerting rule, not from a model
    metrics: dict[str, float]
    log_excerpt: str
    status: str  # open | mitigated | resolved
    opened_at: str


class TimelineEntry(TypedDict):
    """Where a timeline entry landed; replaying the same key returns this same record."""

    entry_id: int
    incident_id: str
    body: str
    idempotency_key: str | None
    created_at: str


class TimelinePreview(TypedDict):
    """The entry add_timeline_entry would write, for dry runs."""

    action: str
    incident_id: str
    body: str
    entries_before: int
    entries_after: int
    valid: bool
    problems: list[str]


def _incident_row(conn: sqlite3.Connection, incident_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM incidents WHERE incident_id = ?", (incident_id,)
    ).fetchone()
    if row is None:
        raise LookupError(f"incident {incident_id!r} not found")
    return row


def incident_from_row(row: sqlite3.Row) -> Incident:
    metrics: dict[str, float] = {k: float(v) for k, v in json.loads(row["metrics"]).items()}
    return {
        "incident_id": row["incident_id"],
        "service": row["service"],
        "host": row["host"],
        "alert_name": row["alert_name"],
        "alert_severity": row["alert_severity"],
        "metrics": metrics,
        "log_excerpt": row["log_excerpt"],
        "status": row["status"],
        "opened_at": row["opened_at"],
    }


def get_incident(incident_id: str) -> Incident:
    """Read the alert, its metrics and the log excerpt that triage starts from."""
    with closing(connect()) as conn:
        return incident_from_row(_incident_row(conn, incident_id))


def _entry_problems(body: str) -> list[str]:
    problems: list[str] = []
    if not body.strip():
        problems.append("timeline entry must not be empty")
    if len(body) > MAX_ENTRY_CHARS:
        problems.append(f"timeline entry is {len(body)} characters; at most {MAX_ENTRY_CHARS}")
    return problems


def _entry(row: sqlite3.Row) -> TimelineEntry:
    return {
        "entry_id": row["entry_id"],
        "incident_id": row["incident_id"],
        "body": row["body"],
        "idempotency_key": row["idempotency_key"],
        "created_at": row["created_at"],
    }


def add_timeline_entry(
    incident_id: str, body: str, idempotency_key: str | None = None
) -> TimelineEntry:
    """Record what was done on an incident's timeline, at most once per key."""
    problems = _entry_problems(body)
    if problems:
        raise ValueError("timeline entry refused: " + "; ".join(problems))
    with closing(connect()) as conn, transaction(conn):
        if idempotency_key is not None:
            existing: sqlite3.Row | None = conn.execute(
                "SELECT * FROM timeline WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if existing is not None:
                if existing["incident_id"] != incident_id:
                    raise ValueError(
                        f"idempotency key {idempotency_key!r} was already used on incident "
                        f"{existing['incident_id']!r}, not {incident_id!r}"
                    )
                return _entry(existing)
        _incident_row(conn, incident_id)
        cur = conn.execute(
            "INSERT INTO timeline (incident_id, body, idempotency_key, created_at)"
            " VALUES (?, ?, ?, ?)",
            (incident_id, body, idempotency_key, now_iso()),
        )
        row: sqlite3.Row = conn.execute(
            "SELECT * FROM timeline WHERE entry_id = ?", (cur.lastrowid,)
        ).fetchone()
        return _entry(row)


def preview_timeline_entry(incident_id: str, body: str) -> TimelinePreview:
    """Describe a timeline entry without writing it."""
    with closing(connect()) as conn:
        _incident_row(conn, incident_id)
        count = int(
            conn.execute(
                "SELECT count(*) FROM timeline WHERE incident_id = ?", (incident_id,)
            ).fetchone()[0]
        )
    problems = _entry_problems(body)
    return {
        "action": "add_timeline_entry",
        "incident_id": incident_id,
        "body": body,
        "entries_before": count,
        "entries_after": count + (0 if problems else 1),
        "valid": not problems,
        "problems": problems,
    }


def plan_timeline_entry(
    incident_id: str, body: str, idempotency_key: str | None = None
) -> dict[str, object]:
    """The dry-run stand-in for add_timeline_entry: the entry it would return, and the change."""
    change = preview_timeline_entry(incident_id, body)
    result: TimelineEntry = {
        "entry_id": 0,
        "incident_id": incident_id,
        "body": body,
        "idempotency_key": idempotency_key,
        "created_at": "",
    }
    return {"result": dict(result), "change": dict(change)}


def list_timeline(incident_id: str | None = None) -> list[TimelineEntry]:
    """The timeline, oldest first, for audits and tests."""
    with closing(connect()) as conn:
        if incident_id is None:
            rows = conn.execute("SELECT * FROM timeline ORDER BY entry_id")
        else:
            rows = conn.execute(
                "SELECT * FROM timeline WHERE incident_id = ? ORDER BY entry_id", (incident_id,)
            )
        return [_entry(r) for r in rows]
