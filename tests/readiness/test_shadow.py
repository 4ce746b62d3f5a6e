"""`flowrun shadow`: a new spec version as a dry run on the inputs of recorded live runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.plan.compile import compile_plan
from runner.spec import load_spec
from runner.store import Store
from tests.readiness.conftest import SPECS

EXAMPLES = SPECS.parent / "examples"


def flowrun(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def new_version(tmp_path: Path, old: str, new: str) -> Path:
    """support_refund.yaml with one change, in a project of its own (prompts copied)."""
    folder = tmp_path / "v2"
    folder.mkdir()
    (folder / "flowrun.toml").write_text("")
    shutil.copytree(SPECS / "prompts", folder / "prompts")
    text = (SPECS / "support_refund.yaml").read_text()
    assert old in text
    spec = folder / "support_refund.yaml"
    spec.write_text(text.replace(old, new))
    return spec


@pytest.mark.slow
def test_shadow_reports_decision_cost_and_tool_call_changes(
    store: Store, target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.seed import seed as seed_db

    db = tmp_path / "support.db"
    seed_db(db)
    monkeypatch.setenv("FLOWRUN_SUPPORT_DB", str(db))
    spec = str(SPECS / "support_refund.yaml")
    ids = {}
    for case in ("refund_granted", "not_a_refund"):
        res = flowrun(
            "execute", spec, "--input", str(EXAMPLES / "inputs" / f"{case}.json"),
            "--responses", str(EXAMPLES / "responses" / f"{case}.jsonl"), "--live",
            "--scopes", "refunds:write", "--store", target, "--output", "json",
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        ids[case] = json.loads(res.output)["run_id"]
    dry = flowrun(
        "execute", spec, "--input", str(EXAMPLES / "inputs" / "refund_granted.json"),
        "--responses", str(EXAMPLES / "responses" / "refund_granted.jsonl"), "--scopes",
        "refunds:write", "--store", target,
    )  # fmt: skip
    assert dry.exit_code == 0, dry.output
    refunds_before = _refunds(db)

    v2 = new_version(
        tmp_path,
        "nodes.propose.output.amount_usd <= 50.0",
        "nodes.propose.output.amount_usd <= 30.0",
    )
    res = flowrun("shadow", str(v2), "--store", target, "--output", "json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    by_id = {r["run_id"]: r for r in report["runs"]}
    assert set(by_id) == set(ids.values())  # live runs only: the dry run is left out
    refund = by_id[ids["refund_granted"]]
    assert refund["decision_changed"] and refund["status"] == {
        "before": "succeeded",
        "after": "escalated",
    }
    assert {"node_id": "verify", "before": "succeeded", "after": "escalated"} in refund[
        "nodes_changed"
    ]
    assert refund["tool_calls"]["issue_refund"] == {"before": 1, "after": 0}
    assert refund["cost_usd"]["before"] == refund["cost_usd"]["after"] > 0  # recorded answers
    assert refund["rerun_nodes"] == ["verify"]
    other = by_id[ids["not_a_refund"]]
    assert not other["decision_changed"] and other["tool_calls"] == {}
    assert report["summary"]["decisions_changed"] == 1
    assert _refunds(db) == refunds_before  # a shadow never writes

    failing = flowrun("shadow", str(v2), "--store", target, "--fail-on-change")
    assert failing.exit_code == 1 and "CHANGED" in failing.output
    one = flowrun("shadow", str(v2), "--store", target, "--runs", f"id={ids['not_a_refund']}")
    assert one.exit_code == 0 and "0 decision(s) changed" in one.output
    args = ("shadow", str(v2), "--store", target, "--runs", "live=any", "--output", "json")
    with_dry = json.loads(flowrun(*args).output)
    assert with_dry["summary"]["runs"] == 3

    # recorded, the shadow is shown by readiness of that same version, not of the old one
    from runner.runs.readiness import assess
    from tests.readiness.conftest import plan_of

    assert flowrun("shadow", str(v2), "--store", target, "--record").exit_code == 0
    new_plan = compile_plan(load_spec(str(v2)))
    shown = assess(store, new_plan).shadow
    assert shown is not None and shown["summary"]["decisions_changed"] == 1
    assert shown["changed_runs"] == [ids["refund_granted"]]
    assert assess(store, plan_of("support_refund")).shadow is None


def test_shadow_bad_input(store: Store, target: str, tmp_path: Path) -> None:
    spec = str(SPECS / "support_refund.yaml")
    res = flowrun("shadow", spec, "--store", target, "--runs", "colour=blue")
    assert res.exit_code == 2 and "--runs: cannot read 'colour=blue'" in res.output
    res = flowrun("shadow", spec, "--store", target)
    assert res.exit_code == 2 and "no recorded run" in res.output
    res = flowrun("shadow", spec, "--store", str(tmp_path / "none.db"))
    assert res.exit_code == 2 and "no run store" in res.output


def _refunds(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as c:
        return int(c.execute("SELECT COUNT(*) FROM refunds").fetchone()[0])
