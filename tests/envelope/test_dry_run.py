"""Dry-run by default: a write runs its preview, never its impl; --live makes it real."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.envelope import etools
from tests.envelope.conftest import DurableMemory, plan_of, run

ROOT = Path(__file__).resolve().parents[2]
ALLOW = 'policies:\n  - {id: pay-ok, when: \'tool in ["pay", "pay_no_preview"]\', effect: allow}\n'
FLOW = """
nodes:
  src: {tool: read, args: {key: a}}
  ok: {gate: [{check: "nodes.src.output.amount < 100.0", message: small}]}
  pay_it: {tool: pay, needs: [ok], args: {to: bob, amount: "${{ nodes.src.output.amount }}"}}
  after: {tool: read, args: {key: "${{ nodes.pay_it.output.id }}"}}
"""


def test_dry_run_runs_the_preview_and_downstream_sees_the_planned_result() -> None:
    result = run(plan_of(ALLOW + FLOW))
    assert result.status == "succeeded"
    assert [e["kind"] for e in etools.logs()] == ["read", "plan_pay", "read"]  # never `pay`
    pay = result.nodes["pay_it"]
    assert pay.output == {"paid": 30.0, "to": "bob", "id": "p-planned"}
    assert pay.detail["dry_run"] is True
    assert pay.detail["planned"] == {"action": "pay", "to": "bob", "amount": 30.0}
    assert result.nodes["after"].output["key"] == "p-planned"


def test_live_runs_the_impl_once() -> None:
    result = run(plan_of(ALLOW + FLOW), live=True, services=DurableMemory())
    assert result.status == "succeeded"
    assert [e["kind"] for e in etools.logs()] == ["read", "pay", "read"]


def test_live_write_without_a_durable_store_is_refused() -> None:
    result = run(plan_of(ALLOW + FLOW), live=True)  # plain in-memory services
    assert result.status == "denied"
    assert "needs a run recorded in the store" in (result.reason or "")
    assert "pay" not in [e["kind"] for e in etools.logs()]


def test_a_write_without_preview_is_refused_in_dry_run() -> None:
    flow = FLOW.replace("{tool: pay, needs", "{tool: pay_no_preview, needs")
    result = run(plan_of(ALLOW + flow))
    assert result.status == "denied"
    assert "has no `preview`" in (result.reason or "")
    assert [e["kind"] for e in etools.logs()] == ["read"]


@pytest.fixture
def seeded(tmp_path: Path) -> dict[str, str]:
    import os

    db = tmp_path / "support.db"
    subprocess.run(
        [sys.executable, "-m", "tools.seed", "--db", str(db)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return {
        **os.environ,
        "FLOWRUN_SUPPORT_DB": str(db),
        "FLOWRUN_STORE": str(tmp_path / "store.db"),
    }


def _execute(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "runner.cli", "execute", "specs/support_refund.yaml",
            "--input", "examples/inputs/refund_granted.json",
            "--responses", "examples/responses/refund_granted.jsonl",
            "--scopes", "refunds:write", "--output", "json", *extra,
        ],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip


def test_reference_dry_run_touches_neither_the_database_nor_the_ledger(
    seeded: dict[str, str],
) -> None:
    proc = _execute(seeded)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["outputs"]["refund"]["status"] == "planned"
    assert out["nodes"]["act"]["detail"]["planned"]["after"] == {"refunded_usd": 35.0}
    with sqlite3.connect(seeded["FLOWRUN_SUPPORT_DB"]) as c:
        assert c.execute("SELECT COUNT(*) FROM refunds").fetchone() == (0,)
        assert c.execute("SELECT COUNT(*) FROM ticket_notes").fetchone() == (0,)
    with sqlite3.connect(seeded["FLOWRUN_STORE"]) as c:
        assert c.execute("SELECT COUNT(*) FROM ledger WHERE effect = 'write'").fetchone() == (0,)
        planned = c.execute(
            "SELECT node_id FROM events WHERE type = 'planned_change' ORDER BY id"
        ).fetchall()
        assert planned == [("act",), ("log",)]
        decisions = c.execute(
            "SELECT node_id, json_extract(data, '$.rule') FROM events WHERE type = 'policy_decision' ORDER BY id"
        ).fetchall()
        assert ("act", "refunds-for-support") in decisions and (
            "log",
            "notes-on-own-ticket",
        ) in decisions
    shown = subprocess.run(
        [sys.executable, "-m", "runner.cli", "show", out["run_id"]],
        cwd=ROOT, env=seeded, capture_output=True, text=True,
    )  # fmt: skip
    assert shown.returncode == 0
    assert "planned change (dry run)" in shown.stdout and '"refunded_usd": 35.0' in shown.stdout
    live = _execute(seeded, "--live")
    assert live.returncode == 0, live.stderr
    with sqlite3.connect(seeded["FLOWRUN_SUPPORT_DB"]) as c:
        assert c.execute("SELECT order_id, amount_usd FROM refunds").fetchall() == [
            ("O-5001", 35.0)
        ]
