"""Readiness and autonomy tests: a store of either kind, seeded through the store interface."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.plan.compile import compile_plan
from runner.plan.model import Plan
from runner.runs import create_run
from runner.runs.readiness import spec_digest, write_tools
from runner.spec import load_spec
from runner.store import Store, open_store

SPECS = Path(__file__).resolve().parents[2] / "specs"
# the reference workflows: each has write tools, eval cases and policy cases
REFERENCE = ("support_refund", "incident_triage", "crm_hygiene", "invoice_reconciliation")


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "flowrun.db")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FLOWRUN_STORE_DIR", str(tmp_path / "local"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(target: str) -> Iterator[Store]:
    s = open_store(target)
    yield s
    s.close()


def plan_of(name: str) -> Plan:
    return compile_plan(load_spec(str(SPECS / f"{name}.yaml")))


def record_eval(
    store: Store,
    plan: Plan,
    *,
    cases: int = 25,
    passes: int | None = None,
    adversarial: tuple[int, int] = (7, 7),
    violations: int = 0,
    digest: str | None = None,
) -> int:
    passes = cases if passes is None else passes
    return store.eval_record(
        plan.name,
        spec_digest=digest or spec_digest(plan),
        passed=passes == cases and violations == 0,
        summary={
            "cases": cases,
            "case_passes": passes,
            "runs": cases,
            "run_passes": passes,
            "by_kind": {"gold": [passes - adversarial[0], cases - adversarial[1]],
                        "adversarial": list(adversarial)},
            "policy_violations": violations,
            "gates_failed": [],
            "repeat": 1,
            "profile": None,
        },
    )  # fmt: skip


def new_run(
    store: Store,
    plan: Plan,
    *,
    status: str = "succeeded",
    cost: float = 0.003,
    tenant: str | None = None,
) -> str:
    run_id = f"r-{uuid.uuid4().hex[:12]}"
    create_run(store, plan, {}, run_id=run_id, responses_path=None, tenant=tenant)
    store.finish_run(run_id, add_duration_s=1.0, status=status, cost_usd=cost)
    store.flush()
    return run_id


def write(
    store: Store,
    run_id: str,
    tool: str,
    *,
    node: str = "act",
    traced: bool = True,
    status: str = "done",
    decision: str | None = "allow",
) -> str:
    """A live write as the envelope records it: policy decision (None: left out), ledger row,
    traced call."""
    key = f"{tool}/{uuid.uuid4().hex[:8]}"
    if decision is not None:
        store.event(run_id, "policy_decision", node, tool=tool, effect=decision, rule="r")
    if decision == "deny":
        store.flush()
        return key
    store.ledger_intent(
        key, run_id=run_id, node_id=node, tool=tool, effect="write", args={},
        compensate=None, spec_dir=None,
    )  # fmt: skip
    if status == "done":
        store.ledger_done(key, {"ok": True})
    elif status == "failed":
        store.ledger_failed(key, "boom")
    data: dict[str, Any] = {"captured": True, "has_result": True}
    store.record_call(
        run_id=run_id, node_id=node, idx=None, attempt=1, kind="tool", name=tool, data=data,
        error=None, started_at=time.time(), duration_s=0.01,
        trace_id=uuid.uuid4().hex if traced else None,
    )  # fmt: skip
    store.flush()
    return key


def approval(store: Store, run_id: str, *, waited_s: float = 60.0, decide: bool = True) -> None:
    node = f"approve_{uuid.uuid4().hex[:6]}"
    store.approval_request(run_id, node, summary="ok?", requested_at=time.time() - waited_s)
    if decide:
        store.approval_decide(run_id, node, status="approved", by="lead")


def undo(store: Store, run_id: str, key: str, tool: str) -> None:
    store.ledger_mark_undone(key)
    store.event(run_id, "undo", "act", tool=tool, key=key, by="ops")
    store.flush()


def seed(store: Store, plan: Plan, *, runs: int = 12) -> list[tuple[str, str, str]]:
    """A history that passes every gate: 3 stable evals, `runs` cheap succeeded runs each with
    one traced, allowed live write per write tool, quick approvals. Returns (run, tool, key)."""
    for _ in range(3):
        record_eval(store, plan)
    out = []
    for i in range(runs):
        run_id = new_run(store, plan)
        for tool in write_tools(plan):
            out.append((run_id, tool, write(store, run_id, tool)))
        if i % 3 == 0:
            approval(store, run_id, waited_s=120.0)
    return out
