"""Red-team of the taint proof: attacks the first round (test_taint_attacks.py) did not try.

Each attack is a spec under specs/redteam/ (subflows under specs/redteam/flows/), validated
through the CLI as a user would: it must be refused with the rule id and a diagnostic that names
the chain from the untrusted source to the write argument. Before this round, the string bound,
the bound inside `exists`, the wildcard regexes, the blank sanitizer, `map: {as: inputs}`, a
subflow input checked in one field but not the other and an approval whose summary does not
show the value all validated, and their writes ran.
The checks that do pin a value must still clear it (over-blocking is a bug too), and the
safety certificate must state each path and what checks it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli
from tests.envelope.conftest import DurableMemory, plan_of, run
from tests.envelope.etools import logs

ROOT = Path(__file__).resolve().parents[2]
SPECS = Path(__file__).parent / "specs" / "redteam"
V = "nodes.src.output.key"


def _validate(path: Path) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["validate", str(path), "--output", "json"])
    return res.exit_code, res.output


def _variant(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """A copy of a redteam spec with one binding or check replaced (its subflows beside it)."""
    text = (SPECS / name).read_text(encoding="utf-8")
    assert old in text
    out = tmp_path / name
    out.write_text(text.replace(old, new), encoding="utf-8")
    return out


def _refused(code: int, out: str, rule: str, chain: str) -> None:
    assert code == 2, out
    lines = [line for line in out.splitlines() if f": {rule}: " in line]
    assert len(lines) == 1, out
    assert lines[0].endswith(chain), out


# -- attacks on the data flow: each spec as it is ------------------------------------------

ATTACKS = {
    # fixed in this round
    "blank_sanitizer.yaml": ("tainted-write", ": src -> san -> w.args.to"),
    "map_as_inputs.yaml": ("invalid-value", "would hide `inputs` inside the map; name the item"
                           " otherwise"),
    "subflow_partly_checked.yaml": ("tainted-write", ": src -> c:pay.args.to"),
    "approval_hides_value.yaml": ("tainted-write", ": src -> w.args.to"),
    # refused already; kept so that they stay refused
    "branch_chosen_by_untrusted.yaml": ("tainted-write", ": src -> fast -> w.args.to"),
    "check_on_other_branch.yaml": ("tainted-write", ": src -> w.args.to"),
    "check_after_write.yaml": ("tainted-write", ": src -> w.args.to"),
    "approval_with_when.yaml": ("tainted-write", ": src -> w.args.to"),
    "loop_carried.yaml": ("tainted-write", ": repeat.g -> repeat.f -> repeat.w.args.to"),
    "map_over_untrusted_list.yaml": ("tainted-write", ": src -> names -> each.args.to"),
    "map_index_untrusted.yaml": ("tainted-write", ": src -> each.args.to"),
    "llm_system_prompt.yaml": ("tainted-write", ": src -> pick -> w.args.to"),
    "llm_prompt_file.yaml": ("tainted-write", ": src -> pick -> w.args.to"),
    "trusted_read_llm_args.yaml": ("tainted-write", ": src -> pick -> acct -> w.args.to"),
    "subflow_two_levels.yaml": ("tainted-write", ": src -> c:leaf:pay.args.to"),
    "subflow_three_levels.yaml": ("tainted-write", ": src -> c:mid:leaf:pay.args.to"),
    "subflow_outputs.yaml": ("tainted-write", ": src -> c -> w.args.to"),
    "subflow_reused.yaml": ("tainted-write", ": src -> theirs:pay.args.to"),
    "subflow_untrusted_allowlist.yaml": ("tainted-write", ": src -> c:pay.args.to"),
}  # fmt: skip


def test_every_redteam_spec_is_listed() -> None:
    assert sorted(p.name for p in SPECS.glob("*.yaml")) == sorted(
        [*ATTACKS, "weak_check.yaml", "launder.yaml"]
    )


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_the_attack_is_refused_naming_its_chain(name: str) -> None:
    rule, chain = ATTACKS[name]
    _refused(*_validate(SPECS / name), rule, chain)


# -- CEL laundering in the write's own binding ---------------------------------------------

LAUNDER_ARG = '"${{ nodes.src.output.key }}"'


@pytest.mark.parametrize(
    "binding",
    [
        f"'acct-' + {V}",
        f"string(int({V}))",
        f"{V} == 'x' ? 'alice' : {V}",
        f"true ? {V} : 'x'",
        f"inputs.allowed[{V}]",
        f"has(nodes.src.output.key) ? {V} : 'x'",
        f"string({V}.size())",
        f"[{V}].map(x, x + '')[0]",
        f"[{V}, 'alice'].filter(x, x != 'alice')[0]",
        f"[{V}].exists(x, x == 'a') ? 'alice' : 'bob'",
        f"string(timestamp({V}) + duration({V}))",
    ],
)
def test_cel_that_transforms_untrusted_text_keeps_it_untrusted(
    tmp_path: Path, binding: str
) -> None:
    spec = _variant(tmp_path, "launder.yaml", LAUNDER_ARG, f'"${{{{ {binding} }}}}"')
    _refused(*_validate(spec), "tainted-write", ": src -> w.args.to")


# -- checks that mention the value without pinning it --------------------------------------

WEAK_CHECK = f"size({V}) > 0"


@pytest.mark.parametrize(
    "check",
    [
        # validated before this round
        f"{V} < 'zzzz'",  # strings order by their first letters: 'evil@x' < 'zzzz'
        f"{V} >= 'a' && {V} <= 'zzzz'",
        f"{V} < string(nodes.book.output.amount)",
        f"nodes.book.output.key.exists(x, x < {V})",  # only: greater than the smallest
        f"{V}.matches(r'^(?s:.)*$')",
        f"{V}.matches(r'^(.|\\\\n)*$')",
        f"{V}.matches(r'^.{{0,100}}$')",
        f"{V}.matches(r'^[\\\\s\\\\S]*$')",
        f"{V}.matches(r'^\\\\D*$')",
        f"{V}.matches(r'^\\\\W+$')",
        f"{V}.matches(r'^[a-z]+(?m)$')",
        # refused already
        f"{V} != ''",
        f"{V}.matches('.*')",
        f"{V}.matches('alice')",
        f"{V}.matches('^alice|bob$')",
        f"{V} in [{V}]",
        f"{V} == {V}",
        f"{V}.startsWith('')",
        f"size({V}) < 100",
        f"{V} == nodes.other.output.key",
        "nodes.src.output.text == 'alice'",
        f"{V} == 'alice' || {V} == 'bob'",
        f"timestamp({V}) < timestamp('2030-01-01T00:00:00Z')",
        f"int({V}) < 5",
        f"[{V}].all(x, x == 'alice')",
        f"nodes.other.output.key.exists(x, x == {V})",
    ],
)
def test_a_weak_check_does_not_clear_and_the_hint_names_it(tmp_path: Path, check: str) -> None:
    spec = _variant(tmp_path, "weak_check.yaml", WEAK_CHECK, check.replace('"', '\\"'))
    code, out = _validate(spec)
    _refused(code, out, "tainted-write", ": src -> w.args.to")
    if V in check:  # a check on another field is not about this value at all
        assert "gate 'g'" in out and "does not clear it" in out


# -- checks that pin the value: no over-blocking, and the certificate says what checked it --


@pytest.mark.parametrize(
    ("check", "checked_by"),
    [
        (f"{V} == nodes.book.output.key", f"gate 'g': {V} == nodes.book.output.key"),
        (f"{V} in ['alice', 'bob']", f"gate 'g': {V} in ['alice', 'bob']"),
        (f"nodes.book.output.key.exists(x, x == {V})", None),
        (f"{V}.matches('^[a-z.]{{3,12}}$')", None),
        (f"{V}.matches('^(?i)(alice|bob)$')", None),
        (f"{V}.matches(r'^acct-\\\\d{{6}}$')", None),
    ],
)
def test_a_check_that_pins_the_value_clears_it_in_the_certificate(
    tmp_path: Path, check: str, checked_by: str | None
) -> None:
    spec = _variant(tmp_path, "weak_check.yaml", WEAK_CHECK, check)
    code, out = _validate(spec)
    assert code == 0, out
    taint = json.loads(out)["certificate"]["taint"]
    assert [(t["path"], t["value"]) for t in taint] == [("src -> w.args.to", V)]
    assert taint[0]["checked_by"] == (checked_by or f"gate 'g': {check}".replace("\\\\", "\\"))


def test_an_approval_that_shows_the_value_clears_it_and_its_decision_is_the_approvers(
    tmp_path: Path,
) -> None:
    """An approval without `when` clears what it shows; what the approver types is theirs."""
    spec = _variant(
        tmp_path,
        "weak_check.yaml",
        "  w: {tool: pay, needs: [g], args: {to:",
        "  ask:\n    needs: [g]\n    approval:\n      summary: 'pay {{ nodes.src.output.key }}?'\n"
        "      decision: {type: object, properties: {memo: {type: string}}}\n"
        "  w2: {tool: pay, needs: [ask], args: {to: '${{ nodes.ask.output.decision.memo }}',"
        " amount: 1.0}}\n"
        "  w: {tool: pay, needs: [ask], args: {to:",
    )
    code, out = _validate(spec)
    assert code == 0, out
    taint = json.loads(out)["certificate"]["taint"]
    assert [(t["path"], t["checked_by"]) for t in taint] == [("src -> w.args.to", "approval 'ask'")]


def test_a_subflow_reused_with_a_checked_input_states_the_parents_check(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    for f in (SPECS / "flows").glob("*.yaml"):
        (tmp_path / "flows" / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    spec = _variant(
        tmp_path,
        "subflow_reused.yaml",
        "  theirs: {flow",
        f"  vet: {{gate: [{{check: \"{V} in ['alice', 'bob']\", message: m}}]}}\n"
        "  theirs: {needs: [vet], flow",
    )
    code, out = _validate(spec)
    assert code == 0, out
    taint = json.loads(out)["certificate"]["taint"]
    assert [(t["path"], t["value"], t["checked_by"]) for t in taint] == [
        ("src -> theirs:pay.args.to", "inputs.to", f"gate 'vet': {V} in ['alice', 'bob']")
    ]


def test_a_sanitizer_with_a_blank_reason_is_not_in_the_certificate(tmp_path: Path) -> None:
    spec = _variant(
        tmp_path, "blank_sanitizer.yaml", 'to: "${{ nodes.san.output.key }}"', "to: alice"
    )
    code, out = _validate(spec)
    assert code == 0, out
    assert json.loads(out)["certificate"]["sanitizers"] == {}


# -- live: the partly checked subflow input pays nothing ------------------------------------


def test_the_partly_checked_subflow_input_run_live_pays_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ETOOLS_LOG": os.environ["ETOOLS_LOG"]}
    env["FLOWRUN_STORE"] = str(tmp_path / "runs.db")
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "execute", str(SPECS / "subflow_partly_checked.yaml"),
         "--input-json", "{}", "--live", "--output", "json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "tainted-write" in proc.stderr and "src -> c:pay.args.to" in proc.stderr
    assert [e for e in logs() if e["kind"] in ("pay", "plan_pay")] == []


# -- run time: a policy on `tainted` sees a loop body's untrusted arguments ------------------

LOOP_POLICY = """policy_default: {write: allow}
policies:
  - {id: no-untrusted-payee, when: '"to" in tainted', effect: deny, reason: untrusted payee}
nodes:
  src: {tool: untrusted_read, args: {key: alice}}
  ok: {gate: [{check: "nodes.src.output.key in ['alice']", message: m}]}
  repeat:
    needs: [ok]
    loop:
      max_iterations: 2
      until: "true"
      body:
        w: {tool: pay, args: {to: "${{ nodes.src.output.key }}", amount: 1.0}}
"""


def test_a_loop_bodys_write_of_an_outer_untrusted_value_is_tainted_for_policies() -> None:
    """The static check is cleared by the gate; the policy still sees `to` as tainted (it saw
    nothing in a loop body before: the body's own compile knew only its own tools)."""
    plan = plan_of(LOOP_POLICY)
    result = run(plan, {}, live=True, services=DurableMemory())
    assert result.status == "denied", result.reason
    assert "no-untrusted-payee" in (result.reason or "")
    assert [e for e in logs() if e["kind"] == "pay"] == []


def test_a_number_bounded_by_trusted_data_read_with_a_string_key_is_cleared(
    tmp_path: Path,
) -> None:
    """A string inside an index or a call is not a text bound (no over-blocking)."""
    spec = _variant(
        tmp_path,
        "launder.yaml",
        'to: "${{ nodes.src.output.key }}", amount: 1.0',
        'to: alice, amount: "${{ nodes.src.output.amount }}"',
    )
    check = "nodes.src.output.amount <= double(inputs.allowed['max'])"
    spec.write_text(
        spec.read_text(encoding="utf-8").replace("nodes.src.output.amount <= 50.0", check),
        encoding="utf-8",
    )
    code, out = _validate(spec)
    assert code == 0, out
    taint = json.loads(out)["certificate"]["taint"]
    assert [(t["path"], t["checked_by"]) for t in taint] == [
        ("src -> w.args.amount", f"gate 'g': {check}")
    ]
