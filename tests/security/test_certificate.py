"""The safety certificate: what validate proves, in `validate` (JSON and text) and in `diff`."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.testing import CliRunner

from runner.cli import cli
from runner.review_cli import diff
from tests.envelope.conftest import HEADER

ROOT = Path(__file__).resolve().parents[2]
REFUND = ROOT / "specs" / "support_refund.yaml"


def _flowrun() -> click.Group:
    if "diff" not in cli.commands:
        cli.add_command(diff)
    return cli


def _invoke(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(_flowrun(), list(args), catch_exceptions=False)
    return res.exit_code, res.stdout


def test_validate_json_carries_the_certificate_of_the_reference_spec() -> None:
    code, out = _invoke("validate", str(REFUND), "--output", "json")
    assert code == 0, out
    cert = json.loads(out)["certificate"]
    assert [w["node"] for w in cert["writes"]] == ["act", "log"]
    act = cert["writes"][0]
    assert {"node": "verify", "kind": "gate"} in act["guards"]
    assert any(g["node"] == "approve" and "when" in g for g in act["guards"])
    paths = {(t["path"], t["value"]): t["checked_by"] for t in cert["taint"]}
    assert paths[("intake -> act.args.order_id", "nodes.intake.output.order_id")] == (
        "gate 'verify': nodes.intake.output.order_id.matches(\"^O-[0-9]{4,8}$\")"
    )
    assert all(cert_by for cert_by in paths.values())  # a valid spec leaves nothing unchecked
    assert cert["worst_case"]["llm_calls"] == 9 and cert["worst_case"]["tool_calls"] > 0
    assert cert["loops"] == [] and cert["proves"]


def test_validate_text_states_the_certificate() -> None:
    code, out = _invoke("validate", str(REFUND))
    assert code == 0, out
    lines = out.splitlines()
    assert "  certificate (what validate proves; docs/security.md)" in lines
    assert any(
        line.startswith("    taint        intake -> propose -> act.args.reason: gate 'verify'")
        for line in lines
    )


SPEC = (
    HEADER
    + "policy_default: {write: allow}\n"
    + """nodes:
  src: {tool: untrusted_read, args: {key: a}}
  GUARD
  w: {tool: pay, needs: [g], args: {to: "${{ nodes.src.output.key }}", amount: 1.0}}
"""
)


def test_diff_shows_what_a_change_adds_to_and_removes_from_the_certificate(
    tmp_path: Path,
) -> None:
    base = tmp_path / "base.yaml"
    head = tmp_path / "head.yaml"
    base.write_text(
        SPEC.replace("GUARD", "g: {approval: {summary: 'pay {{ nodes.src.output.key }}?'}}"),
        encoding="utf-8",
    )
    check = "g: {gate: [{check: \"nodes.src.output.key in ['alice', 'bob']\", message: m}]}"
    head.write_text(SPEC.replace("GUARD", check), encoding="utf-8")
    code, out = _invoke("diff", str(base), str(head), "--output", "json")
    assert code == 0, out
    cert = json.loads(out)["certificate"]
    added = [c["text"] for c in cert["added"] if c["kind"] == "taint"]
    removed = [c["text"] for c in cert["removed"] if c["kind"] == "taint"]
    assert removed == ["untrusted `src -> w.args.to` checked by approval 'g'"]
    assert added == [
        "untrusted `src -> w.args.to` checked by gate 'g': nodes.src.output.key in ['alice', 'bob']"
    ]
    code, md = _invoke("diff", str(base), str(head))
    assert code == 0
    section = md[md.index("#### Safety certificate") :]
    assert "- added: write `w` (pay) runs after gate `g`" in section
    assert "- removed: write `w` (pay) runs after approval `g`" in section
