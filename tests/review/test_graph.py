"""`flowrun graph`: kinds drawn apart, conditions on edges, routes per profile, guarded writes."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

from runner.graph import from_plan
from runner.plan.compile import compile_plan
from runner.spec import load_spec, load_spec_text
from tests.review.conftest import PAIRS, REFERENCE


def test_mermaid_of_reference_spec(flowrun: click.Group, runner: CliRunner) -> None:
    r = runner.invoke(flowrun, ["graph", str(REFERENCE)])
    assert r.exit_code == 0, r.stderr
    out = r.stdout
    assert out.startswith("flowchart TD\n")
    assert 'n_intake(["intake<br/>tool get_ticket (read)"])' in out  # read tool: stadium
    assert 'n_classify("classify<br/>llm small: openai/gpt-4o-mini")' in out  # llm: rounded
    assert 'n_verify{{"verify<br/>gate"}}' in out  # gate: hexagon
    assert 'n_act[["act<br/>tool issue_refund (write)"]]' in out  # write: subroutine
    assert 'n_route{"route<br/>switch"}' in out  # switch: rhombus
    assert 'n_route -->|"default"| n_answer' in out
    assert 'n_route -->|"nodes.classify.output.category == #quot;refund#quot; #amp;#amp;' in out
    assert "class n_verify,n_approve guard" in out and "class n_act,n_log write" in out
    assert "n_approve" in out  # the approval node is drawn


def test_profile_changes_the_resolved_model(flowrun: click.Group, runner: CliRunner) -> None:
    default = runner.invoke(flowrun, ["graph", str(REFERENCE), "--format", "text"]).stdout
    ci = runner.invoke(
        flowrun, ["graph", str(REFERENCE), "--format", "text", "--profile", "ci"]
    ).stdout
    assert "llm strong: anthropic/claude-sonnet-4-5" in default
    assert "llm strong: openai/gpt-4o-mini" in ci
    assert "act: guarded by approve, verify" in ci and "log: guarded by approve, verify" in ci


def test_dot_output(flowrun: click.Group, runner: CliRunner) -> None:
    r = runner.invoke(flowrun, ["graph", str(REFERENCE), "--format", "dot"])
    assert r.exit_code == 0
    assert r.stdout.startswith('digraph "support-refund" {')
    assert (
        '"verify" [label="verify\\ngate", shape=hexagon, color="#b38600", penwidth=2];' in r.stdout
    )
    assert '"route" -> "answer" [label="default"];' in r.stdout


def test_ungated_write_is_marked(flowrun: click.Group, runner: CliRunner) -> None:
    r = runner.invoke(flowrun, ["graph", str(PAIRS / "ungated-write" / "head.yaml")])
    assert "UNGATED WRITE" in r.stdout and "class n_act ungated" in r.stdout
    r = runner.invoke(
        flowrun, ["graph", str(PAIRS / "ungated-write" / "base.yaml"), "--format", "text"]
    )
    assert "act: guarded by verify" in r.stdout


def test_invalid_spec_and_unknown_profile_exit_2(
    flowrun: click.Group, runner: CliRunner, tmp_path: Path
) -> None:
    r = runner.invoke(flowrun, ["graph", str(PAIRS / "invalid-head" / "head.yaml")])
    assert r.exit_code == 2
    assert "unknown-model: model alias 'stronk' is not defined" in r.stderr
    r = runner.invoke(flowrun, ["graph", str(REFERENCE), "--profile", "cj"])
    assert r.exit_code == 2 and "unknown-profile: --profile 'cj'" in r.stderr
    r = runner.invoke(flowrun, ["graph", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2 and "Traceback" not in r.stderr + r.stdout


SPEC = """\
apiVersion: flowrun/v1
kind: Workflow
metadata: {name: joins}
tools:
  get_ticket: {impl: tools.helpdesk:get_ticket, effect: read}
  add_note: {impl: tools.helpdesk:add_note, effect: write}
nodes:
  a: {tool: get_ticket, args: {ticket_id: "T-1"}}
  g:
    gate: [{check: "nodes.a.output.subject != ''", message: empty}]
  b: {tool: get_ticket, args: {ticket_id: "T-2"}}
  w_all: {tool: add_note, needs: [g, b], args: {ticket_id: "T-1", body: x}}
  w_any:
    tool: add_note
    needs: [g, b]
    join: any
    ungated: "a join-any write, drawn as ungated"
    args: {ticket_id: "T-1", body: x}
"""


def test_join_all_passes_a_gate_join_any_does_not() -> None:
    """A join-all write runs only after the gate; a join-any write can run without it."""
    g = from_plan(compile_plan(load_spec_text(SPEC, str(PAIRS / "inline.yaml"))))
    assert g.guards == {"w_all": frozenset({"g"}), "w_any": frozenset()}
    assert g.ungated_writes == ["w_any"]


def test_reference_spec_has_no_ungated_write() -> None:
    g = from_plan(compile_plan(load_spec(REFERENCE)))
    assert set(g.guards) == {"act", "log"} and not g.ungated_writes
