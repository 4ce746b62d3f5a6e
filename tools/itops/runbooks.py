"""Runbook lookup: the actions a service's runbook allows for a failing component."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

from typing_extensions import TypedDict

from tools.itops import connect

COMPONENTS = ("app", "database", "disk", "capacity", "deploy", "network")


class RunbookMatch(TypedDict):
    """The runbook for (service, component); `body` is wiki text anyone could edit (untrusted).

    `found` is false (and the other fields empty) when no runbook covers the pair: the
    workflow must then hand the incident to a person instead of improvising.
    """

    found: bool
    runbook_id: str
    service: str
    component: str
    title: str
    body: str
    allowed_actions: list[str]


def runbook_row(conn: sqlite3.Connection, runbook_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM runbooks WHERE runbook_id = ?", (runbook_id,)
    ).fetchone()
    return row


def allowed_actions(row: sqlite3.Row) -> list[str]:
    actions: list[str] = [str(a) for a in json.loads(row["allowed_actions"])]
    return actions


def find_runbook(service: str, component: str) -> RunbookMatch:
    """Find the runbook a remediation must follow; never guesses across services."""
    with closing(connect()) as conn:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM runbooks WHERE service = ? AND component = ?", (service, component)
        ).fetchone()
    if row is None:
        return {
            "found": False,
            "runbook_id": "",
            "service": service,
            "component": component,
            "title": "",
            "body": "",
            "allowed_actions": [],
        }
    return {
        "found": True,
        "runbook_id": row["runbook_id"],
        "service": row["service"],
        "component": row["component"],
        "title": row["title"],
        "body": row["body"],
        "allowed_actions": allowed_actions(row),
    }
