"""Contact reads, merges and archivals, with the hygiene invariants enforced in the tool.

A merge keeps one contact (the survivor), takes the fields the caller names from the other,
moves the other's activities and deals onto the survivor and archives it (`merged_into` set):
nothing is ever deleted, and `unmerge` restores both records exactly. An archival only takes a
stale contact with no open deal; `unarchive` restores it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime

from typing_extensions import TypedDict

from tools._db import now_iso, transaction
from tools.crm.db import (
    MAX_MERGES_PER_RUN,
    MERGE_FIELDS,
    STALE_AFTER_DAYS,
    connect,
    norm_email,
    norm_name,
    norm_phone,
)


class Account(TypedDict):
    """An account as the workflow sees it."""

    account_id: str
    tenant: str
    name: str
    owner_rep: str
    active_contacts: int


class DealRef(TypedDict):
    """An open deal hanging off a contact, and the rep who owns it."""

    deal_id: str
    name: str
    owner_rep: str


class Contact(TypedDict):
    """An active contact with the facts a hygiene decision is checked against.

    `*_norm` are the normalised keys duplicates match on; `stale` means no activity for
    `STALE_AFTER_DAYS`. `notes` is free text typed by people and imports: untrusted.
    """

    contact_id: str
    account_id: str
    tenant: str
    first_name: str
    last_name: str
    email: str
    phone: str
    title: str
    notes: str
    email_norm: str
    phone_norm: str
    name_norm: str
    last_activity_at: str | None
    days_since_activity: int
    stale: bool
    open_deals: list[DealRef]
    open_deal_owners: list[str]


class ContactList(TypedDict):
    """The active contacts of one account."""

    account_id: str
    tenant: str
    stale_after_days: int
    contacts: list[Contact]


class Fields(TypedDict):
    """The stored fields of a contact that a merge or an archival changes."""

    first_name: str
    last_name: str
    email: str
    phone: str
    title: str
    status: str
    merged_into: str | None


class BeforeAfter(TypedDict):
    before: Fields
    after: Fields


class FieldChange(TypedDict):
    contact_id: str
    field: str
    before: str | None
    after: str | None


class Moves(TypedDict):
    activities: int
    deals: int


class MergeDiff(TypedDict):
    """The change a merge makes: both records field by field, and what moves to the survivor."""

    action: str
    account_id: str
    tenant: str
    survivor_id: str
    merged_id: str
    survivor: BeforeAfter
    merged: BeforeAfter
    changes: list[FieldChange]
    moves: Moves
    take_from_merged: list[str]
    match: str
    valid: bool
    problems: list[str]


class Merge(TypedDict):
    """A merge as recorded; the same idempotency key always returns the same merge."""

    merge_id: str
    account_id: str
    survivor_id: str
    merged_id: str
    status: str
    idempotency_key: str | None
    survivor: Fields
    moved_activities: int
    moved_deals: int


class Archival(TypedDict):
    """An archival as recorded."""

    archive_id: str
    account_id: str
    contact_id: str
    status: str
    idempotency_key: str | None


class ArchiveDiff(TypedDict):
    """The change an archival makes."""

    action: str
    account_id: str
    contact_id: str
    before: Fields
    after: Fields
    days_since_activity: int
    reason: str
    valid: bool
    problems: list[str]


# --- reads ---------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _days_since(stamp: str, now: datetime) -> int:
    then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return max(0, (now - then).days)


def _account_row(conn: sqlite3.Connection, account_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM accounts WHERE account_id = ?", (account_id,)
    ).fetchone()
    if row is None:
        raise LookupError(f"account {account_id!r} not found")
    return row


def _contact_row(conn: sqlite3.Connection, contact_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM contacts WHERE contact_id = ?", (contact_id,)
    ).fetchone()
    return row


def _open_deals(conn: sqlite3.Connection, contact_id: str) -> list[DealRef]:
    rows = conn.execute(
        "SELECT deal_id, name, owner_rep FROM deals WHERE contact_id = ? AND stage = 'open'"
        " ORDER BY deal_id",
        (contact_id,),
    )
    return [{"deal_id": r[0], "name": r[1], "owner_rep": r[2]} for r in rows]


def _last_activity(conn: sqlite3.Connection, contact_id: str) -> str | None:
    row = conn.execute(
        "SELECT MAX(occurred_at) FROM activities WHERE contact_id = ? AND kind != 'audit'",
        (contact_id,),
    ).fetchone()
    value: str | None = row[0] if row else None
    return value


def _contact(conn: sqlite3.Connection, row: sqlite3.Row, now: datetime) -> Contact:
    last = _last_activity(conn, row["contact_id"])
    days = _days_since(last or row["created_at"], now)
    deals = _open_deals(conn, row["contact_id"])
    return {
        "contact_id": row["contact_id"],
        "account_id": row["account_id"],
        "tenant": row["tenant"],
        "first_name": row["first_name"],
        "last_name": row["last_name"],
        "email": row["email"],
        "phone": row["phone"],
        "title": row["title"],
        "notes": row["notes"],
        "email_norm": norm_email(row["email"]),
        "phone_norm": norm_phone(row["phone"]),
        "name_norm": norm_name(row["first_name"], row["last_name"]),
        "last_activity_at": last,
        "days_since_activity": days,
        "stale": days >= STALE_AFTER_DAYS,
        "open_deals": deals,
        "open_deal_owners": sorted({d["owner_rep"] for d in deals}),
    }


def _fields(row: sqlite3.Row | dict[str, object]) -> Fields:
    return {
        "first_name": str(row["first_name"]),
        "last_name": str(row["last_name"]),
        "email": str(row["email"]),
        "phone": str(row["phone"]),
        "title": str(row["title"]),
        "status": str(row["status"]),
        "merged_into": None if row["merged_into"] is None else str(row["merged_into"]),
    }


def get_account(account_id: str) -> Account:
    """Give the workflow the account (and its tenant) that every change must stay inside."""
    with closing(connect()) as conn:
        row = _account_row(conn, account_id)
        count = conn.execute(
            "SELECT COUNT(*) FROM contacts WHERE account_id = ? AND status = 'active'",
            (account_id,),
        ).fetchone()[0]
        return {
            "account_id": row["account_id"],
            "tenant": row["tenant"],
            "name": row["name"],
            "owner_rep": row["owner_rep"],
            "active_contacts": int(count),
        }


def list_contacts(account_id: str) -> ContactList:
    """The account's active contacts with match keys, staleness and open-deal owners."""
    now = _now()
    with closing(connect()) as conn:
        account = _account_row(conn, account_id)
        rows = conn.execute(
            "SELECT * FROM contacts WHERE account_id = ? AND status = 'active' ORDER BY contact_id",
            (account_id,),
        ).fetchall()
        return {
            "account_id": account_id,
            "tenant": account["tenant"],
            "stale_after_days": STALE_AFTER_DAYS,
            "contacts": [_contact(conn, r, now) for r in rows],
        }


def get_contact(contact_id: str) -> Fields:
    """One contact's stored fields, whatever its status (for audits and tests)."""
    with closing(connect()) as conn:
        row = _contact_row(conn, contact_id)
        if row is None:
            raise LookupError(f"contact {contact_id!r} not found")
        return _fields(row)


# --- merges --------------------------------------------------------------------------------


def _key_id(prefix: str, idempotency_key: str | None, fallback: str) -> str:
    """Same key, same id: a retried call can never mint a second record."""
    basis = idempotency_key if idempotency_key is not None else fallback
    return prefix + hashlib.sha256(basis.encode("utf-8")).hexdigest()[:10]


def _match(a: sqlite3.Row | None, b: sqlite3.Row | None) -> str:
    """What makes two contacts one person: one mailbox, or one phone number under one name.

    A shared switchboard number, or a shared name alone, is not enough ("none").
    """
    if a is None or b is None:
        return "none"
    email_a, email_b = norm_email(a["email"]), norm_email(b["email"])
    if email_a and email_a == email_b:
        return "email"
    phone_a, phone_b = norm_phone(a["phone"]), norm_phone(b["phone"])
    same_name = norm_name(a["first_name"], a["last_name"]) == norm_name(
        b["first_name"], b["last_name"]
    )
    return "phone and name" if phone_a and phone_a == phone_b and same_name else "none"


def _merge_problems(
    conn: sqlite3.Connection,
    account_id: str,
    tenant: str,
    survivor_id: str,
    merged_id: str,
    take_from_merged: list[str],
) -> list[str]:
    """Every reason this merge must not happen, worded for a reviewer."""
    problems: list[str] = []
    account: sqlite3.Row | None = conn.execute(
        "SELECT * FROM accounts WHERE account_id = ?", (account_id,)
    ).fetchone()
    if account is None:
        return [f"account {account_id!r} not found"]
    if account["tenant"] != tenant:
        problems.append(f"account {account_id!r} belongs to tenant {account['tenant']!r}")
    if survivor_id == merged_id:
        problems.append(f"a contact cannot be merged into itself ({survivor_id!r})")
    rows: dict[str, sqlite3.Row] = {}
    for cid in dict.fromkeys((survivor_id, merged_id)):
        row = _contact_row(conn, cid)
        if row is None:
            problems.append(f"contact {cid!r} not found")
            continue
        if row["account_id"] != account_id or row["tenant"] != account["tenant"]:
            problems.append(f"contact {cid!r} belongs to another account")
            continue
        if row["status"] != "active":
            problems.append(f"contact {cid!r} is {row['status']}, not active")
            continue
        rows[cid] = row
    for name in take_from_merged:
        if name not in MERGE_FIELDS:
            problems.append(
                f"unknown field {name!r} in take_from_merged (fields: {', '.join(MERGE_FIELDS)})"
            )
    if len(rows) == 2 and survivor_id != merged_id:
        if _match(rows[survivor_id], rows[merged_id]) == "none":
            problems.append(
                f"{survivor_id!r} and {merged_id!r} share neither an email nor a phone and name"
            )
        owners = {d["owner_rep"] for cid in rows for d in _open_deals(conn, cid)}
        if len(owners) > 1:
            problems.append(
                f"{survivor_id!r} and {merged_id!r} have open deals owned by different reps "
                f"({', '.join(sorted(owners))}); the reps must agree first"
            )
    return problems


def _merge_diff(
    conn: sqlite3.Connection,
    account_id: str,
    tenant: str,
    survivor_id: str,
    merged_id: str,
    take_from_merged: list[str],
) -> MergeDiff:
    problems = _merge_problems(conn, account_id, tenant, survivor_id, merged_id, take_from_merged)
    s_row, m_row = _contact_row(conn, survivor_id), _contact_row(conn, merged_id)
    empty: Fields = {
        "first_name": "",
        "last_name": "",
        "email": "",
        "phone": "",
        "title": "",
        "status": "missing",
        "merged_into": None,
    }
    s_before = _fields(s_row) if s_row is not None else empty
    m_before = _fields(m_row) if m_row is not None else empty
    s_after: Fields = {**s_before}
    for name in take_from_merged:
        if name in MERGE_FIELDS:
            s_after[name] = m_before[name]  # type: ignore[literal-required]
    m_after: Fields = {**m_before, "status": "archived", "merged_into": survivor_id}
    changes: list[FieldChange] = []
    for cid, before, after in ((survivor_id, s_before, s_after), (merged_id, m_before, m_after)):
        for name in (*MERGE_FIELDS, "status", "merged_into"):
            b, a = before[name], after[name]  # type: ignore[literal-required]
            if b != a:
                changes.append({"contact_id": cid, "field": name, "before": b, "after": a})
    moved_acts = conn.execute(
        "SELECT COUNT(*) FROM activities WHERE contact_id = ?", (merged_id,)
    ).fetchone()[0]
    moved_deals = conn.execute(
        "SELECT COUNT(*) FROM deals WHERE contact_id = ?", (merged_id,)
    ).fetchone()[0]
    return {
        "action": "merge_contacts",
        "account_id": account_id,
        "tenant": tenant,
        "survivor_id": survivor_id,
        "merged_id": merged_id,
        "survivor": {"before": s_before, "after": s_after},
        "merged": {"before": m_before, "after": m_after},
        "changes": changes,
        "moves": {"activities": int(moved_acts), "deals": int(moved_deals)},
        "take_from_merged": [f for f in MERGE_FIELDS if f in take_from_merged],
        "match": _match(s_row, m_row),
        "valid": not problems,
        "problems": problems,
    }


def diff_merge(
    account_id: str, survivor_id: str, merged_id: str, take_from_merged: list[str]
) -> MergeDiff:
    """Show a merge field by field without making it, so an approver sees the exact change.

    The diff names the account's tenant, which the merge itself must then carry.
    """
    with closing(connect()) as conn:
        tenant = str(_account_row(conn, account_id)["tenant"])
        return _merge_diff(conn, account_id, tenant, survivor_id, merged_id, take_from_merged)


def _cap_problem(position: int, batch_size: int) -> str | None:
    if batch_size > MAX_MERGES_PER_RUN or position >= MAX_MERGES_PER_RUN:
        return (
            f"at most {MAX_MERGES_PER_RUN} merges per run (this is merge {position + 1} "
            f"of {batch_size})"
        )
    return None


def _merge_record(row: sqlite3.Row, survivor: Fields) -> Merge:
    return {
        "merge_id": row["merge_id"],
        "account_id": row["account_id"],
        "survivor_id": row["survivor_id"],
        "merged_id": row["merged_id"],
        "status": row["status"],
        "idempotency_key": row["idempotency_key"],
        "survivor": survivor,
        "moved_activities": len(json.loads(row["moved_activities"])),
        "moved_deals": len(json.loads(row["moved_deals"])),
    }


def merge_contacts(
    account_id: str,
    tenant: str,
    survivor_id: str,
    merged_id: str,
    take_from_merged: list[str],
    position: int = 0,
    batch_size: int = 1,
    idempotency_key: str | None = None,
) -> Merge:
    """Merge one duplicate into its survivor at most once per key; the loser is archived.

    `position`/`batch_size` place this merge in its run's batch, so the per-run cap holds here
    as well as in the spec's gate and policy. The recorded reason is the match the tool found,
    never free text from a caller.
    """
    cap = _cap_problem(position, batch_size)
    if cap is not None:
        raise ValueError("merge refused: " + cap)
    with closing(connect()) as conn, transaction(conn):
        if idempotency_key is not None:
            existing: sqlite3.Row | None = conn.execute(
                "SELECT * FROM merges WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if existing is not None:
                if (existing["survivor_id"], existing["merged_id"]) != (survivor_id, merged_id):
                    raise ValueError(
                        f"idempotency key {idempotency_key!r} was already used for merging "
                        f"{existing['merged_id']!r} into {existing['survivor_id']!r}"
                    )
                row = _contact_row(conn, survivor_id)
                assert row is not None  # merges reference contacts, which are never deleted
                return _merge_record(existing, _fields(row))
        diff = _merge_diff(conn, account_id, tenant, survivor_id, merged_id, take_from_merged)
        if diff["problems"]:
            raise ValueError("merge refused: " + "; ".join(diff["problems"]))
        stamp = now_iso()
        after = diff["survivor"]["after"]
        conn.execute(
            "UPDATE contacts SET first_name = ?, last_name = ?, email = ?, phone = ?, title = ?,"
            " updated_at = ? WHERE contact_id = ?",
            (after["first_name"], after["last_name"], after["email"], after["phone"],
             after["title"], stamp, survivor_id),
        )  # fmt: skip
        conn.execute(
            "UPDATE contacts SET status = 'archived', merged_into = ?, updated_at = ?"
            " WHERE contact_id = ?",
            (survivor_id, stamp, merged_id),
        )
        acts = [r[0] for r in conn.execute(
            "SELECT activity_id FROM activities WHERE contact_id = ? ORDER BY activity_id",
            (merged_id,),
        )]  # fmt: skip
        deals = [r[0] for r in conn.execute(
            "SELECT deal_id FROM deals WHERE contact_id = ? ORDER BY deal_id", (merged_id,)
        )]  # fmt: skip
        conn.execute(
            "UPDATE activities SET contact_id = ? WHERE contact_id = ?", (survivor_id, merged_id)
        )
        conn.execute(
            "UPDATE deals SET contact_id = ? WHERE contact_id = ?", (survivor_id, merged_id)
        )
        merge_id = _key_id("M-", idempotency_key, f"{survivor_id}<-{merged_id}:{stamp}")
        conn.execute(
            "INSERT INTO merges (merge_id, account_id, survivor_id, merged_id, take_from_merged,"
            " reason, idempotency_key, survivor_before, merged_before, moved_activities,"
            " moved_deals, status, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'applied', ?)",
            (merge_id, account_id, survivor_id, merged_id, json.dumps(diff["take_from_merged"]),
             "duplicate by " + diff["match"], idempotency_key,
             json.dumps(diff["survivor"]["before"]),
             json.dumps(diff["merged"]["before"]), json.dumps(acts), json.dumps(deals), stamp),
        )  # fmt: skip
        row = conn.execute("SELECT * FROM merges WHERE merge_id = ?", (merge_id,)).fetchone()
        return _merge_record(row, after)


def plan_merge(
    account_id: str,
    tenant: str,
    survivor_id: str,
    merged_id: str,
    take_from_merged: list[str],
    position: int = 0,
    batch_size: int = 1,
    idempotency_key: str | None = None,
) -> dict[str, object]:
    """The dry-run stand-in for merge_contacts: the merge it would record, and the diff."""
    with closing(connect()) as conn:
        change = _merge_diff(conn, account_id, tenant, survivor_id, merged_id, take_from_merged)
    cap = _cap_problem(position, batch_size)
    if cap is not None:
        change["problems"].append(cap)
        change["valid"] = False
    result: Merge = {
        "merge_id": _key_id("M-", idempotency_key, "planned") if idempotency_key else "M-planned",
        "account_id": account_id,
        "survivor_id": survivor_id,
        "merged_id": merged_id,
        "status": "planned",
        "idempotency_key": idempotency_key,
        "survivor": change["survivor"]["after"],
        "moved_activities": change["moves"]["activities"],
        "moved_deals": change["moves"]["deals"],
    }
    return {"result": dict(result), "change": dict(change)}


def unmerge(merge_id: str) -> Merge:
    """Undo a merge (the compensation of merge_contacts): both records, activities and deals
    go back as they were; undoing twice changes nothing."""
    with closing(connect()) as conn, transaction(conn):
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM merges WHERE merge_id = ?", (merge_id,)
        ).fetchone()
        if row is None:
            raise LookupError(f"merge {merge_id!r} not found")
        if row["status"] == "applied":
            stamp = now_iso()
            for cid, before in (
                (row["survivor_id"], json.loads(row["survivor_before"])),
                (row["merged_id"], json.loads(row["merged_before"])),
            ):
                conn.execute(
                    "UPDATE contacts SET first_name = ?, last_name = ?, email = ?, phone = ?,"
                    " title = ?, status = ?, merged_into = ?, updated_at = ? WHERE contact_id = ?",
                    (before["first_name"], before["last_name"], before["email"],
                     before["phone"], before["title"], before["status"], before["merged_into"],
                     stamp, cid),
                )  # fmt: skip
            for activity_id in json.loads(row["moved_activities"]):
                conn.execute(
                    "UPDATE activities SET contact_id = ? WHERE activity_id = ?",
                    (row["merged_id"], activity_id),
                )
            for deal_id in json.loads(row["moved_deals"]):
                conn.execute(
                    "UPDATE deals SET contact_id = ? WHERE deal_id = ?", (row["merged_id"], deal_id)
                )
            conn.execute(
                "UPDATE merges SET status = 'undone', undone_at = ? WHERE merge_id = ?",
                (stamp, merge_id),
            )
            row = conn.execute("SELECT * FROM merges WHERE merge_id = ?", (merge_id,)).fetchone()
        survivor = _contact_row(conn, row["survivor_id"])
        assert survivor is not None  # merges reference contacts, which are never deleted
        return _merge_record(row, _fields(survivor))


# --- archivals -----------------------------------------------------------------------------


def _archive_diff(conn: sqlite3.Connection, account_id: str, contact_id: str) -> ArchiveDiff:
    row = _contact_row(conn, contact_id)
    if row is None:
        raise LookupError(f"contact {contact_id!r} not found")
    problems: list[str] = []
    contact = _contact(conn, row, _now())
    if row["account_id"] != account_id:
        problems.append(f"contact {contact_id!r} belongs to another account")
    if row["status"] != "active":
        problems.append(f"contact {contact_id!r} is {row['status']}, not active")
    if not contact["stale"]:
        problems.append(
            f"contact {contact_id!r} had activity {contact['days_since_activity']} days ago; "
            f"only contacts idle for {STALE_AFTER_DAYS} days are archived"
        )
    if contact["open_deals"]:
        deals = ", ".join(d["deal_id"] for d in contact["open_deals"])
        problems.append(f"contact {contact_id!r} has open deals ({deals})")
    before = _fields(row)
    return {
        "action": "archive_contact",
        "account_id": account_id,
        "contact_id": contact_id,
        "before": before,
        "after": {**before, "status": "archived"},
        "days_since_activity": contact["days_since_activity"],
        "reason": f"no activity for {contact['days_since_activity']} days",
        "valid": not problems,
        "problems": problems,
    }


def diff_archive(account_id: str, contact_id: str) -> ArchiveDiff:
    """Show an archival without making it, with the reason the data gives for it."""
    with closing(connect()) as conn:
        return _archive_diff(conn, account_id, contact_id)


def _archival(row: sqlite3.Row) -> Archival:
    return {
        "archive_id": row["archive_id"],
        "account_id": row["account_id"],
        "contact_id": row["contact_id"],
        "status": row["status"],
        "idempotency_key": row["idempotency_key"],
    }


def archive_contact(
    account_id: str, contact_id: str, reason: str, idempotency_key: str | None = None
) -> Archival:
    """Archive a stale contact with no open deal, once per key; contacts are never deleted."""
    if not reason.strip():
        raise ValueError("archive reason must not be empty")
    with closing(connect()) as conn, transaction(conn):
        if idempotency_key is not None:
            existing: sqlite3.Row | None = conn.execute(
                "SELECT * FROM archivals WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if existing is not None:
                if existing["contact_id"] != contact_id:
                    raise ValueError(
                        f"idempotency key {idempotency_key!r} was already used for archiving "
                        f"{existing['contact_id']!r}"
                    )
                return _archival(existing)
        diff = _archive_diff(conn, account_id, contact_id)
        if diff["problems"]:
            raise ValueError("archive refused: " + "; ".join(diff["problems"]))
        stamp = now_iso()
        archive_id = _key_id("X-", idempotency_key, f"{contact_id}:{stamp}")
        conn.execute(
            "UPDATE contacts SET status = 'archived', updated_at = ? WHERE contact_id = ?",
            (stamp, contact_id),
        )
        conn.execute(
            "INSERT INTO archivals (archive_id, account_id, contact_id, reason, idempotency_key,"
            " status, created_at) VALUES (?, ?, ?, ?, ?, 'archived', ?)",
            (archive_id, account_id, contact_id, reason, idempotency_key, stamp),
        )
        row = conn.execute("SELECT * FROM archivals WHERE archive_id = ?", (archive_id,)).fetchone()
        return _archival(row)


def plan_archive(
    account_id: str, contact_id: str, reason: str, idempotency_key: str | None = None
) -> dict[str, object]:
    """The dry-run stand-in for archive_contact: the archival it would record, and the diff."""
    with closing(connect()) as conn:
        change = _archive_diff(conn, account_id, contact_id)
    if not reason.strip():
        change["problems"].append("archive reason must not be empty")
        change["valid"] = False
    result: Archival = {
        "archive_id": _key_id("X-", idempotency_key, "planned") if idempotency_key else "X-planned",
        "account_id": account_id,
        "contact_id": contact_id,
        "status": "planned",
        "idempotency_key": idempotency_key,
    }
    return {"result": dict(result), "change": dict(change)}


def unarchive(archive_id: str) -> Archival:
    """Undo an archival (the compensation of archive_contact); restoring twice changes nothing."""
    with closing(connect()) as conn, transaction(conn):
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM archivals WHERE archive_id = ?", (archive_id,)
        ).fetchone()
        if row is None:
            raise LookupError(f"archival {archive_id!r} not found")
        if row["status"] == "archived":
            stamp = now_iso()
            conn.execute(
                "UPDATE contacts SET status = 'active', updated_at = ?"
                " WHERE contact_id = ? AND status = 'archived' AND merged_into IS NULL",
                (stamp, row["contact_id"]),
            )
            conn.execute(
                "UPDATE archivals SET status = 'restored', restored_at = ? WHERE archive_id = ?",
                (stamp, archive_id),
            )
            row = conn.execute(
                "SELECT * FROM archivals WHERE archive_id = ?", (archive_id,)
            ).fetchone()
        return _archival(row)
