"""Posting reconciliations, with the matching invariants enforced here and not in the model.

The only tables this module writes are `reconciliations` and `recon_log`; invoices and payments
are never changed.
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from contextlib import closing
from typing import Literal

from typing_extensions import TypedDict

from tools._db import now_iso, transaction
from tools.finance.db import FINANCE, needs_approval, within_ceiling
from tools.finance.matching import check_period, pair_facts, vendor_row


class Reconciliation(TypedDict):
    """A posted (or unposted) invoice-payment match; `idempotency_key` ties it to the step."""

    recon_id: str
    invoice_id: str
    payment_id: str
    vendor_id: str
    period: str
    invoice_cents: int
    payment_cents: int
    difference_cents: int
    method: str
    note: str
    approved_by: str | None
    status: str
    idempotency_key: str | None
    created_at: str


class PostingState(TypedDict):
    invoice_open: bool
    payment_free: bool


class PostPreview(TypedDict):
    """The change post_reconciliation would make, for dry runs and approvers."""

    action: str
    invoice_id: str
    payment_id: str
    vendor_id: str
    period: str
    difference_cents: int
    needs_approval: bool
    approved_by: str
    before: PostingState
    after: PostingState
    valid: bool
    problems: list[str]


class LogEntry(TypedDict):
    """The run's summary line in the reconciliation log."""

    log_id: int
    vendor_id: str
    period: str
    summary: str
    open_invoice_ids: list[str]


def _recon(row: sqlite3.Row) -> Reconciliation:
    return {
        "recon_id": row["recon_id"],
        "invoice_id": row["invoice_id"],
        "payment_id": row["payment_id"],
        "vendor_id": row["vendor_id"],
        "period": row["period"],
        "invoice_cents": int(row["invoice_cents"]),
        "payment_cents": int(row["payment_cents"]),
        "difference_cents": int(row["difference_cents"]),
        "method": row["method"],
        "note": row["note"],
        "approved_by": row["approved_by"],
        "status": row["status"],
        "idempotency_key": row["idempotency_key"],
        "created_at": row["created_at"],
    }


def _recon_id(idempotency_key: str | None) -> str:
    """Same key, same id: a retried post can never mint a second reconciliation."""
    if idempotency_key is None:
        return "RC-" + uuid.uuid4().hex[:10]
    return "RC-" + hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:10]


def _problems(
    conn: sqlite3.Connection,
    *,
    invoice_id: str,
    payment_id: str,
    vendor_id: str,
    period: str,
    invoice_cents: int,
    difference_cents: int,
    approved_by: str,
) -> list[str]:
    """Every reason this match must not be posted, worded for the controller who reads it."""
    facts = pair_facts(conn, invoice_id, payment_id, method="", note="")
    problems: list[str] = []
    if not facts["invoice_vendor_id"]:
        problems.append(f"invoice {invoice_id!r} not found")
    if not facts["payment_vendor_id"]:
        problems.append(f"payment {payment_id!r} not found")
    if problems:
        return problems
    if facts["invoice_vendor_id"] != vendor_id:
        problems.append(
            f"invoice {invoice_id!r} belongs to vendor {facts['invoice_vendor_id']!r}, "
            f"not {vendor_id!r}"
        )
    if facts["payment_vendor_id"] != vendor_id:
        problems.append(
            f"payment {payment_id!r} was made to vendor {facts['payment_vendor_id']!r}, "
            f"not {vendor_id!r}"
        )
    if facts["invoice_period"] != period:
        problems.append(
            f"invoice {invoice_id!r} is in period {facts['invoice_period']}, not {period}"
        )
    if facts["invoice_currency"] != facts["payment_currency"]:
        problems.append(
            f"currencies differ: invoice in {facts['invoice_currency']}, "
            f"payment in {facts['payment_currency']}"
        )
    if invoice_cents != facts["invoice_cents"] or difference_cents != facts["difference_cents"]:
        problems.append(
            f"stated amounts (invoice {invoice_cents}, difference {difference_cents} cents) do "
            f"not match the books (invoice {facts['invoice_cents']}, difference "
            f"{facts['difference_cents']} cents)"
        )
    if not facts["invoice_open"]:
        problems.append(f"invoice {invoice_id!r} is already reconciled")
    if not facts["payment_free"]:
        problems.append(f"payment {payment_id!r} is already matched to another invoice")
    diff, inv = facts["abs_difference_cents"], facts["invoice_cents"]
    if not within_ceiling(diff, inv):
        problems.append(f"difference of {diff} cents is more than 10% of the invoice: not a match")
    elif needs_approval(diff, inv) and not approved_by.strip():
        problems.append(
            f"difference of {diff} cents is over $100 or 2% of the invoice and needs an approver"
        )
    return problems


def _check_args(period: str, note: str) -> None:
    check_period(period)
    if not note.strip():
        raise ValueError("note must not be empty")


def post_reconciliation(
    invoice_id: str,
    payment_id: str,
    vendor_id: str,
    period: str,
    invoice_cents: int,
    difference_cents: int,
    method: Literal["exact", "proposed"],
    note: str,
    approved_by: str = "",
    idempotency_key: str | None = None,
) -> Reconciliation:
    """Record that a payment settles an invoice: once per key, never a payment or invoice twice."""
    _check_args(period, note)
    with closing(FINANCE.connect()) as conn, transaction(conn):
        # The write lock is held from here: a concurrent post with the same key waits, then
        # finds this row instead of inserting its own.
        if idempotency_key is not None:
            existing: sqlite3.Row | None = conn.execute(
                "SELECT * FROM reconciliations WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if existing is not None:
                if (existing["invoice_id"], existing["payment_id"]) != (invoice_id, payment_id):
                    raise ValueError(
                        f"idempotency key {idempotency_key!r} was already used for invoice "
                        f"{existing['invoice_id']!r} and payment {existing['payment_id']!r}"
                    )
                return _recon(existing)
        problems = _problems(
            conn,
            invoice_id=invoice_id,
            payment_id=payment_id,
            vendor_id=vendor_id,
            period=period,
            invoice_cents=invoice_cents,
            difference_cents=difference_cents,
            approved_by=approved_by,
        )
        if problems:
            raise ValueError("posting refused: " + "; ".join(problems))
        recon_id = _recon_id(idempotency_key)
        conn.execute(
            "INSERT INTO reconciliations (recon_id, invoice_id, payment_id, vendor_id, period,"
            " invoice_cents, payment_cents, difference_cents, method, note, approved_by,"
            " idempotency_key, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " 'posted', ?)",
            (
                recon_id,
                invoice_id,
                payment_id,
                vendor_id,
                period,
                invoice_cents,
                invoice_cents - difference_cents,
                difference_cents,
                method,
                note,
                approved_by.strip() or None,
                idempotency_key,
                now_iso(),
            ),
        )
        row: sqlite3.Row = conn.execute(
            "SELECT * FROM reconciliations WHERE recon_id = ?", (recon_id,)
        ).fetchone()
        return _recon(row)


def plan_post(
    invoice_id: str,
    payment_id: str,
    vendor_id: str,
    period: str,
    invoice_cents: int,
    difference_cents: int,
    method: Literal["exact", "proposed"],
    note: str,
    approved_by: str = "",
    idempotency_key: str | None = None,
) -> dict[str, object]:
    """The dry-run stand-in for post_reconciliation: the row it would write and why it might not."""
    _check_args(period, note)
    with closing(FINANCE.connect()) as conn:
        facts = pair_facts(conn, invoice_id, payment_id, method=method, note=note)
        problems = _problems(
            conn,
            invoice_id=invoice_id,
            payment_id=payment_id,
            vendor_id=vendor_id,
            period=period,
            invoice_cents=invoice_cents,
            difference_cents=difference_cents,
            approved_by=approved_by,
        )
    result: Reconciliation = {
        "recon_id": _recon_id(idempotency_key) if idempotency_key else "RC-planned",
        "invoice_id": invoice_id,
        "payment_id": payment_id,
        "vendor_id": vendor_id,
        "period": period,
        "invoice_cents": invoice_cents,
        "payment_cents": invoice_cents - difference_cents,
        "difference_cents": difference_cents,
        "method": method,
        "note": note,
        "approved_by": approved_by.strip() or None,
        "status": "planned",
        "idempotency_key": idempotency_key,
        "created_at": "",
    }
    change: PostPreview = {
        "action": "post_reconciliation",
        "invoice_id": invoice_id,
        "payment_id": payment_id,
        "vendor_id": vendor_id,
        "period": period,
        "difference_cents": difference_cents,
        "needs_approval": needs_approval(facts["abs_difference_cents"], facts["invoice_cents"]),
        "approved_by": approved_by,
        "before": {"invoice_open": facts["invoice_open"], "payment_free": facts["payment_free"]},
        "after": {"invoice_open": False, "payment_free": False},
        "valid": not problems,
        "problems": problems,
    }
    return {"result": dict(result), "change": dict(change)}


def unpost(recon_id: str) -> Reconciliation:
    """Undo a posting (the compensation of post_reconciliation); unposting twice changes nothing."""
    with closing(FINANCE.connect()) as conn, transaction(conn):
        conn.execute(
            "UPDATE reconciliations SET status = 'unposted', unposted_at = ?"
            " WHERE recon_id = ? AND status = 'posted'",
            (now_iso(), recon_id),
        )
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM reconciliations WHERE recon_id = ?", (recon_id,)
        ).fetchone()
        if row is None:
            raise LookupError(f"reconciliation {recon_id!r} not found")
        return _recon(row)


def list_reconciliations(vendor_id: str | None = None) -> list[Reconciliation]:
    """Show what has been posted, for audits, tests and compensation."""
    with closing(FINANCE.connect()) as conn:
        sql = "SELECT * FROM reconciliations"
        params: tuple[str, ...] = ()
        if vendor_id is not None:
            sql += " WHERE vendor_id = ?"
            params = (vendor_id,)
        return [_recon(r) for r in conn.execute(sql + " ORDER BY created_at, recon_id", params)]


def _summary(
    conn: sqlite3.Connection, vendor_id: str, period: str, posted_invoice_ids: list[str]
) -> tuple[str, list[str]]:
    """The log line, from the books: what this run posted and which invoices are still open."""
    vendor_row(conn, vendor_id)
    invoices = [
        r["invoice_id"]
        for r in conn.execute(
            "SELECT invoice_id FROM invoices WHERE vendor_id = ? AND substr(issued_on, 1, 7) = ?"
            " ORDER BY invoice_id",
            (vendor_id, period),
        )
    ]
    posted = set(posted_invoice_ids)
    still_open = [
        i
        for i in invoices
        if i not in posted
        and conn.execute(
            "SELECT 1 FROM reconciliations WHERE invoice_id = ? AND status = 'posted'", (i,)
        ).fetchone()
        is None
    ]
    summary = (
        f"{vendor_id} {period}: {len(posted)} reconciliation(s) posted by this run; "
        f"{len(still_open)} of {len(invoices)} invoice(s) still open"
        + (f" ({', '.join(still_open)})" if still_open else "")
    )
    return summary, still_open


def log_summary(
    vendor_id: str, period: str, posted_invoice_ids: list[str], idempotency_key: str | None = None
) -> LogEntry:
    """Leave one line per run in the reconciliation log, written from the books, once per key."""
    check_period(period)
    with closing(FINANCE.connect()) as conn, transaction(conn):
        summary, still_open = _summary(conn, vendor_id, period, posted_invoice_ids)
        if idempotency_key is not None:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM recon_log WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if row is not None:
                return {
                    "log_id": int(row["log_id"]),
                    "vendor_id": row["vendor_id"],
                    "period": row["period"],
                    "summary": row["summary"],
                    "open_invoice_ids": still_open,
                }
        cur = conn.execute(
            "INSERT INTO recon_log (vendor_id, period, summary, idempotency_key, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (vendor_id, period, summary, idempotency_key, now_iso()),
        )
        return {
            "log_id": int(cur.lastrowid or 0),
            "vendor_id": vendor_id,
            "period": period,
            "summary": summary,
            "open_invoice_ids": still_open,
        }


def plan_log(
    vendor_id: str, period: str, posted_invoice_ids: list[str], idempotency_key: str | None = None
) -> dict[str, object]:
    """The dry-run stand-in for log_summary: the line it would write."""
    check_period(period)
    with closing(FINANCE.connect()) as conn:
        summary, still_open = _summary(conn, vendor_id, period, posted_invoice_ids)
    entry: LogEntry = {
        "log_id": 0,
        "vendor_id": vendor_id,
        "period": period,
        "summary": summary,
        "open_invoice_ids": still_open,
    }
    return {
        "result": dict(entry),
        "change": {"action": "log_summary", "vendor_id": vendor_id, "summary": summary},
    }
