"""Each hole in the taint proof, written as the attack: a spec that tries it, and a run.

On the old compiler every spec here validated (child inputs counted as trusted, a trusted tool
returned trusted output whatever its arguments, any check that mentioned a value cleared it,
map items of tool nodes and earlier loop passes were not followed), and the live run paid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.plan.compile import compile_plan
from runner.spec import load_spec_text
from tests.envelope.conftest import HEADER, DurableMemory, plan_of, run
from tests.envelope.etools import logs

ROOT = Path(__file__).resolve().parents[2]
ALLOW = "policy_default: {write: allow}\n"


def _problems(
    body: str, path: Path | None = None, tools: str = ""
) -> list[tuple[str, str, str | None]]:
    """The tainted-write diagnostics of a spec (rule, message, hint); [] when it validates.

    `tools`: contracts added to the envelope's (tests/envelope/conftest.py HEADER)."""
    where = str(path or Path(__file__).parent / "inline.yaml")
    try:
        compile_plan(load_spec_text(HEADER + tools + ALLOW + body, where))
    except SpecError as e:
        other = [d.render() for d in e.diagnostics if d.rule != "tainted-write"]
        assert not other, other  # the attack spec itself is well-formed
        return [(d.rule, d.message, d.hint) for d in e.diagnostics]
    return []


# -- a subflow: the child's inputs carry the parent's taint --------------------------------

CHILD = (
    HEADER.replace("name: pay-flow", "name: pay-child")
    + ALLOW
    + """inputs:
  type: object
  properties: {to: {type: string}, amount: {type: number}}
  required: [to, amount]
nodes:
  ok:
    gate: [{check: "CHECK", message: too much}]
  pay:
    tool: pay
    needs: [ok]
    args: {to: "${{ inputs.to }}", amount: "${{ inputs.amount }}"}
outputs:
  paid_to: "${{ nodes.pay.output.to }}"
  echoed: "${{ inputs.to }}"
"""
)

PARENT = """nodes:
  fetch_email: {tool: untrusted_read, args: {key: inbox}}
  summarize: {tool: read, args: {key: "${{ nodes.fetch_email.output.text }}"}}
  child:
    flow: child.yaml
    inputs: {to: "${{ nodes.summarize.output.key }}", amount: 5.0}
"""


def _child(tmp_path: Path, check: str = "inputs.amount <= 10.0") -> None:
    (tmp_path / "child.yaml").write_text(CHILD.replace("CHECK", check), encoding="utf-8")


def test_untrusted_text_passed_into_a_subflow_that_pays_it_fails_validate(tmp_path: Path) -> None:
    _child(tmp_path)
    problems = _problems(PARENT, tmp_path / "parent.yaml")
    assert len(problems) == 1, problems
    _, message, _ = problems[0]
    assert message.startswith(
        "argument 'to' of write node 'pay' in the subflow of 'child' comes from untrusted data"
        " (inputs.to)"
    )
    assert message.endswith(": fetch_email -> summarize -> child:pay.args.to")


def test_the_subflow_payment_run_live_pays_nothing(tmp_path: Path) -> None:
    _child(tmp_path)
    (tmp_path / "parent.yaml").write_text(HEADER + ALLOW + PARENT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ETOOLS_LOG": os.environ["ETOOLS_LOG"]}
    env["FLOWRUN_STORE"] = str(tmp_path / "runs.db")
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "execute", str(tmp_path / "parent.yaml"),
         "--input-json", "{}", "--live", "--scopes", "payments", "--output", "json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "tainted-write" in proc.stderr and "child:pay.args.to" in proc.stderr
    assert [e for e in logs() if e["kind"] in ("pay", "plan_pay")] == []


def test_a_child_that_checks_its_input_or_a_parent_that_checks_it_validates(
    tmp_path: Path,
) -> None:
    _child(tmp_path, "inputs.amount <= 10.0 && inputs.to in ['alice', 'bob']")
    assert _problems(PARENT, tmp_path / "parent.yaml") == []
    _child(tmp_path)  # the child trusts its input again; the parent pins it before the call
    checked = PARENT.replace(
        "  child:\n",
        "  vet: {gate: [{check: \"nodes.summarize.output.key in ['alice', 'bob']\", message: m}]}\n"
        "  child:\n    needs: [vet]\n",
    )
    assert _problems(checked, tmp_path / "parent.yaml") == []


def test_a_subflow_output_computed_from_untrusted_input_taints_the_parent(
    tmp_path: Path,
) -> None:
    _child(tmp_path, "inputs.amount <= 10.0 && inputs.to in ['alice', 'bob']")
    body = (
        PARENT
        + """  ok: {gate: [{check: "nodes.fetch_email.output.amount < 50.0", message: m}]}
  again:
    tool: pay
    needs: [ok, child]
    args: {to: "${{ nodes.child.output.paid_to }}", amount: 1.0}
"""
    )
    # the child echoes the attacker's text back to its parent, which pays it
    problems = _problems(body, tmp_path / "parent.yaml")
    assert [m.split(": ")[-1] for _, m, _ in problems] == [
        "fetch_email -> summarize -> child -> again.args.to"
    ]


# -- a trusted tool echoes what it was given ----------------------------------------------

LAUNDER = """nodes:
  fetch: {tool: untrusted_read, args: {key: a}}
  echo: {tool: TOOL, args: {key: "${{ nodes.fetch.output.text }}"}}
  ok: {gate: [{check: "nodes.fetch.output.amount < 50.0", message: m}]}
  w: {tool: pay, needs: [ok], args: {to: "${{ nodes.echo.output.key }}", amount: 1.0}}
"""


def test_a_trusted_tool_does_not_launder_its_untrusted_argument() -> None:
    problems = _problems(LAUNDER.replace("TOOL", "read"))
    assert [m.split(": ")[-1] for _, m, _ in problems] == ["fetch -> echo -> w.args.to"]


def test_a_tool_that_states_why_it_sanitizes_returns_trusted_output() -> None:
    tools = (
        "  lookup:\n    impl: tests.envelope.etools:read\n"
        "    sanitizer: returns only our own records for a key\n"
    )
    assert _problems(LAUNDER.replace("TOOL", "lookup"), tools=tools) == []


# -- a check that mentions a value without pinning it ------------------------------------

WEAK = """nodes:
  src: {tool: untrusted_read, args: {key: a}}
  g: {gate: [{check: "CHECK", message: m}]}
  w: {tool: pay, needs: [g], args: {to: "${{ nodes.src.output.key }}", amount: 1.0}}
"""
TO = "nodes.src.output.key"


@pytest.mark.parametrize(
    "check",
    [
        f"size({TO}) > 0",
        f"{TO} != ''",
        f"has(nodes.src.output.key) && size({TO}) < 40",
        f"{TO}.startsWith('acct-')",
        f"{TO} == 'alice' || true",
        f"!({TO} == 'mallory')",
        f"{TO} == nodes.src.output.text",  # compared with the same untrusted result
        f"{TO}.matches('^acct-.*$')",  # anchored, but any text after the prefix
        f"!{TO}.matches('evil')",
        f"{TO}.matches('^alice|bob$')",  # (^alice)|(bob$): 'alice@evil' matches
        f"{TO} == 'a' ? true : true",
    ],
)
def test_a_weak_check_does_not_clear_the_value_and_the_hint_names_it(check: str) -> None:
    problems = _problems(WEAK.replace("CHECK", check))
    assert len(problems) == 1, problems
    _, message, hint = problems[0]
    assert message.endswith(": src -> w.args.to")
    assert hint is not None and "does not clear it" in hint and "gate 'g'" in hint


@pytest.mark.parametrize(
    "check",
    [
        f"{TO} == 'alice'",
        f"'alice' == {TO}",
        f"{TO} in ['alice', 'bob'] && size({TO}) > 0",
        f"({TO} in ['alice', 'bob'])",
        f"nodes.book.output.key.exists(x, x == {TO})",
        f"{TO}.matches('^(alice|bob)$')",
        f"{TO}.matches('^acct-[0-9]{{6}}$')",
        f"{TO} == nodes.book.output.key",
    ],
)
def test_a_check_that_pins_the_value_to_trusted_data_clears_it(check: str) -> None:
    body = WEAK.replace("CHECK", check).replace(
        "  g:", "  book: {tool: read, args: {key: accounts}}\n  g:"
    )
    assert _problems(body) == []


def test_an_approval_without_when_clears_and_one_with_when_does_not() -> None:
    body = (
        WEAK.replace("CHECK", f"size({TO}) > 0")
        .replace("needs: [g]", "needs: [g, ask]")
        .replace(
            "  w:",
            "  ask: {needs: [g], approval: {summary: 'pay {{ nodes.src.output.key }}?'}}\n  w:",
        )
    )
    assert _problems(body) == []
    conditional = body.replace(
        "approval: {summary", "approval: {when: 'nodes.src.output.amount > 10.0', summary"
    )
    assert len(_problems(conditional)) == 1


# -- map items and loop passes --------------------------------------------------------------


def test_map_items_from_untrusted_data_taint_a_tool_map_result() -> None:
    body = """nodes:
  src: {tool: untrusted_read, args: {key: a}}
  each:
    map:
      over: "${{ [nodes.src.output.text] }}"
      node: {tool: read, args: {key: "${{ item }}"}}
  ok: {gate: [{check: "nodes.src.output.amount < 50.0", message: m}]}
  w: {tool: pay, needs: [ok, each], args: {to: "${{ nodes.each.output[0].key }}", amount: 1.0}}
"""
    problems = _problems(body)
    assert [m.split(": ")[-1] for _, m, _ in problems] == ["src -> each -> w.args.to"]


def test_a_map_of_writes_over_a_list_checked_element_by_element_validates() -> None:
    body = """nodes:
  src: {tool: untrusted_read, args: {key: a}}
  names: {llm: m, prompt: "names in {{ nodes.src.output.text }}", output: {type: object, properties: {to: {type: array, items: {type: string}}}, required: [to]}}
  ok: {gate: [{check: "CHECK", message: m}]}
  each:
    needs: [ok]
    map:
      over: "${{ nodes.names.output.to }}"
      node: {tool: pay, args: {to: "${{ item }}", amount: 1.0}}
""".replace("nodes:\n", "models: {m: openai/gpt-4o-mini}\nnodes:\n", 1)
    weak = _problems(body.replace("CHECK", "size(nodes.names.output.to) <= 3"))
    assert [m.split(": ")[-1] for _, m, _ in weak] == ["src -> names -> each.args.to"]
    strong = body.replace("CHECK", "nodes.names.output.to.all(t, t in ['alice', 'bob'])")
    assert _problems(strong) == []


LOOP = """nodes:
  repeat:
    loop:
      max_iterations: 3
      until: "nodes.w.status == 'succeeded'"
      body:
        ok: {gate: [{check: "size(previous.f.output.text) < 100", message: m}]}
        w: {tool: pay, needs: [ok], args: {to: "${{ previous.f.output.text }}", amount: 1.0}}
        f: {tool: untrusted_read, needs: [w], args: {key: a}}
"""


def test_untrusted_data_of_an_earlier_loop_pass_reaching_a_write_fails() -> None:
    problems = _problems(LOOP)
    assert [m.split(": ")[-1] for _, m, _ in problems] == ["repeat.f -> repeat.w.args.to"]
    checked = LOOP.replace(
        "size(previous.f.output.text) < 100", "previous.f.output.text in ['alice', 'bob']"
    )
    assert _problems(checked) == []


def test_a_loop_whose_body_reads_untrusted_data_has_untrusted_output() -> None:
    body = """nodes:
  repeat:
    loop:
      max_iterations: 2
      until: "true"
      body:
        f: {tool: untrusted_read, args: {key: a}}
  ok: {gate: [{check: "nodes.repeat.output.iterations < 5", message: m}]}
  w: {tool: pay, needs: [ok, repeat], args: {to: "${{ nodes.repeat.output.f.output.text }}", amount: 1.0}}
"""
    problems = _problems(body)
    assert [m.split(": ")[-1] for _, m, _ in problems] == ["repeat.f -> repeat -> w.args.to"]


def test_a_checked_write_still_runs_live() -> None:
    """The checks are not a blanket refusal: a pinned recipient is paid when run live."""
    body = WEAK.replace("CHECK", f"{TO} in ['a', 'b']")
    plan = plan_of(ALLOW + body)
    result = run(plan, {}, live=True, services=DurableMemory())
    assert result.status in ("succeeded", "escalated"), result.reason
    paid = [e for e in logs() if e["kind"] == "pay"]
    assert all(e["to"] in ("a", "b") for e in paid)
    assert json.dumps(paid)  # the log is the envelope's record of real calls


def test_a_write_stated_ungated_still_may_not_take_untrusted_arguments() -> None:
    """`ungated:` says a write needs no gate; it does not make the attacker's text trusted."""
    body = """nodes:
  src: {tool: untrusted_read, args: {key: a}}
  w: {tool: pay, ungated: a fixed internal transfer, args: {to: "${{ nodes.src.output.key }}", amount: 1.0}}
"""
    problems = _problems(body)
    assert [m.split(": ")[-1] for _, m, _ in problems] == ["src -> w.args.to"]


def test_a_childs_policy_sees_the_parents_untrusted_argument_as_tainted(tmp_path: Path) -> None:
    """At run time the child's write carries the taint too, so a policy on `tainted` holds."""
    child = CHILD.replace("CHECK", "inputs.amount <= 10.0 && inputs.to in ['alice', 'bob']")
    child = child.replace(
        ALLOW,
        ALLOW + "policies:\n  - {id: no-untrusted-payee, when: '\"to\" in tainted',"
        " effect: deny, reason: the payee came from untrusted text}\n",
    )
    (tmp_path / "child.yaml").write_text(child, encoding="utf-8")
    parent = """nodes:
  fetch_email: {tool: untrusted_read, args: {key: alice}}
  child:
    flow: child.yaml
    inputs: {to: "${{ nodes.fetch_email.output.key }}", amount: 5.0}
"""
    plan = plan_of(ALLOW + parent, tmp_path / "parent.yaml")
    result = run(plan, {}, live=True, services=DurableMemory())
    assert result.status == "denied", result.reason
    assert "no-untrusted-payee" in (result.reason or "")
    assert [e for e in logs() if e["kind"] == "pay"] == []
