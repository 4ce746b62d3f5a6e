"""IT operations tools for the incident-triage workflow: alerts, inventory, runbooks, changes.

Everything lives in one SQLite file (FLOWRUN_ITOPS_DB, else .flowrun/itops.db), seeded with
`python -m tools.itops.seed`. The remediation tool enforces the operational invariants itself
(target hosts of the incident's service, runbook-allowed actions, blast radius, protected hosts
and change freezes need a named approver), so a fooled model cannot talk its way past them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tools._db import Database

ITOPS = Database(
    env_var="FLOWRUN_ITOPS_DB",
    default_path=Path(".flowrun") / "itops.db",
    required_tables=frozenset(
        {"services", "hosts", "change_freezes", "incidents", "runbooks", "changes", "timeline"}
    ),
    seed_command="python -m tools.itops.seed",
)
ENV_VAR = ITOPS.env_var


def connect() -> sqlite3.Connection:
    """Open the seeded IT operations database."""
    return ITOPS.connect()
