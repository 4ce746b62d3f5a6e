"""`flowrun readiness`: five gates from a seeded history; one changed input flips one gate."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.runs.readiness import GATES, assess, wilson_lower, write_tools
from runner.store import Store
from tests.readiness.conftest import (
    REFERENCE,
    approval,
    new_run,
    plan_of,
    record_eval,
    seed,
    undo,
    write,
)


def gates(store: Store, plan: Any) -> dict[str, dict[str, Any]]:
    report = assess(store, plan, now=time.time() + 1)
    return {g.name: g.to_json() for g in report.gates}


def only_changed(before: dict[str, Any], after: dict[str, Any], gate: str) -> None:
    assert after[gate]["status"] == "fail", after[gate]
    assert before[gate]["status"] == "pass", before[gate]
    for name in GATES:
        if name != gate:
            assert after[name] == before[name], name


def test_wilson_lower_bound() -> None:
    assert wilson_lower(0, 10) == 0.0
    assert round(wilson_lower(3, 3), 3) == 0.439
    assert round(wilson_lower(16, 16), 3) == 0.806
    assert wilson_lower(5, 0) == 0.0


@pytest.mark.parametrize("name", REFERENCE)
def test_seeded_history_passes_every_gate_with_numbers(store: Store, name: str) -> None:
    plan = plan_of(name)
    seed(store, plan)
    g = gates(store, plan)
    assert [g[n]["status"] for n in GATES] == ["pass"] * 5, json.dumps(g, indent=1)
    assert g["task_success"]["numbers"]["wilson_lower"] > 0.8
    assert g["cost_control"]["numbers"]["completed_runs"] == 12
    assert g["observability"]["numbers"]["coverage"] == 1.0
    assert g["human_fallback"]["numbers"]["decided"] == 4
    assert g["safety"]["numbers"]["write_decisions"] == 12 * len(write_tools(plan))


@pytest.mark.parametrize("name", REFERENCE)
def test_one_input_flips_one_gate(store: Store, name: str) -> None:
    plan = plan_of(name)
    history = seed(store, plan)
    before = gates(store, plan)

    # a failing eval: 15 of 25 cases (the adversarial ones still hold)
    record_eval(store, plan, passes=15)
    after = gates(store, plan)
    only_changed(before, after, "task_success")
    assert "fix the failing cases" in " ".join(after["task_success"]["remedy"])
    for _ in range(3):  # stable again
        record_eval(store, plan)
    assert gates(store, plan) == before | {"task_success": gates(store, plan)["task_success"]}

    # a slow approval: 10 hours against the 4 h SLA, on a run already in the window
    base = gates(store, plan)
    for _ in range(3):
        approval(store, history[0][0], waited_s=36000.0)
    after = gates(store, plan)
    only_changed(base, after, "human_fallback")
    assert after["human_fallback"]["numbers"]["wait_p95_s"] >= 36000.0


@pytest.mark.parametrize("name", REFERENCE)
def test_undo_spike_flips_human_fallback(store: Store, name: str) -> None:
    plan = plan_of(name)
    history = seed(store, plan)
    before = gates(store, plan)
    for run_id, tool, key in history[:4]:
        undo(store, run_id, key, tool)
    after = gates(store, plan)
    only_changed(before, after, "human_fallback")
    assert after["human_fallback"]["numbers"]["undone"] == 4
    assert any(
        c["name"] == "undo_rate" and c["ok"] is False for c in after["human_fallback"]["checks"]
    )


def test_cost_safety_and_observability_flip_alone(store: Store) -> None:
    plan = plan_of("support_refund")
    history = seed(store, plan)
    tool = write_tools(plan)[0]

    before = gates(store, plan)
    new_run(store, plan, cost=5.0)  # one task far over budget.max_usd
    after = gates(store, plan)
    only_changed(before, after, "cost_control")
    assert after["cost_control"]["numbers"]["max_usd"] == 5.0

    before = after
    run_id = history[0][0]
    write(store, run_id, tool, traced=False, status="failed", decision=None)  # untraced
    after = gates(store, plan)
    only_changed(before, after, "observability")
    assert after["observability"]["numbers"]["untraced_runs"] == [run_id]

    before = after
    for _ in range(12):
        write(store, run_id, tool, decision="deny")
    after = gates(store, plan)
    only_changed(before, after, "safety")
    assert after["safety"]["numbers"]["write_denials"] == 12


def test_not_enough_evidence_is_not_a_pass(store: Store) -> None:
    plan = plan_of("support_refund")
    report = assess(store, plan)
    assert report.status == "not_enough_evidence"
    assert {g.name: g.status for g in report.gates} == dict.fromkeys(GATES, "not_enough_evidence")
    # an eval recorded for another version of the spec is no evidence for this one
    for _ in range(3):
        record_eval(store, plan, digest="0" * 64)
    g = assess(store, plan).gate("task_success")
    assert g.status == "not_enough_evidence" and "another version" in g.missing[0]


def test_tenant_and_window_filter_the_evidence(store: Store) -> None:
    plan = plan_of("support_refund")
    seed(store, plan)
    for _ in range(3):
        new_run(store, plan, cost=5.0, tenant="beta")
    assert assess(store, plan).gate("cost_control").status == "fail"
    acme = assess(store, plan, tenant="acme").gate("cost_control")
    assert acme.status == "not_enough_evidence" and acme.numbers["completed_runs"] == 0
    future = assess(store, plan, since=time.time() + 60)
    assert future.gate("cost_control").numbers["runs"] == 0


def _flowrun(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_outputs_and_exit_codes(store: Store, target: str) -> None:
    plan = plan_of("incident_triage")
    spec = str(plan.loaded.source.path)
    empty = _flowrun("readiness", spec, "--store", target)
    assert empty.exit_code == 3, empty.output
    for name in REFERENCE:  # every reference workflow prints its five gates with numbers
        p = plan_of(name)
        seed(store, p)
        ok = _flowrun("readiness", str(p.loaded.source.path), "--store", target)
        assert ok.exit_code == 0, ok.output
        for title in ("task success", "cost control", "safety", "observability", "human fallback"):
            assert f"PASS                 {title}" in ok.output, ok.output
        assert "Wilson lower bound" in ok.output and "p95 cost per completed task" in ok.output
        assert "policy unit cases" in ok.output and "writes have a traced call record" in ok.output
        assert "approval wait p95" in ok.output and "live writes undone" in ok.output
    as_json = json.loads(_flowrun("readiness", spec, "--store", target, "--output", "json").output)
    assert as_json["status"] == "pass" and len(as_json["gates"]) == 5
    md = _flowrun("readiness", spec, "--store", target, "--output", "markdown").output
    assert md.startswith("### Readiness of `incident-triage`") and md.count("\n| ") >= 6
    record_eval(store, plan, passes=10)
    failing = _flowrun("readiness", spec, "--store", target, "--output", "markdown")
    assert failing.exit_code == 1 and "fix the failing cases" in failing.output


def test_cli_bad_input_is_one_line(tmp_path: Any) -> None:
    spec = str(plan_of("support_refund").loaded.source.path)
    missing = _flowrun("readiness", spec, "--store", str(tmp_path / "none.db"))
    assert missing.exit_code == 2 and "no run store" in missing.output
    assert not (tmp_path / "none.db").exists()
    since = _flowrun("readiness", spec, "--since", "yesterday-ish")
    assert since.exit_code == 2 and "--since" in since.output and "Traceback" not in since.output
    bad_spec = tmp_path / "bad.yaml"
    (tmp_path / "flowrun.toml").write_text("")
    bad_spec.write_text(
        "apiVersion: flowrun/v1\nkind: Workflow\nmetadata: {name: bad}\n"
        "tools:\n  get: {impl: tests.envelope.etools:read}\n"
        "nodes:\n  a: {tool: get, args: {key: a}}\n"
        "readiness: {cost: {min_runs: 0}, human_fallback: {approval_sla: forever}}\n"
    )
    res = _flowrun("readiness", str(bad_spec), "--store", str(tmp_path / "x.db"))
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"{bad_spec}:8:30: invalid-value: 'min_runs' in readiness" in res.output
    assert "invalid duration 'forever'" in res.output
    assert not (tmp_path / "x.db").exists()


def test_failing_policy_case_flips_safety_alone(store: Store) -> None:
    from runner.runs.readiness import PolicyCases

    plan = plan_of("support_refund")
    seed(store, plan)
    now = time.time() + 1
    ok = PolicyCases(path="cases.yaml", passed=8, failed=[])
    bad = PolicyCases(path="cases.yaml", passed=7, failed=["refund-over-cap-denied"])
    before = {g.name: g.to_json() for g in assess(store, plan, now=now, policy_cases=ok).gates}
    after = {g.name: g.to_json() for g in assess(store, plan, now=now, policy_cases=bad).gates}
    only_changed(before, after, "safety")
    assert "refund-over-cap-denied" in " ".join(c["text"] for c in after["safety"]["checks"])


def test_reference_specs_name_policy_cases_that_pass() -> None:
    from runner.readiness_cli import policy_cases_of

    for name in REFERENCE:
        cases = policy_cases_of(plan_of(name))
        assert cases is not None and cases.passed > 0 and cases.failed == [], name


@pytest.mark.slow
def test_eval_record_is_readiness_evidence(store: Store, target: str) -> None:
    spec = str(plan_of("support_refund").loaded.source.path)
    cases = str(Path(spec).parents[1] / "examples" / "evals" / "support_refund")
    res = _flowrun("eval", spec, "--cases", cases, "--record", "--store", target)
    assert res.exit_code == 0, res.output
    assert "results recorded in" in res.output
    [row] = store.eval_results("support-refund")
    assert row["passed"] and row["summary"]["cases"] == 25
    assert row["summary"]["by_kind"]["adversarial"] == [7, 7]
    g = assess(store, plan_of("support_refund")).gate("task_success")
    assert g.numbers["cases"] == 25 and g.numbers["same_spec"] is True
    assert g.status == "not_enough_evidence"  # one result: stability needs three


def test_a_workflow_without_write_tools_has_nothing_to_trace_or_undo(
    store: Store, tmp_path: Path
) -> None:
    from runner.plan.compile import compile_plan
    from runner.spec import load_spec

    spec = tmp_path / "read_only.yaml"
    spec.write_text(
        "apiVersion: flowrun/v1\nkind: Workflow\nmetadata: {name: read-only}\n"
        "tools:\n  get: {impl: tests.envelope.etools:read}\n"
        "nodes:\n  a: {tool: get, args: {key: a}}\n"
    )
    (tmp_path / "flowrun.toml").write_text("")
    plan = compile_plan(load_spec(str(spec)))
    report = assess(store, plan)
    assert report.gate("observability").status == "pass"
    assert report.gate("human_fallback").status == "pass"
    assert report.gate("cost_control").status == "fail"  # no budget: nothing bounds the cost
    assert report.gate("task_success").status == "not_enough_evidence"
