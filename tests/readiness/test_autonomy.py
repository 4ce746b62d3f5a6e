"""Autonomy levels: held in the store, enforced before every live write, changed by promote,
demote and by themselves when undos pile up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.runs.autonomy import PromotionRefused, changes, demote, promote
from runner.runs.readiness import assess
from runner.store import Store
from tests.readiness.conftest import SPECS, new_run, plan_of, seed, undo

REFUND = str(SPECS / "support_refund.yaml")
RESPONSES = SPECS.parent / "examples" / "responses" / "refund_granted.jsonl"


def flowrun(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_levels_per_tool_and_tenant(store: Store) -> None:
    plan = plan_of("support_refund")
    assert store.autonomy_level(plan.name, "issue_refund", None) is None
    report = assess(store, plan)  # no evidence at all: nothing fails, nothing passes
    demote(store, plan, "issue_refund", tenant=None, to="dry_run", by="ops", reason="new")
    c = promote(store, plan, "issue_refund", tenant="acme", to=None, by="ops", readiness=report)
    assert (c.was, c.level, c.override) == ("dry_run", "approval", False)
    assert store.autonomy_level(plan.name, "issue_refund", "acme")["level"] == "approval"
    assert store.autonomy_level(plan.name, "issue_refund", "beta")["level"] == "dry_run"
    assert store.autonomy_level(plan.name, "issue_refund", None)["level"] == "dry_run"
    # to autonomous needs every gate to pass; evidence that is not there refuses it
    with pytest.raises(PromotionRefused, match="not enough evidence"):
        promote(store, plan, "issue_refund", tenant="acme", to="autonomous", by="ops",
                readiness=report)  # fmt: skip
    c = promote(store, plan, "issue_refund", tenant="acme", to="autonomous", by="ops",
                readiness=report, override="incident 42: refunds must flow")  # fmt: skip
    assert c.override
    log = changes(store, plan.name)
    assert log[0]["override"] is True and log[0]["reason"] == "incident 42: refunds must flow"
    assert log[0]["gates"]["task_success"] == "not_enough_evidence"
    assert [x["to"] for x in log] == ["autonomous", "approval", "dry_run"]


def test_promotion_refused_while_a_gate_fails(store: Store) -> None:
    plan = plan_of("support_refund")
    seed(store, plan)
    demote(store, plan, "issue_refund", tenant=None, to="approval", by="ops", reason=None)
    new_run(store, plan, cost=9.0)  # the cost gate fails
    report = assess(store, plan)
    assert report.gate("cost_control").status == "fail"
    with pytest.raises(PromotionRefused, match="cost control"):
        promote(store, plan, "issue_refund", tenant=None, to=None, by="ops", readiness=report)
    assert store.autonomy_level(plan.name, "issue_refund", None)["level"] == "approval"


def test_a_demotion_happens_once(store: Store) -> None:
    """Of two processes that both see the threshold passed, one demotes (the audit has one)."""
    ok1 = store.autonomy_set("wf", "t", None, "approval", by="flowrun", reason="x", only_if="")
    ok2 = store.autonomy_set("wf", "t", None, "approval", by="flowrun", reason="x", only_if="")
    assert (ok1, ok2) == (True, False)
    assert len(changes(store, "wf")) == 1


def test_bad_input_changes_nothing(store: Store, target: str) -> None:
    res = flowrun("autonomy", "promote", REFUND, "issue_reund", "--store", target)
    assert res.exit_code == 2 and "did you mean 'issue_refund'" in res.output
    res = flowrun("autonomy", "promote", REFUND, "get_ticket", "--store", target)
    assert res.exit_code == 2 and "only reads" in res.output
    res = flowrun("autonomy", "demote", REFUND, "issue_refund", "--to", "autonomous", "--store",
                  target)  # fmt: skip
    assert res.exit_code == 2 and "demote lowers" in res.output
    res = flowrun("autonomy", "promote", REFUND, "issue_refund", "--override", " ", "--store",
                  target)  # fmt: skip
    assert res.exit_code == 2 and "needs a reason" in res.output
    assert store.autonomy_rows() == [] and changes(store) == []


@pytest.mark.slow
def test_autonomous_tool_demoted_by_undos_then_its_next_write_waits(
    store: Store, target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.seed import seed as seed_db

    db = tmp_path / "support.db"
    seed_db(db)
    monkeypatch.setenv("FLOWRUN_SUPPORT_DB", str(db))
    plan = plan_of("support_refund")
    history = [h for h in seed(store, plan) if h[1] == "issue_refund"]  # 12 refunds, all kept

    # gates pass: from approval to autonomous, recorded
    assert flowrun("autonomy", "demote", REFUND, "issue_refund", "--to", "approval",
                   "--store", target).exit_code == 0  # fmt: skip
    up = flowrun("autonomy", "promote", REFUND, "issue_refund", "--to", "autonomous",
                 "--by", "lead", "--store", target)  # fmt: skip
    assert up.exit_code == 0, up.output
    assert "approval -> autonomous" in up.output

    # autonomous: a live refund is made without asking anyone
    t5 = tmp_path / "t5.json"
    t5.write_text(json.dumps({"ticket_id": "T-1005"}))
    live = ("--responses", str(RESPONSES), "--live", "--scopes", "refunds:write", "--store", target)
    done = flowrun("execute", REFUND, "--input", str(t5), *live, "--output", "json")
    assert done.exit_code == 0, done.output
    run_id = json.loads(done.output)["run_id"]
    assert store.inbox() == []

    # two undos of earlier refunds (2/13 = 15%: under the 20% threshold), then `flowrun undo`
    for run, tool, key in history[:2]:
        undo(store, run, key, tool)
    assert store.autonomy_level(plan.name, "issue_refund", None)["level"] == "autonomous"
    undone = flowrun("undo", run_id, "--by", "ops", "--store", target)
    assert undone.exit_code == 0, undone.output
    assert "autonomy demoted to 'approval'" in undone.output

    level = store.autonomy_level(plan.name, "issue_refund", None)
    assert level["level"] == "approval" and level["changed_by"] == "flowrun"
    assert "undo rate 3/13" in level["reason"]
    last = changes(store, plan.name)[0]
    assert last["automatic"] is True and last["evidence"]["undone"] == 3
    shown = json.loads(flowrun("autonomy", "show", REFUND, "--output", "json", "--store",
                               target).output)  # fmt: skip
    refund = next(t for t in shown["tools"] if t["tool"] == "issue_refund")
    assert refund["level"] == "approval" and refund["rates"]["undone"] == 3
    stats = json.loads(flowrun("stats", "--output", "json", "--store", target).output)
    assert stats["autonomy_changes"]["automatic_demotions"] == 1
    assert "automatic demotions" in flowrun("stats", "--store", target).output

    # the next live refund waits for a person
    nxt = flowrun("execute", REFUND, "--input", str(SPECS.parent / "examples" / "inputs" /
                  "refund_granted.json"), *live, "--output", "json")  # fmt: skip
    assert nxt.exit_code == 6, nxt.output
    waiting = store.inbox()
    assert len(waiting) == 1 and "autonomy level 'approval'" in waiting[0]["summary"]


def test_dry_run_level_previews_a_live_write(
    store: Store, target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.seed import seed as seed_db

    db = tmp_path / "support.db"
    seed_db(db)
    monkeypatch.setenv("FLOWRUN_SUPPORT_DB", str(db))
    plan = plan_of("support_refund")
    demote(store, plan, "issue_refund", tenant=None, to="dry_run", by="ops", reason=None)
    res = flowrun("execute", REFUND, "--input", str(SPECS.parent / "examples" / "inputs" /
                  "refund_granted.json"), "--responses", str(RESPONSES), "--live", "--scopes",
                  "refunds:write", "--store", target, "--output", "json")  # fmt: skip
    assert res.exit_code == 0, res.output
    run_id = json.loads(res.output)["run_id"]
    kinds = [e["type"] for e in store.events(run_id)]
    assert "autonomy_dry_run" in kinds and "planned_change" in kinds
    assert not [w for w in store.ledger_for_run(run_id) if w["tool"] == "issue_refund"]
    import sqlite3

    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(*) FROM refunds").fetchone()[0] == 0


def test_write_without_trace_id_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from runner.engine.context import Envelope
    from runner.engine.run import execute
    from tests.envelope.conftest import DurableMemory
    from tests.envelope.conftest import plan_of as inline
    from tests.envelope.test_dry_run import ALLOW, FLOW

    monkeypatch.setenv("ETOOLS_LOG", str(tmp_path / "etools.log"))
    svc = DurableMemory()
    env = Envelope(live=True, scopes=("payments",))
    # no telemetry: the run's calls are recorded nowhere, so it has no trace id
    result = asyncio.run(execute(inline(ALLOW + FLOW), {}, services=svc, envelope=env))
    assert result.status == "denied" and "needs a trace id" in (result.reason or "")
    assert any(e["type"] == "write_refused" for e in svc.events)
    assert "pay/" not in " ".join(svc.ledger)  # the write was never recorded, let alone made


@pytest.mark.slow
def test_deny_spike_demotes_before_the_next_write(
    store: Store, target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The envelope checks the rates right before a live write: the write that finds the
    tool's deny rate past the threshold already runs at the lower level."""
    from tests.readiness.conftest import write
    from tools.seed import seed as seed_db

    db = tmp_path / "support.db"
    seed_db(db)
    monkeypatch.setenv("FLOWRUN_SUPPORT_DB", str(db))
    plan = plan_of("support_refund")
    run_id = new_run(store, plan)
    for _ in range(3):
        write(store, run_id, "issue_refund")
    for _ in range(5):  # 5 of 9 decisions (this run's own included) denied: 56% > 50%
        write(store, run_id, "issue_refund", decision="deny")
    store.autonomy_set(plan.name, "issue_refund", None, "autonomous", by="lead", reason=None)
    t5 = tmp_path / "t5.json"
    t5.write_text(json.dumps({"ticket_id": "T-1005"}))
    res = flowrun("execute", REFUND, "--input", str(t5), "--responses", str(RESPONSES), "--live",
                  "--scopes", "refunds:write", "--store", target, "--output", "json")  # fmt: skip
    assert res.exit_code == 6, res.output  # waiting: demoted to approval on the way
    new_id = json.loads(res.output)["run_id"]
    level = store.autonomy_level(plan.name, "issue_refund", None)
    assert level["level"] == "approval" and "policy deny rate 5/9" in level["reason"]
    assert [e["data"]["to"] for e in store.events(new_id, "autonomy_demoted")] == ["approval"]
    assert changes(store, plan.name)[0]["automatic"] is True
    import sqlite3

    with sqlite3.connect(db) as c:  # nothing was refunded before a person approves
        assert c.execute("SELECT COUNT(*) FROM refunds").fetchone()[0] == 0
