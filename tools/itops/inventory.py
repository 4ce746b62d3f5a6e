"""Service inventory (the CMDB view): hosts with their tags, limits and any active change freeze."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

from typing_extensions import TypedDict

from tools._db import now_iso
from tools.itops import connect

PROTECTED_TAGS = frozenset({"protected", "prod-db"})


class Host(TypedDict):
    """One host of a service; `protected` hosts are touched only with a named approver."""

    host: str
    service: str
    role: str
    env: str
    tags: list[str]
    protected: bool
    status: str
    version: str
    disk_pct: float


class Freeze(TypedDict):
    """A change freeze window covering a service (or every service when its service is null)."""

    freeze_id: str
    reason: str
    starts_at: str
    ends_at: str


class Service(TypedDict):
    """What remediation of a service may touch, and how much of it at once."""

    service: str
    tier: int
    owner_team: str
    deployed_version: str
    previous_version: str | None
    instances: int
    max_instances: int
    max_hosts_per_action: int
    hosts: list[Host]
    host_names: list[str]
    freeze: Freeze | None  # the freeze in force now, if any


def host_from_row(row: sqlite3.Row) -> Host:
    tags: list[str] = [str(t) for t in json.loads(row["tags"])]
    return {
        "host": row["host"],
        "service": row["service"],
        "role": row["role"],
        "env": row["env"],
        "tags": tags,
        "protected": bool(PROTECTED_TAGS & set(tags)),
        "status": row["status"],
        "version": row["version"],
        "disk_pct": float(row["disk_pct"]),
    }


def service_row(conn: sqlite3.Connection, service: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM services WHERE service = ?", (service,)
    ).fetchone()
    if row is None:
        raise LookupError(f"service {service!r} not found")
    return row


def active_freeze(conn: sqlite3.Connection, service: str, now: str | None = None) -> Freeze | None:
    """The change freeze covering `service` at `now` (UTC, ISO), the one ending last first."""
    at = now or now_iso()
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM change_freezes WHERE (service = ? OR service IS NULL)"
        " AND starts_at <= ? AND ? < ends_at ORDER BY ends_at DESC, freeze_id LIMIT 1",
        (service, at, at),
    ).fetchone()
    if row is None:
        return None
    return {
        "freeze_id": row["freeze_id"],
        "reason": row["reason"],
        "starts_at": row["starts_at"],
        "ends_at": row["ends_at"],
    }


def get_service(service: str) -> Service:
    """Give the workflow the inventory facts a remediation is checked against."""
    with closing(connect()) as conn:
        row = service_row(conn, service)
        hosts = [
            host_from_row(h)
            for h in conn.execute("SELECT * FROM hosts WHERE service = ? ORDER BY host", (service,))
        ]
        return {
            "service": row["service"],
            "tier": int(row["tier"]),
            "owner_team": row["owner_team"],
            "deployed_version": row["deployed_version"],
            "previous_version": row["previous_version"],
            "instances": int(row["instances"]),
            "max_instances": int(row["max_instances"]),
            "max_hosts_per_action": int(row["max_hosts_per_action"]),
            "hosts": hosts,
            "host_names": [h["host"] for h in hosts],
            "freeze": active_freeze(conn, service),
        }
