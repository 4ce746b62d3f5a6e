"""Remediation actions with the operational invariants enforced in the tool, not the model.

One call applies one action of a closed set to hosts of the incident's service (or, for
scale_out, to the service itself) and records a change row with the state before and after.
The tool re-reads everything it checks from the database: the `targets` and `freeze` it is
given only state what the caller (and its approver) saw, and a mismatch is refused.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from contextlib import closing
from typing import Any

from typing_extensions import TypedDict

from tools._db import now_iso, transaction
from tools.itops import connect
from tools.itops.inventory import Freeze, Host, active_freeze, host_from_row, service_row
from tools.itops.runbooks import allowed_actions, runbook_row

ACTIONS = ("restart_service", "scale_out", "rollback_deploy", "clear_disk")
HOST_ACTIONS = frozenset({"restart_service", "rollback_deploy", "clear_disk"})
REVERSIBLE = frozenset({"scale_out", "rollback_deploy"})
DISK_KEPT = 0.45  # clearing stale files keeps this share of the used disk


class Change(TypedDict):
    """A change row: what was done, to what, the state before and after, and who approved it."""

    change_id: str
    incident_id: str
    service: str
    runbook_id: str
    action: str
    hosts: list[str]
    instances: int
    before: dict[str, dict[str, Any]]
    after: dict[str, dict[str, Any]]
    approved_by: str | None
    freeze_id: str | None
    status: str  # applied | reverted | planned
    idempotency_key: str | None
    created_at: str
    note: str


class RemediationPreview(TypedDict):
    """The change remediate would make, for dry runs and approvers."""

    action: str
    incident_id: str
    service: str
    runbook_id: str
    hosts: list[str]
    instances: int
    before: dict[str, dict[str, Any]]
    after: dict[str, dict[str, Any]]
    approved_by: str | None
    freeze_id: str | None
    valid: bool
    problems: list[str]


def _change_id(idempotency_key: str | None) -> str:
    """Same key, same id: a retried call can never mint a second change."""
    if idempotency_key is None:
        return "CHG-" + uuid.uuid4().hex[:10]
    return "CHG-" + hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:10]


def _host_names(targets: list[Host]) -> list[str]:
    names: list[str] = []
    for t in targets:
        name = str(t.get("host", "")) if isinstance(t, dict) else ""
        if name not in names:
            names.append(name)
    return names


def _host_state(
    action: str, row: sqlite3.Row, previous_version: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(before, after) of one host under `action`."""
    if action == "restart_service":
        return (
            {"status": row["status"], "restarts": int(row["restarts"])},
            {"status": "healthy", "restarts": int(row["restarts"]) + 1},
        )
    if action == "clear_disk":
        disk = float(row["disk_pct"])
        return {"disk_pct": disk}, {"disk_pct": round(disk * DISK_KEPT, 1)}
    return {"version": row["version"]}, {"version": previous_version or row["version"]}


class _Plan:
    """Everything remediate checks and would change, computed on one connection."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        incident_id: str,
        service: str,
        runbook_id: str,
        action: str,
        targets: list[Host],
        instances: int,
        approved_by: str | None,
        freeze: Freeze | None,
    ) -> None:
        self.problems: list[str] = []
        self.hosts = _host_names(targets)
        self.instances = instances
        self.before: dict[str, dict[str, Any]] = {}
        self.after: dict[str, dict[str, Any]] = {}
        self.freeze_id: str | None = None
        self.rows: dict[str, sqlite3.Row] = {}
        problem = self.problems.append
        if action not in ACTIONS:
            problem(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
            return
        if approved_by is not None and not approved_by.strip():
            problem("approved_by must name a person when given")
            approved_by = None
        incident: sqlite3.Row | None = conn.execute(
            "SELECT * FROM incidents WHERE incident_id = ?", (incident_id,)
        ).fetchone()
        if incident is None:
            problem(f"incident {incident_id!r} not found")
            return
        if incident["service"] != service:
            problem(
                f"incident {incident_id!r} is on service {incident['service']!r}, not {service!r}"
            )
            return
        if incident["status"] != "open":
            problem(f"incident {incident_id!r} is {incident['status']}, not open")
        svc = service_row(conn, service)
        runbook = runbook_row(conn, runbook_id)
        if runbook is None:
            problem(f"runbook {runbook_id!r} not found")
        elif runbook["service"] != service:
            problem(
                f"runbook {runbook_id!r} is for service {runbook['service']!r}, not {service!r}"
            )
        elif action not in allowed_actions(runbook):
            problem(
                f"runbook {runbook_id!r} does not allow {action!r} "
                f"(allowed: {', '.join(allowed_actions(runbook)) or 'none'})"
            )
        now_freeze = active_freeze(conn, service)
        if now_freeze is not None:
            self.freeze_id = now_freeze["freeze_id"]
            if approved_by is None:
                problem(
                    f"change freeze {now_freeze['freeze_id']} is in force on {service!r} "
                    f"until {now_freeze['ends_at']}: a change needs a named approver"
                )
            if freeze is None or freeze.get("freeze_id") != now_freeze["freeze_id"]:
                problem(
                    f"change freeze {now_freeze['freeze_id']} is in force but the request did "
                    "not acknowledge it"
                )
        if action == "scale_out":
            self._scale(svc, instances, problem)
        else:
            self._hosts(conn, svc, action, approved_by, problem)

    def _scale(self, svc: sqlite3.Row, instances: int, problem: Any) -> None:
        current, cap = int(svc["instances"]), int(svc["max_instances"])
        if self.hosts:
            problem("scale_out adds instances to the service; it takes no target hosts")
        if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
            problem(f"scale_out needs a positive number of instances, got {instances!r}")
            return
        if current + instances > cap:
            problem(
                f"scaling {svc['service']!r} from {current} by {instances} exceeds its limit of "
                f"{cap} instances (at most {cap - current} more)"
            )
        self.before = {svc["service"]: {"instances": current}}
        self.after = {svc["service"]: {"instances": current + instances}}

    def _hosts(
        self,
        conn: sqlite3.Connection,
        svc: sqlite3.Row,
        action: str,
        approved_by: str | None,
        problem: Any,
    ) -> None:
        service, limit = svc["service"], int(svc["max_hosts_per_action"])
        if self.instances != 0:
            problem(f"{action} takes no instances, got {self.instances!r}")
        if not self.hosts:
            problem(f"{action} needs at least one target host")
        if len(self.hosts) > limit:
            problem(
                f"{action} on {len(self.hosts)} hosts exceeds the blast radius of {service!r} "
                f"({limit} at a time)"
            )
        if action == "rollback_deploy" and approved_by is None:
            problem("rollback_deploy needs a named approver")
        if action == "rollback_deploy" and not svc["previous_version"]:
            problem(f"service {service!r} has no previous version to roll back to")
        for name in self.hosts:
            row: sqlite3.Row | None = conn.execute(
                "SELECT * FROM hosts WHERE host = ?", (name,)
            ).fetchone()
            if row is None:
                problem(f"host {name!r} not found")
                continue
            if row["service"] != service:
                problem(f"host {name!r} belongs to service {row['service']!r}, not {service!r}")
                continue
            if host_from_row(row)["protected"] and approved_by is None:
                problem(f"host {name!r} is protected: {action} needs a named approver")
            if action == "rollback_deploy" and row["version"] == svc["previous_version"]:
                problem(f"host {name!r} already runs {row['version']}: nothing to roll back")
            self.rows[name] = row
            self.before[name], self.after[name] = _host_state(action, row, svc["previous_version"])


def _change(row: sqlite3.Row, note: str = "") -> Change:
    return {
        "change_id": row["change_id"],
        "incident_id": row["incident_id"],
        "service": row["service"],
        "runbook_id": row["runbook_id"],
        "action": row["action"],
        "hosts": json.loads(row["hosts"]),
        "instances": int(row["instances"]),
        "before": json.loads(row["before"]),
        "after": json.loads(row["after"]),
        "approved_by": row["approved_by"],
        "freeze_id": row["freeze_id"],
        "status": row["status"],
        "idempotency_key": row["idempotency_key"],
        "created_at": row["created_at"],
        "note": note,
    }


def _apply(conn: sqlite3.Connection, action: str, service: str, plan: _Plan) -> None:
    if action == "scale_out":
        conn.execute(
            "UPDATE services SET instances = instances + ? WHERE service = ?",
            (plan.instances, service),
        )
        return
    for name in plan.hosts:
        after = plan.after[name]
        if action == "restart_service":
            conn.execute(
                "UPDATE hosts SET status = ?, restarts = ? WHERE host = ?",
                (after["status"], after["restarts"], name),
            )
        elif action == "clear_disk":
            conn.execute("UPDATE hosts SET disk_pct = ? WHERE host = ?", (after["disk_pct"], name))
        else:
            conn.execute("UPDATE hosts SET version = ? WHERE host = ?", (after["version"], name))


def remediate(
    incident_id: str,
    service: str,
    runbook_id: str,
    action: str,
    targets: list[Host],
    instances: int,
    approved_by: str | None,
    freeze: Freeze | None,
    idempotency_key: str | None = None,
) -> Change:
    """Apply one runbook action to the incident's service, at most once per key, within limits."""
    with closing(connect()) as conn, transaction(conn):
        # The write lock is held from here: a concurrent call with the same key waits, then
        # finds this change instead of applying its own.
        if idempotency_key is not None:
            existing: sqlite3.Row | None = conn.execute(
                "SELECT * FROM changes WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if existing is not None:
                if existing["incident_id"] != incident_id or existing["action"] != action:
                    raise ValueError(
                        f"idempotency key {idempotency_key!r} was already used for "
                        f"{existing['action']} on incident {existing['incident_id']!r}"
                    )
                return _change(existing)
        plan = _Plan(
            conn,
            incident_id=incident_id,
            service=service,
            runbook_id=runbook_id,
            action=action,
            targets=targets,
            instances=instances,
            approved_by=approved_by,
            freeze=freeze,
        )
        if plan.problems:
            raise ValueError("remediation refused: " + "; ".join(plan.problems))
        _apply(conn, action, service, plan)
        change_id = _change_id(idempotency_key)
        conn.execute(
            "INSERT INTO changes (change_id, incident_id, service, runbook_id, action, hosts,"
            " instances, before, after, approved_by, freeze_id, idempotency_key, status,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'applied', ?)",
            (
                change_id,
                incident_id,
                service,
                runbook_id,
                action,
                json.dumps(plan.hosts),
                plan.instances if action == "scale_out" else 0,
                json.dumps(plan.before),
                json.dumps(plan.after),
                approved_by,
                plan.freeze_id,
                idempotency_key,
                now_iso(),
            ),
        )
        row: sqlite3.Row = conn.execute(
            "SELECT * FROM changes WHERE change_id = ?", (change_id,)
        ).fetchone()
        return _change(row)


def preview_remediation(
    incident_id: str,
    service: str,
    runbook_id: str,
    action: str,
    targets: list[Host],
    instances: int,
    approved_by: str | None,
    freeze: Freeze | None,
) -> RemediationPreview:
    """Describe a remediation without making it, so dry runs and approvers see the exact change."""
    with closing(connect()) as conn:
        plan = _Plan(
            conn,
            incident_id=incident_id,
            service=service,
            runbook_id=runbook_id,
            action=action,
            targets=targets,
            instances=instances,
            approved_by=approved_by,
            freeze=freeze,
        )
    return {
        "action": action,
        "incident_id": incident_id,
        "service": service,
        "runbook_id": runbook_id,
        "hosts": plan.hosts,
        "instances": instances,
        "before": plan.before,
        "after": plan.after,
        "approved_by": approved_by,
        "freeze_id": plan.freeze_id,
        "valid": not plan.problems,
        "problems": plan.problems,
    }


def plan_remediation(
    incident_id: str,
    service: str,
    runbook_id: str,
    action: str,
    targets: list[Host],
    instances: int,
    approved_by: str | None,
    freeze: Freeze | None,
    idempotency_key: str | None = None,
) -> dict[str, object]:
    """The dry-run stand-in for remediate: the change it would return, and the planned change."""
    preview = preview_remediation(
        incident_id, service, runbook_id, action, targets, instances, approved_by, freeze
    )
    result: Change = {
        "change_id": _change_id(idempotency_key) if idempotency_key else "CHG-planned",
        "incident_id": incident_id,
        "service": service,
        "runbook_id": runbook_id,
        "action": action,
        "hosts": preview["hosts"],
        "instances": instances if action == "scale_out" else 0,
        "before": preview["before"],
        "after": preview["after"],
        "approved_by": approved_by,
        "freeze_id": preview["freeze_id"],
        "status": "planned",
        "idempotency_key": idempotency_key,
        "created_at": "",
        "note": "dry run: nothing was changed",
    }
    return {"result": dict(result), "change": dict(preview)}


def revert_remediation(change_id: str) -> Change:
    """Undo a change where that means something (the compensation of remediate).

    scale_out scales back in and rollback_deploy rolls the hosts forward again; a restart or a
    cleared disk cannot be undone, so those changes stay `applied` with a note saying so.
    Reverting twice changes nothing.
    """
    with closing(connect()) as conn, transaction(conn):
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM changes WHERE change_id = ?", (change_id,)
        ).fetchone()
        if row is None:
            raise LookupError(f"change {change_id!r} not found")
        if row["status"] == "reverted":
            return _change(row, "already reverted")
        action = row["action"]
        if action not in REVERSIBLE:
            return _change(row, f"{action} cannot be undone; nothing was reverted")
        before: dict[str, dict[str, Any]] = json.loads(row["before"])
        if action == "scale_out":
            conn.execute(
                "UPDATE services SET instances = MAX(instances - ?, 0) WHERE service = ?",
                (int(row["instances"]), row["service"]),
            )
        else:
            for host, state in before.items():
                conn.execute(
                    "UPDATE hosts SET version = ? WHERE host = ?", (state["version"], host)
                )
        conn.execute(
            "UPDATE changes SET status = 'reverted', reverted_at = ? WHERE change_id = ?",
            (now_iso(), change_id),
        )
        done: sqlite3.Row = conn.execute(
            "SELECT * FROM changes WHERE change_id = ?", (change_id,)
        ).fetchone()
        return _change(done, f"{action} reverted")


def list_changes(incident_id: str | None = None) -> list[Change]:
    """Every change, oldest first, for audits, tests and compensation."""
    with closing(connect()) as conn:
        if incident_id is None:
            rows = conn.execute("SELECT * FROM changes ORDER BY created_at, change_id")
        else:
            rows = conn.execute(
                "SELECT * FROM changes WHERE incident_id = ? ORDER BY created_at, change_id",
                (incident_id,),
            )
        return [_change(r) for r in rows]
