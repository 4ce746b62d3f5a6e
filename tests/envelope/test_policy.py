"""Policies before every tool call: CEL rules and Cedar, deny overrides allow, defaults per effect."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.policy import request
from tests.envelope.conftest import DurableMemory, Traced, plan_of, run

ROOT = Path(__file__).resolve().parents[2]

FLOW = """
nodes:
  src: {tool: read, args: {key: "a"}}
  ok: {gate: [{check: "nodes.src.output.amount < 100.0", message: small}]}
  pay_it:
    tool: pay
    needs: [ok]
    args: {to: "${{ inputs.to }}", amount: "${{ nodes.src.output.amount }}"}
"""


def _decide(policies: str, tool: str = "pay", **req: object) -> tuple[str, str]:
    plan = plan_of(policies + FLOW)
    effect = plan.loaded.spec.tools[tool].effect
    d = plan.policy.decide(
        request(tool=tool, effect=effect, **req),  # type: ignore[arg-type]
        required_scopes=plan.loaded.spec.tools[tool].scopes,
    )
    return d.effect, d.rule


def test_writes_are_denied_unless_a_rule_allows_reads_allowed_unless_denied() -> None:
    assert _decide("", scopes=["payments"]) == ("deny", "default")
    assert _decide("", tool="read") == ("allow", "default")
    assert _decide("policy_default: {write: allow}\n", scopes=["payments"]) == ("allow", "default")
    assert _decide("policy_default: {read: deny}\n", tool="read") == ("deny", "default")


def test_deny_overrides_allow_whatever_the_order() -> None:
    policies = """policies:
  - {id: allow-pay, when: 'tool == "pay"', effect: allow}
  - {id: big, when: 'tool == "pay" && args.amount > 50.0', effect: deny, reason: too big}
  - {id: medium, when: 'tool == "pay" && args.amount > 20.0', effect: require_approval}
"""
    s = ["payments"]
    assert _decide(policies, args={"amount": 10.0}, scopes=s) == ("allow", "allow-pay")
    assert _decide(policies, args={"amount": 30.0}, scopes=s) == ("require_approval", "medium")
    assert _decide(policies, args={"amount": 80.0}, scopes=s) == ("deny", "big")


def test_scopes_are_required_before_any_rule() -> None:
    policies = "policies:\n  - {id: all, when: 'true', effect: allow}\n"
    assert _decide(policies, scopes=[]) == ("deny", "missing-scope")
    assert _decide(policies, scopes=["payments"]) == ("allow", "all")


def test_a_failing_condition_fails_closed_for_deny_and_is_ignored_for_allow() -> None:
    policies = """policies:
  - {id: needs-field, when: 'args.missing > 1', effect: deny}
  - {id: bad-allow, when: 'args.missing == 1', effect: allow}
"""
    effect, rule = _decide(policies, args={"amount": 1.0}, scopes=["payments"])
    assert (effect, rule) == ("deny", "needs-field")
    only_allow = "policies:\n  - {id: bad-allow, when: 'args.missing == 1', effect: allow}\n"
    assert _decide(only_allow, args={}, scopes=["payments"]) == ("deny", "default")


def test_request_fields_are_all_readable(tmp_path: Path) -> None:
    policies = """policies:
  - id: everything
    when: >-
      actor == "ops" && tenant == "acme" && workflow == "pay-flow" && node == "pay_it" &&
      effect == "write" && "payments" in scopes && classification == "" &&
      destination == "" && size(now) > 0 && "amount" in tainted && inputs.to == "bob"
    effect: allow
"""
    req = dict(
        args={"amount": 1.0}, actor="ops", tenant="acme", workflow="pay-flow", node="pay_it",
        scopes=["payments"], now="2026-01-01T00:00:00Z", tainted=["amount"], inputs={"to": "bob"},
    )  # fmt: skip
    assert _decide(policies, **req) == ("allow", "everything")


def test_unknown_request_field_is_a_compile_error() -> None:
    with pytest.raises(SpecError) as e:
        plan_of("policies:\n  - {id: x, when: 'usr == \"a\"', effect: deny}\n" + FLOW)
    assert [d.rule for d in e.value.diagnostics] == ["unknown-name"]


CEDAR = """@id("cap")
forbid(principal, action == Action::"pay", resource)
when { context.args.amount.greaterThan(decimal("50.0")) };

@id("ops-pay")
permit(principal == Actor::"ops", action == Action::"pay", resource);

@id("no-mallory")
forbid(principal == Actor::"mallory", action, resource);
"""


def _cedar_plan(tmp_path: Path, policies: str = "") -> object:
    (tmp_path / "pay.cedar").write_text(CEDAR)
    return plan_of("policy_files: [pay.cedar]\n" + policies + FLOW, tmp_path / "spec.yaml")


def test_cedar_permits_and_forbids_by_id(tmp_path: Path) -> None:
    plan = _cedar_plan(tmp_path)

    def decide(actor: str, amount: float) -> tuple[str, str]:
        d = plan.policy.decide(  # type: ignore[attr-defined]
            request(
                tool="pay",
                effect="write",
                actor=actor,
                args={"amount": amount},
                scopes=["payments"],
            ),
            required_scopes=["payments"],
        )
        return d.effect, d.rule

    assert decide("ops", 20.0) == ("allow", "cedar:ops-pay")
    assert decide("ops", 80.0) == ("deny", "cedar:cap")
    assert decide("someone", 20.0) == ("deny", "default")  # no permit: Cedar has no opinion
    assert decide("mallory", 1.0) == ("deny", "cedar:no-mallory")


def test_any_deny_wins_between_cel_and_cedar(tmp_path: Path) -> None:
    cel_allows = "policies:\n  - {id: cel-allow, when: 'true', effect: allow}\n"
    plan = _cedar_plan(tmp_path, cel_allows)
    d = plan.policy.decide(  # type: ignore[attr-defined]
        request(
            tool="pay", effect="write", actor="mallory", args={"amount": 1.0}, scopes=["payments"]
        ),
        required_scopes=["payments"],
    )
    assert (d.effect, d.rule) == ("deny", "cedar:no-mallory")


def test_a_broken_cedar_file_is_a_compile_error(tmp_path: Path) -> None:
    (tmp_path / "pay.cedar").write_text("permit(principal, action, resource) when {")
    with pytest.raises(SpecError) as e:
        plan_of("policy_files: [pay.cedar]\n" + FLOW, tmp_path / "spec.yaml")
    assert [d.rule for d in e.value.diagnostics] == ["cedar-syntax"]


ALLOW = (
    "policies:\n  - {id: pay-ok, when: 'tool == \"pay\" && args.amount < 50.0', effect: allow}\n"
)


def test_denied_call_ends_the_node_denied_and_follows_on_deny() -> None:
    halt = run(plan_of(FLOW), {"to": "bob"}, live=True, services=DurableMemory())
    assert halt.status == "denied" and halt.nodes["pay_it"].status == "denied"
    assert "policy 'default' denied 'pay'" in (halt.reason or "")
    assert halt.nodes["pay_it"].detail["policy"][0]["rule"] == "default"
    escalate = FLOW.replace("    needs: [ok]\n", "    needs: [ok]\n    on_deny: escalate\n")
    assert run(plan_of(escalate), {"to": "bob"}).status == "escalated"
    skip = FLOW.replace("    needs: [ok]\n", "    needs: [ok]\n    on_deny: skip\n") + (
        "  after: {tool: read, needs: [pay_it], args: {key: b}}\n"
        "  other: {tool: read, needs: [ok], args: {key: c}}\n"
    )
    result = run(plan_of(skip), {"to": "bob"})
    assert result.status == "succeeded"
    assert result.nodes["after"].status == "skipped" and result.nodes["other"].status == "succeeded"


def test_require_approval_parks_the_call_until_approved() -> None:
    ask = '  - {id: ask, when: \'tool == "pay" && args.to != "bob"\', effect: require_approval}\n'
    policies = ALLOW + ask
    plan = plan_of(policies + FLOW)
    svc = DurableMemory()
    first = run(plan, {"to": "eve"}, live=True, services=svc)
    assert first.status == "waiting" and first.nodes["pay_it"].status == "waiting"
    assert "needs approval" in (first.reason or "")
    svc.approval_decide(first.run_id, "pay_it", status="approved", by="lead")
    # a resumed run sees the decision (same services, same run id)
    import asyncio

    from runner.engine.context import Envelope
    from runner.engine.run import execute

    done = asyncio.run(
        execute(
            plan, {"to": "eve"}, services=svc, run_id=first.run_id,
            envelope=Envelope(live=True, scopes=("payments",), actor="ops"),
            telemetry=Traced(),
        )
    )  # fmt: skip
    assert done.status == "succeeded" and done.nodes["pay_it"].detail["approved_by"] == "lead"


def test_policy_test_command(tmp_path: Path) -> None:
    cases = ROOT / "examples" / "policies" / "support_refund.cases.yaml"
    ok = subprocess.run(
        [sys.executable, "-m", "runner.cli", "policy", "test", "specs/support_refund.yaml", "--cases", str(cases)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().splitlines()[-1] == "8 passed, 0 failed"
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "- name: the cap allows big refunds\n"
        "  request: {tool: issue_refund, args: {amount_usd: 90.0, order_id: O-1, reason: x},"
        " scopes: ['refunds:write']}\n"
        "  expect: {effect: allow}\n"
    )
    bad = subprocess.run(
        [sys.executable, "-m", "runner.cli", "policy", "test", "specs/support_refund.yaml", "--cases", str(wrong), "--output", "json"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 1
    out = json.loads(bad.stdout)
    assert out["failed"] == 1 and out["cases"][0]["got"]["rule"] == "refund-cap"
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "- name: x\n  request: {tool: issue_refund, args: {}}\n  expect: {effect: maybe}\n"
    )
    err = subprocess.run(
        [sys.executable, "-m", "runner.cli", "policy", "test", "specs/support_refund.yaml", "--cases", str(broken)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert err.returncode == 2 and "broken.yaml:3:" in err.stderr and "Traceback" not in err.stderr


def test_a_denied_call_inside_a_map_ends_the_map_and_the_run_denied() -> None:
    body = """
policies:
  - {id: big, when: 'tool == "pay" && args.amount > 50.0', effect: deny, reason: too big}
  - {id: pay-ok, when: 'tool == "pay"', effect: allow}
nodes:
  each:
    map:
      over: "${{ [10.0, 80.0, 20.0] }}"
      as: amount
      max_concurrency: 1
      node: {tool: pay, ungated: the policies bound each payment, args: {to: "${{ inputs.to }}", amount: "${{ amount }}"}}
"""
    result = run(plan_of(body), {"to": "bob"}, live=True, services=DurableMemory())
    assert result.status == "denied", result.reason
    assert result.nodes["each"].status == "denied"
    assert "item 1" in (result.reason or "") and "too big" in (result.reason or "")


CHILD = """apiVersion: flowrun/v1
kind: Workflow
metadata: {name: child-pay}
inputs: {type: object, properties: {amount: {type: number}}, required: [amount]}
tools:
  pay:
    impl: tests.envelope.etools:pay
    preview: tests.envelope.etools:plan_pay
    effect: write
policies:
  - {id: child-allows-everything, when: 'true', effect: allow}
nodes:
  ok: {gate: [{check: "inputs.amount < 1000.0", message: sane}]}
  pay_it:
    tool: pay
    needs: [ok]
    args: {to: mallory, amount: "${{ inputs.amount }}"}
outputs:
  paid: "${{ nodes.pay_it.output }}"
"""


def test_a_subflow_cannot_widen_what_its_parent_allows(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text(CHILD, encoding="utf-8")
    parent = """
policies:
  - {id: no-mallory, when: 'args.to == "mallory"', effect: deny, reason: mallory is blocked}
  - {id: small-payments, when: 'tool == "pay" && args.amount <= 50.0', effect: allow}
nodes:
  sub:
    flow: child.yaml
    inputs: {amount: "${{ inputs.amount }}"}
"""
    plan = plan_of(parent, tmp_path / "parent.yaml")
    result = run(plan, {"amount": 20.0}, live=True, services=DurableMemory())
    assert result.status == "denied", result.reason
    assert "no-mallory" in (result.reason or "") and "'pay-flow'" in (result.reason or "")
    decisions = result.nodes["sub"].items[1].detail["policy"]  # type: ignore[index]
    assert [(d.get("workflow"), d["rule"]) for d in decisions] == [
        (None, "child-allows-everything"),
        ("pay-flow", "no-mallory"),
    ]
    from tests.envelope.etools import logs

    assert [e for e in logs() if e["kind"] == "pay"] == []


def test_a_subflow_write_needs_an_allow_from_its_parent_too(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text(CHILD, encoding="utf-8")
    parent = """
policies:
  - {id: small-payments, when: 'tool == "pay" && args.amount <= 50.0', effect: allow}
nodes:
  sub:
    flow: child.yaml
    inputs: {amount: "${{ inputs.amount }}"}
"""
    plan = plan_of(parent, tmp_path / "parent.yaml")
    small = run(plan, {"amount": 20.0}, live=True, services=DurableMemory())
    assert small.status == "succeeded", small.reason
    big = run(plan, {"amount": 80.0}, live=True, services=DurableMemory())
    assert big.status == "denied"
    assert "policy 'default' denied 'pay'" in (big.reason or "")
    from tests.envelope.etools import logs

    assert [e["amount"] for e in logs() if e["kind"] == "pay"] == [20.0]
