"""Read-only matching: deterministic candidates from the books, and facts about proposed matches.

Amounts are integer cents everywhere; a float never decides whether two amounts are equal.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from datetime import date, timedelta

from typing_extensions import TypedDict

from tools.finance.db import (
    FINANCE,
    MAX_CANDIDATES,
    WINDOW_DAYS_AFTER,
    WINDOW_DAYS_BEFORE,
    within_ceiling,
)

EXACT_NOTE = "rule match: amount, currency and invoice reference agree"
PROPOSED_NOTE = "proposed match, verified against the books"
_PERIOD = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")


class Vendor(TypedDict):
    vendor_id: str
    name: str
    currency: str


class Candidate(TypedDict):
    """A payment that could pay an invoice; memo and bank_ref are the payer's words (untrusted)."""

    payment_id: str
    amount_cents: int
    currency: str
    paid_on: str
    memo: str
    bank_ref: str


class OpenInvoice(TypedDict):
    """An invoice the rules could not match alone, with the payments that might pay it."""

    invoice_id: str
    invoice_number: str
    amount_cents: int
    currency: str
    issued_on: str
    due_on: str
    candidates: list[Candidate]


class Pair(TypedDict):
    """An invoice and a payment with the facts a reviewer (or a gate) checks, from the books."""

    invoice_id: str
    payment_id: str
    method: str
    note: str
    invoice_vendor_id: str
    payment_vendor_id: str
    invoice_period: str
    invoice_currency: str
    payment_currency: str
    invoice_cents: int
    payment_cents: int
    difference_cents: int
    abs_difference_cents: int
    invoice_open: bool
    payment_free: bool


class Candidates(TypedDict):
    """What rules settled (`exact`), what needs judgement (`ambiguous`), what has no payment."""

    vendor: Vendor
    period: str
    exact: list[Pair]
    ambiguous: list[OpenInvoice]
    ambiguous_invoice_ids: list[str]
    unmatched_invoice_ids: list[str]
    already_reconciled_invoice_ids: list[str]


class ProposedMatch(TypedDict):
    """One match as the model proposes it."""

    invoice_id: str
    payment_id: str
    reason: str


class Checked(TypedDict):
    """The rule matches and the books' facts for every proposed match, in the proposal's order.

    Everything here comes from the database: the model's ids select rows, its words are not
    echoed, so what the posting step reads from this result is trusted data.
    """

    exact: list[Pair]
    pairs: list[Pair]


def check_period(period: str) -> str:
    """Refuse anything but YYYY-MM, so a period can never widen into a LIKE pattern."""
    if not _PERIOD.match(period):
        raise ValueError(f"period must look like 2026-10 (YYYY-MM), got {period!r}")
    return period


def vendor_row(conn: sqlite3.Connection, vendor_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM vendors WHERE vendor_id = ?", (vendor_id,)
    ).fetchone()
    if row is None:
        raise LookupError(f"vendor {vendor_id!r} not found")
    return row


def invoice_posted(conn: sqlite3.Connection, invoice_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM reconciliations WHERE invoice_id = ? AND status = 'posted'", (invoice_id,)
    ).fetchone()
    return row is not None


def payment_posted(conn: sqlite3.Connection, payment_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM reconciliations WHERE payment_id = ? AND status = 'posted'", (payment_id,)
    ).fetchone()
    return row is not None


def pair_facts(
    conn: sqlite3.Connection, invoice_id: str, payment_id: str, *, method: str, note: str
) -> Pair:
    """Look both sides up; a missing side reads as empty facts, which no check accepts."""
    inv: sqlite3.Row | None = conn.execute(
        "SELECT * FROM invoices WHERE invoice_id = ?", (invoice_id,)
    ).fetchone()
    pay: sqlite3.Row | None = conn.execute(
        "SELECT * FROM payments WHERE payment_id = ?", (payment_id,)
    ).fetchone()
    inv_cents = int(inv["amount_cents"]) if inv is not None else 0
    pay_cents = int(pay["amount_cents"]) if pay is not None else 0
    diff = inv_cents - pay_cents
    return {
        "invoice_id": invoice_id,
        "payment_id": payment_id,
        "method": method,
        "note": note,
        "invoice_vendor_id": inv["vendor_id"] if inv is not None else "",
        "payment_vendor_id": pay["vendor_id"] if pay is not None else "",
        "invoice_period": inv["issued_on"][:7] if inv is not None else "",
        "invoice_currency": inv["currency"] if inv is not None else "",
        "payment_currency": pay["currency"] if pay is not None else "",
        "invoice_cents": inv_cents,
        "payment_cents": pay_cents,
        "difference_cents": diff,
        "abs_difference_cents": abs(diff),
        "invoice_open": inv is not None and not invoice_posted(conn, invoice_id),
        "payment_free": pay is not None and not payment_posted(conn, payment_id),
    }


def _mentions(text: str, number: str) -> bool:
    """The invoice number as a whole token: AC-2026-10 is not found inside AC-2026-10B."""
    token = rf"(?<![A-Za-z0-9-]){re.escape(number)}(?![A-Za-z0-9-])"
    return re.search(token, text, re.IGNORECASE) is not None


def _candidate(row: sqlite3.Row) -> Candidate:
    return {
        "payment_id": row["payment_id"],
        "amount_cents": int(row["amount_cents"]),
        "currency": row["currency"],
        "paid_on": row["paid_on"],
        "memo": row["memo"],
        "bank_ref": row["bank_ref"],
    }


def find_candidates(vendor_id: str, period: str) -> Candidates:
    """Match what rules can match (same cents, same currency, the invoice number in the memo, one
    payment for one invoice); list every other open invoice with the payments that could pay it
    (in the date window, and within 10% of the amount or quoting the invoice number)."""
    check_period(period)
    with closing(FINANCE.connect()) as conn:
        return _match(conn, vendor_id, period)


def _match(conn: sqlite3.Connection, vendor_id: str, period: str) -> Candidates:
    """The matching rules, shared by find_candidates and check_matches."""
    vendor = vendor_row(conn, vendor_id)
    invoices = list(
        conn.execute(
            "SELECT * FROM invoices WHERE vendor_id = ? AND substr(issued_on, 1, 7) = ?"
            " ORDER BY issued_on, invoice_id",
            (vendor_id, period),
        )
    )
    payments = [
        p
        for p in conn.execute(
            "SELECT * FROM payments WHERE vendor_id = ? ORDER BY paid_on, payment_id",
            (vendor_id,),
        )
        if not payment_posted(conn, p["payment_id"])
    ]
    done = [i["invoice_id"] for i in invoices if invoice_posted(conn, i["invoice_id"])]
    open_invoices = [i for i in invoices if i["invoice_id"] not in done]

    def in_window(inv: sqlite3.Row, pay: sqlite3.Row) -> bool:
        start = date.fromisoformat(inv["issued_on"]) - timedelta(days=WINDOW_DAYS_BEFORE)
        end = date.fromisoformat(inv["due_on"]) + timedelta(days=WINDOW_DAYS_AFTER)
        return start <= date.fromisoformat(pay["paid_on"]) <= end

    window = {i["invoice_id"]: [p for p in payments if in_window(i, p)] for i in open_invoices}
    strong: dict[str, list[str]] = {}  # invoice -> payments equal in cents, currency, reference
    for inv in open_invoices:
        strong[inv["invoice_id"]] = [
            p["payment_id"]
            for p in window[inv["invoice_id"]]
            if p["amount_cents"] == inv["amount_cents"]
            and p["currency"] == inv["currency"]
            and _mentions(p["memo"] + " " + p["bank_ref"], inv["invoice_number"])
        ]
    claims: dict[str, int] = {}
    for pids in strong.values():
        for pid in pids:
            claims[pid] = claims.get(pid, 0) + 1
    exact: list[Pair] = []
    used: set[str] = set()
    for inv in open_invoices:
        pids = strong[inv["invoice_id"]]
        if len(pids) == 1 and claims[pids[0]] == 1:
            exact.append(
                pair_facts(
                    conn,
                    inv["invoice_id"],
                    pids[0],
                    method="exact",
                    note=EXACT_NOTE,
                )
            )
            used.add(pids[0])
    matched = {p["invoice_id"] for p in exact}
    ambiguous: list[OpenInvoice] = []
    unmatched: list[str] = []
    for inv in open_invoices:
        if inv["invoice_id"] in matched:
            continue
        cands = [
            p
            for p in window[inv["invoice_id"]]
            if p["payment_id"] not in used
            and (
                within_ceiling(abs(p["amount_cents"] - inv["amount_cents"]), inv["amount_cents"])
                or _mentions(p["memo"] + " " + p["bank_ref"], inv["invoice_number"])
            )
        ]
        cands.sort(key=lambda p: (abs(p["amount_cents"] - inv["amount_cents"]), p["paid_on"]))
        if not cands:
            unmatched.append(inv["invoice_id"])
            continue
        ambiguous.append(
            {
                "invoice_id": inv["invoice_id"],
                "invoice_number": inv["invoice_number"],
                "amount_cents": int(inv["amount_cents"]),
                "currency": inv["currency"],
                "issued_on": inv["issued_on"],
                "due_on": inv["due_on"],
                "candidates": [_candidate(p) for p in cands[:MAX_CANDIDATES]],
            }
        )
    return {
        "vendor": {
            "vendor_id": vendor["vendor_id"],
            "name": vendor["name"],
            "currency": vendor["currency"],
        },
        "period": period,
        "exact": exact,
        "ambiguous": ambiguous,
        "ambiguous_invoice_ids": [a["invoice_id"] for a in ambiguous],
        "unmatched_invoice_ids": unmatched,
        "already_reconciled_invoice_ids": done,
    }


def check_matches(vendor_id: str, period: str, matches: list[ProposedMatch]) -> Checked:
    """Give the gate the books' facts about each proposed match, and the posting step the rule
    matches recomputed from the books; judge nothing here."""
    check_period(period)
    # The same pair proposed twice is one proposal (small models repeat list items); two
    # different pairs sharing a payment or an invoice stay, for the gate to refuse.
    distinct = list(dict.fromkeys((m["invoice_id"], m["payment_id"]) for m in matches))
    with closing(FINANCE.connect()) as conn:
        exact = _match(conn, vendor_id, period)["exact"]
        return {
            "exact": exact,
            "pairs": [
                pair_facts(conn, invoice_id, payment_id, method="proposed", note=PROPOSED_NOTE)
                for invoice_id, payment_id in distinct
            ],
        }
