"""The CRM database: where it lives, how to open it, and the normalisers duplicates match on."""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from pathlib import Path

from tools._db import Database

CRM = Database(
    env_var="FLOWRUN_CRM_DB",
    default_path=Path(".flowrun") / "crm.db",
    required_tables=frozenset(
        {"accounts", "contacts", "deals", "activities", "merges", "archivals"}
    ),
    seed_command="python -m tools.crm.seed",
)
ENV_VAR = CRM.env_var

STALE_AFTER_DAYS = 365  # no activity for a year: the contact is a candidate for archival
MAX_MERGES_PER_RUN = 3  # the spec's gate and policy say the same; the tool enforces it too
MERGE_FIELDS = ("first_name", "last_name", "email", "phone", "title")


def db_path() -> Path:
    """Where the CRM database is (FLOWRUN_CRM_DB, else .flowrun/crm.db)."""
    return CRM.path()


def connect() -> sqlite3.Connection:
    """Open the seeded CRM database, or fail naming the seed command."""
    return CRM.connect()


def norm_email(email: str | None) -> str:
    """Lowercase, trimmed, without a `+tag`: how two spellings of one mailbox compare equal."""
    if not email:
        return ""
    value = email.strip().lower()
    local, at, domain = value.partition("@")
    if not at or not local or not domain:
        return ""
    return local.split("+", 1)[0] + "@" + domain


def norm_phone(phone: str | None) -> str:
    """Digits only, a North American leading 1 dropped: `+1 (415) 555-0142` = `415.555.0142`."""
    if not phone:
        return ""
    digits = re.sub(r"\D", "", phone)
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return digits if len(digits) >= 7 else ""


def norm_name(first: str | None, last: str | None) -> str:
    """Lowercase ASCII letters and single spaces: `Dána  Whitfield` = `dana whitfield`."""
    raw = f"{first or ''} {last or ''}"
    ascii_ = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii")
    letters = re.sub(r"[^a-z ]+", "", ascii_.lower().replace("-", " "))
    return " ".join(letters.split())
