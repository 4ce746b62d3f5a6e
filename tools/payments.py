"""Order lookups and refunds with the money invariants enforced in the tool, not the model."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import uuid
from contextlib import closing

from typing_extensions import TypedDict

from tools._db import connect, now_iso, transaction


class OrderItem(TypedDict):
    """One line of an order."""

    sku: str
    name: str
    qty: int
    price_usd: float


class Order(TypedDict):
    """An order as the workflow sees it, with what has already been refunded."""

    order_id: str
    customer_email: str
    amount_usd: float
    status: str
    items: list[OrderItem]
    created_at: str
    refunded_usd: float


class Refund(TypedDict):
    """A refund row; `idempotency_key` ties it to the workflow step that issued it."""

    refund_id: str
    order_id: str
    amount_usd: float
    reason: str
    status: str
    idempotency_key: str | None
    created_at: str


class RefundTotals(TypedDict):
    """The refunded total of an order at one point in time."""

    refunded_usd: float


class RefundPreview(TypedDict):
    """The change issue_refund would make, for dry runs and approvals."""

    action: str
    order_id: str
    amount_usd: float
    reason: str
    order_amount_usd: float
    before: RefundTotals
    after: RefundTotals
    valid: bool
    problems: list[str]


def _cents(amount_usd: float) -> int:
    """Compare money in whole cents so float sums cannot drift past a limit."""
    return round(amount_usd * 100)


def _usd(cents: int) -> float:
    return round(cents / 100, 2)


def _order_row(conn: sqlite3.Connection, order_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM orders WHERE order_id = ?", (order_id,)
    ).fetchone()
    if row is None:
        raise LookupError(f"order {order_id!r} not found")
    return row


def _refunded_cents(conn: sqlite3.Connection, order_id: str) -> int:
    rows = conn.execute(
        "SELECT amount_usd FROM refunds WHERE order_id = ? AND status = 'issued'", (order_id,)
    )
    return sum(_cents(float(r[0])) for r in rows)


def _order(conn: sqlite3.Connection, row: sqlite3.Row) -> Order:
    items: list[OrderItem] = json.loads(row["items"])
    return {
        "order_id": row["order_id"],
        "customer_email": row["customer_email"],
        "amount_usd": float(row["amount_usd"]),
        "status": row["status"],
        "items": items,
        "created_at": row["created_at"],
        "refunded_usd": _usd(_refunded_cents(conn, row["order_id"])),
    }


def _refund(row: sqlite3.Row) -> Refund:
    return {
        "refund_id": row["refund_id"],
        "order_id": row["order_id"],
        "amount_usd": float(row["amount_usd"]),
        "reason": row["reason"],
        "status": row["status"],
        "idempotency_key": row["idempotency_key"],
        "created_at": row["created_at"],
    }


def order_for(conn: sqlite3.Connection, order_id: str) -> Order | None:
    """Let helpdesk embed an order in a ticket through the same shape, on its connection."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM orders WHERE order_id = ?", (order_id,)
    ).fetchone()
    return None if row is None else _order(conn, row)


def _problems(conn: sqlite3.Connection, order: sqlite3.Row, amount_usd: float) -> list[str]:
    """Every reason a refund must not happen, worded for a human reviewer."""
    order_id = order["order_id"]
    if isinstance(amount_usd, bool) or not isinstance(amount_usd, int | float):
        return [f"amount_usd must be a number, got {type(amount_usd).__name__}"]
    if not math.isfinite(amount_usd):
        return [f"amount_usd must be a finite number, got {amount_usd}"]
    cents = _cents(amount_usd)
    order_cents = _cents(float(order["amount_usd"]))
    refunded = _refunded_cents(conn, order_id)
    problems: list[str] = []
    if cents <= 0:
        problems.append(f"refund amount must be positive, got ${amount_usd:.2f}")
    if cents > order_cents:
        problems.append(
            f"refund ${_usd(cents):.2f} exceeds the amount of order {order_id!r} "
            f"(${_usd(order_cents):.2f})"
        )
    elif cents > 0 and refunded + cents > order_cents:
        problems.append(
            f"refund ${_usd(cents):.2f} plus ${_usd(refunded):.2f} already refunded exceeds "
            f"the amount of order {order_id!r} (${_usd(order_cents):.2f}); at most "
            f"${_usd(order_cents - refunded):.2f} can still be refunded"
        )
    return problems


def _refund_id(idempotency_key: str | None) -> str:
    """Same key, same id: a retried call can never mint a second refund id."""
    if idempotency_key is None:
        return "R-" + uuid.uuid4().hex[:10]
    return "R-" + hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:10]


def get_order(order_id: str) -> Order:
    """Give the workflow the facts a refund decision must be checked against."""
    with closing(connect()) as conn:
        return _order(conn, _order_row(conn, order_id))


def list_refunds(order_id: str | None = None) -> list[Refund]:
    """Show what has been refunded, for audits, tests and compensation."""
    with closing(connect()) as conn:
        if order_id is None:
            rows = conn.execute("SELECT * FROM refunds ORDER BY created_at, refund_id")
        else:
            rows = conn.execute(
                "SELECT * FROM refunds WHERE order_id = ? ORDER BY created_at, refund_id",
                (order_id,),
            )
        return [_refund(r) for r in rows]


def preview_refund(order_id: str, amount_usd: float, reason: str) -> RefundPreview:
    """Describe a refund without making it, so dry runs and approvers see the exact change."""
    with closing(connect()) as conn:
        order = _order_row(conn, order_id)
        problems = _problems(conn, order, amount_usd)
        if not reason.strip():
            problems.append("reason must not be empty")
        refunded = _refunded_cents(conn, order_id)
        numeric = isinstance(amount_usd, int | float) and not isinstance(amount_usd, bool)
        cents = _cents(amount_usd) if numeric and math.isfinite(amount_usd) else 0
        return {
            "action": "issue_refund",
            "order_id": order_id,
            "amount_usd": amount_usd,
            "reason": reason,
            "order_amount_usd": float(order["amount_usd"]),
            "before": {"refunded_usd": _usd(refunded)},
            "after": {"refunded_usd": _usd(refunded + cents)},
            "valid": not problems,
            "problems": problems,
        }


def issue_refund(
    order_id: str, amount_usd: float, reason: str, idempotency_key: str | None = None
) -> Refund:
    """Move money back to a customer at most once per key and never past the order amount."""
    if not reason.strip():
        raise ValueError("refund reason must not be empty")
    with closing(connect()) as conn, transaction(conn):
        # The write lock is held from here: a concurrent call with the same key waits, then
        # finds this row instead of inserting its own.
        if idempotency_key is not None:
            existing: sqlite3.Row | None = conn.execute(
                "SELECT * FROM refunds WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if existing is not None:
                if existing["order_id"] != order_id:
                    raise ValueError(
                        f"idempotency key {idempotency_key!r} was already used for a refund on "
                        f"order {existing['order_id']!r}, not {order_id!r}"
                    )
                return _refund(existing)
        order = _order_row(conn, order_id)
        problems = _problems(conn, order, amount_usd)
        if problems:
            raise ValueError("refund refused: " + "; ".join(problems))
        refund_id = _refund_id(idempotency_key)
        conn.execute(
            "INSERT INTO refunds (refund_id, order_id, amount_usd, reason, idempotency_key,"
            " status, created_at) VALUES (?, ?, ?, ?, ?, 'issued', ?)",
            (refund_id, order_id, _usd(_cents(amount_usd)), reason, idempotency_key, now_iso()),
        )
        row: sqlite3.Row = conn.execute(
            "SELECT * FROM refunds WHERE refund_id = ?", (refund_id,)
        ).fetchone()
        return _refund(row)


def void_refund(refund_id: str) -> Refund:
    """Undo a refund (the compensation of issue_refund); voiding twice changes nothing."""
    with closing(connect()) as conn, transaction(conn):
        conn.execute(
            "UPDATE refunds SET status = 'voided', voided_at = ?"
            " WHERE refund_id = ? AND status = 'issued'",
            (now_iso(), refund_id),
        )
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM refunds WHERE refund_id = ?", (refund_id,)
        ).fetchone()
        if row is None:
            raise LookupError(f"refund {refund_id!r} not found")
        return _refund(row)


def plan_refund(
    order_id: str, amount_usd: float, reason: str, idempotency_key: str | None = None
) -> dict[str, object]:
    """The dry-run stand-in for issue_refund: the refund it would return, and the planned change."""
    change = preview_refund(order_id, amount_usd, reason)
    result = {
        "refund_id": _refund_id(idempotency_key) if idempotency_key else "R-planned",
        "order_id": order_id,
        "amount_usd": amount_usd,
        "reason": reason,
        "status": "planned",
        "idempotency_key": idempotency_key,
        "created_at": "",
    }
    return {"result": result, "change": dict(change)}
