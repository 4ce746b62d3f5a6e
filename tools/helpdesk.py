"""Ticket reads and writes, so a workflow can read a request and leave a trail on it."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from typing_extensions import TypedDict

from tools._db import connect, now_iso, transaction
from tools.payments import Order, order_for

REPLY_PREFIX = "reply: "


class Ticket(TypedDict):
    """A ticket with its order inlined, so one read gives the workflow everything it needs."""

    ticket_id: str
    customer_email: str
    subject: str
    body: str
    order_id: str | None
    status: str
    created_at: str
    order: Order | None


class Note(TypedDict):
    """Where a note landed."""

    note_id: int
    ticket_id: str


class Reply(TypedDict):
    """Where a reply landed; replaying the same key returns this same record."""

    note_id: int
    ticket_id: str
    status: str
    idempotency_key: str | None


def _require_ticket(conn: sqlite3.Connection, ticket_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM tickets WHERE ticket_id = ?", (ticket_id,)
    ).fetchone()
    if row is None:
        raise LookupError(f"ticket {ticket_id!r} not found")
    return row


def _require_body(body: str, what: str) -> None:
    if not body.strip():
        raise ValueError(f"{what} body must not be empty")


def get_ticket(ticket_id: str) -> Ticket:
    """Read the customer's request and the order it is about in one call."""
    with closing(connect()) as conn:
        row = _require_ticket(conn, ticket_id)
        order_id: str | None = row["order_id"]
        return {
            "ticket_id": row["ticket_id"],
            "customer_email": row["customer_email"],
            "subject": row["subject"],
            "body": row["body"],
            "order_id": order_id,
            "status": row["status"],
            "created_at": row["created_at"],
            "order": None if order_id is None else order_for(conn, order_id),
        }


def add_note(ticket_id: str, body: str, idempotency_key: str | None = None) -> Note:
    """Leave an internal note (what the workflow did and why) on a ticket, once per key."""
    _require_body(body, "note")
    with closing(connect()) as conn, transaction(conn):
        if idempotency_key is not None:
            existing: sqlite3.Row | None = conn.execute(
                "SELECT note_id, ticket_id FROM ticket_notes WHERE idempotency_key = ?",
                (idempotency_key,),
            ).fetchone()
            if existing is not None:
                return {"note_id": existing["note_id"], "ticket_id": existing["ticket_id"]}
        _require_ticket(conn, ticket_id)
        cur = conn.execute(
            "INSERT INTO ticket_notes (ticket_id, body, idempotency_key, created_at)"
            " VALUES (?, ?, ?, ?)",
            (ticket_id, body, idempotency_key, now_iso()),
        )
        note_id = cur.lastrowid
        assert note_id is not None  # an INSERT into a rowid table always sets it
        return {"note_id": note_id, "ticket_id": ticket_id}


def post_reply(ticket_id: str, body: str, idempotency_key: str | None = None) -> Reply:
    """Answer the customer at most once per key, marking the ticket answered."""
    _require_body(body, "reply")
    with closing(connect()) as conn, transaction(conn):
        if idempotency_key is not None:
            existing: sqlite3.Row | None = conn.execute(
                "SELECT note_id, ticket_id FROM ticket_notes WHERE idempotency_key = ?",
                (idempotency_key,),
            ).fetchone()
            if existing is not None:
                if existing["ticket_id"] != ticket_id:
                    raise ValueError(
                        f"idempotency key {idempotency_key!r} was already used for a reply on "
                        f"ticket {existing['ticket_id']!r}, not {ticket_id!r}"
                    )
                return {
                    "note_id": existing["note_id"],
                    "ticket_id": ticket_id,
                    "status": "answered",
                    "idempotency_key": idempotency_key,
                }
        _require_ticket(conn, ticket_id)
        cur = conn.execute(
            "INSERT INTO ticket_notes (ticket_id, body, idempotency_key, created_at)"
            " VALUES (?, ?, ?, ?)",
            (ticket_id, REPLY_PREFIX + body, idempotency_key, now_iso()),
        )
        conn.execute("UPDATE tickets SET status = 'answered' WHERE ticket_id = ?", (ticket_id,))
        note_id = cur.lastrowid
        assert note_id is not None  # an INSERT into a rowid table always sets it
        return {
            "note_id": note_id,
            "ticket_id": ticket_id,
            "status": "answered",
            "idempotency_key": idempotency_key,
        }


class NoteRecord(TypedDict):
    """A stored note or reply."""

    note_id: int
    ticket_id: str
    body: str
    created_at: str


def list_notes(ticket_id: str) -> list[NoteRecord]:
    """Show the trail a workflow left on a ticket, oldest first."""
    with closing(connect()) as conn:
        _require_ticket(conn, ticket_id)
        rows = conn.execute(
            "SELECT note_id, ticket_id, body, created_at FROM ticket_notes"
            " WHERE ticket_id = ? ORDER BY note_id",
            (ticket_id,),
        )
        return [
            {
                "note_id": r["note_id"],
                "ticket_id": r["ticket_id"],
                "body": r["body"],
                "created_at": r["created_at"],
            }
            for r in rows
        ]


def plan_note(ticket_id: str, body: str, idempotency_key: str | None = None) -> dict[str, object]:
    """The dry-run stand-in for add_note: where the note would go and what it would say."""
    _require_body(body, "note")
    with closing(connect()) as conn:
        _require_ticket(conn, ticket_id)
    return {
        "result": {"note_id": 0, "ticket_id": ticket_id},
        "change": {"action": "add_note", "ticket_id": ticket_id, "body": body},
    }
