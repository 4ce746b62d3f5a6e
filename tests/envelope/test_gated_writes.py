"""The static proof that every write sits behind a gate or approval, on several graph shapes."""

from __future__ import annotations

import pytest

from runner.errors import SpecError
from tests.envelope.conftest import plan_of

ALLOW = "policy_default: {write: allow}\n"


def _problems(body: str) -> list[tuple[str, str]]:
    try:
        plan = plan_of(ALLOW + body)
    except SpecError as e:
        return [(d.rule, d.message) for d in e.diagnostics]
    return [
        (w.rule, w.message) for w in plan.warnings if w.rule in ("ungated-write", "tainted-write")
    ]


def test_diamond_with_the_gate_on_one_side_join_all_is_gated_join_any_is_not() -> None:
    body = """nodes:
  a: {tool: read, args: {key: a}}
  left: {gate: [{check: "nodes.a.output.amount > 0.0", message: m}]}
  right: {tool: read, args: {key: "${{ nodes.a.output.key }}"}}
  w: {tool: pay, needs: [left, right], args: {to: x, amount: 1.0}}
"""
    assert _problems(body) == []
    problems = _problems(body.replace("needs: [left, right]", "needs: [left, right], join: any"))
    assert problems == [
        (
            "ungated-write",
            "write node 'w' can run without passing a gate or approval: a -> right -> w",
        )
    ]


def test_switch_branch_without_a_gate() -> None:
    body = """nodes:
  a: {tool: read, args: {key: a}}
  route:
    switch:
      cases: [{when: "nodes.a.output.amount > 10.0", then: checked}]
      default: fast
  checked: {gate: [{check: "nodes.a.output.amount < 50.0", message: m}]}
  w_checked: {tool: pay, needs: [checked], args: {to: x, amount: 1.0}}
  fast: {tool: pay, args: {to: y, amount: 2.0}}
"""
    assert [p[0] for p in _problems(body)] == ["ungated-write"]
    assert "'fast'" in _problems(body)[0][1] and "route -> fast" in _problems(body)[0][1]


def test_map_of_writes_needs_a_gate_too() -> None:
    body = """inputs: {type: object, properties: {to: {type: array, items: {type: string}}}}
nodes:
  each:
    map:
      over: "${{ inputs.to }}"
      node: {tool: pay, args: {to: "${{ item }}", amount: 1.0}}
"""
    assert [p[0] for p in _problems(body)] == ["ungated-write"]
    gated = body.replace(
        "nodes:\n", "nodes:\n  ok: {gate: [{check: 'size(inputs.to) < 5', message: m}]}\n"
    ).replace("  each:\n    map:", "  each:\n    needs: [ok]\n    map:")
    assert _problems(gated) == []


def test_approval_counts_as_a_gate_and_ungated_is_only_a_warning() -> None:
    approved = """nodes:
  ask: {approval: {summary: pay?}}
  w: {tool: pay, needs: [ask], args: {to: x, amount: 1.0}}
"""
    assert _problems(approved) == []
    opted_out = 'nodes:\n  w: {tool: pay, ungated: "a fixed internal transfer", args: {to: x, amount: 1.0}}\n'
    plan = plan_of(ALLOW + opted_out)
    assert [(w.rule, w.severity) for w in plan.warnings] == [("ungated-write", "warning")]


@pytest.mark.parametrize(
    ("check", "ok"),
    [
        ("nodes.src.output.amount < 50.0", False),  # checks the amount, not the recipient
        ("nodes.src.output.amount < 50.0 && nodes.src.output.key == 'a'", True),
    ],
)
def test_tainted_arguments_need_a_gate_that_checks_them(check: str, ok: bool) -> None:
    body = f"""nodes:
  src: {{tool: untrusted_read, args: {{key: a}}}}
  g: {{gate: [{{check: "{check}", message: m}}]}}
  w: {{tool: pay, needs: [g], args: {{to: "${{{{ nodes.src.output.key }}}}", amount: "${{{{ nodes.src.output.amount }}}}"}}}}
"""
    problems = _problems(body)
    assert (problems == []) is ok, problems
    if not ok:
        assert problems[0][0] == "tainted-write" and "argument 'to'" in problems[0][1]


LOOP = """nodes:
  a: {tool: read, args: {key: a}}
  repeat:
    needs: [a]
    loop:
      max_iterations: 3
      until: "nodes.w.status == 'succeeded'"
      body:
        CHECK
        w: {tool: pay, NEEDS args: {to: x, amount: 1.0}}
"""


def test_a_write_inside_a_loop_body_needs_a_gate_too() -> None:
    ungated = LOOP.replace("CHECK\n", "").replace("NEEDS ", "")
    assert _problems(ungated) == [
        (
            "ungated-write",
            "loop node 'repeat' (write node 'w' in its body) can run without passing a gate or "
            "approval: a -> repeat",
        )
    ]
    gate_in_body = LOOP.replace(
        "CHECK", 'ok: {gate: [{check: "nodes.a.output.amount < 50.0", message: m}]}'
    ).replace("NEEDS ", "needs: [ok], ")
    assert _problems(gate_in_body) == []
    gate_before_loop = ungated.replace("needs: [a]", "needs: [ok]").replace(
        "nodes:\n", 'nodes:\n  ok: {gate: [{check: "nodes.a.output.amount < 50.0", message: m}]}\n'
    )
    assert _problems(gate_before_loop) == []
    stated = LOOP.replace("CHECK\n", "").replace("NEEDS ", "ungated: idempotent and tiny, ")
    assert _problems(stated) == []


def test_untrusted_data_reaching_a_write_in_a_loop_body_must_be_checked() -> None:
    body = """nodes:
  a: {tool: untrusted_read, args: {key: a}}
  ok: {gate: [{check: "nodes.a.output.amount < 50.0", message: m}]}
  repeat:
    needs: [ok]
    loop:
      max_iterations: 2
      until: "nodes.w.status == 'succeeded'"
      body:
        w: {tool: pay, args: {to: "${{ nodes.a.output.text }}", amount: 1.0}}
"""
    assert _problems(body) == [
        (
            "tainted-write",
            "argument 'to' of write node 'repeat.w' comes from untrusted data "
            "(nodes.a.output.text) that no gate before it checks: a -> repeat.w.args.to",
        )
    ]
    checked_in_body = body.replace(
        "      body:\n",
        "      body:\n        vet: {gate: [{check: \"nodes.a.output.text in ['bob', 'carol']\", message: m}]}\n",
    ).replace("w: {tool: pay, args", "w: {tool: pay, needs: [vet], args")
    assert _problems(checked_in_body) == []
    checked_outside = body.replace(
        'check: "nodes.a.output.amount < 50.0"',
        "check: \"nodes.a.output.amount < 50.0 && nodes.a.output.text == 'bob'\"",
    )
    assert _problems(checked_outside) == []
