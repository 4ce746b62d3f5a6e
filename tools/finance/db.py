"""The finance database and the reconciliation limits that every finance tool enforces."""

from __future__ import annotations

from pathlib import Path

from tools._db import Database

FINANCE = Database(
    env_var="FLOWRUN_FINANCE_DB",
    default_path=Path(".flowrun") / "finance.db",
    required_tables=frozenset({"vendors", "invoices", "payments", "reconciliations", "recon_log"}),
    seed_command="python -m tools.finance.seed",
)

# A difference above either limit needs a person's approval before it is posted.
APPROVAL_ABOVE_CENTS = 10_000  # $100.00
APPROVAL_ABOVE_PERCENT = 2
# A difference above this share of the invoice is not a match at all, approved or not.
CEILING_PERCENT = 10
# A payment is a candidate for an invoice when paid in [issued - before, due + after].
WINDOW_DAYS_BEFORE = 10
WINDOW_DAYS_AFTER = 45
MAX_CANDIDATES = 5


def needs_approval(abs_difference_cents: int, invoice_cents: int) -> bool:
    """Over $100 or over 2% of the invoice: the same rule the spec's policy and approval use."""
    return (
        abs_difference_cents > APPROVAL_ABOVE_CENTS
        or abs_difference_cents * 100 > APPROVAL_ABOVE_PERCENT * invoice_cents
    )


def within_ceiling(abs_difference_cents: int, invoice_cents: int) -> bool:
    """At most 10% off: beyond that a payment is a different payment, not a short one."""
    return abs_difference_cents * 100 <= CEILING_PERCENT * invoice_cents
