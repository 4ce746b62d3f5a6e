"""Each change class: a base and head spec under pairs/<class>/ and the JSON diff we expect."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.review.conftest import PAIRS, REPO

CASES = sorted(p.name for p in PAIRS.iterdir() if p.is_dir())
UPDATE = (
    os.environ.get("FLOWRUN_UPDATE_EXPECTED") == "1"
)  # regenerate expected.json, then review it


def run_diff(
    flowrun: click.Group, runner: CliRunner, case: str, *extra: str
) -> tuple[int, str, str]:
    cwd = os.getcwd()
    os.chdir(REPO)  # labels in the JSON are the relative paths given
    try:
        rel = Path("tests/review/pairs") / case
        result = runner.invoke(
            flowrun, ["diff", *extra, str(rel / "base.yaml"), str(rel / "head.yaml")]
        )
    finally:
        os.chdir(cwd)
    return result.exit_code, result.stdout, result.stderr


def test_every_change_class_has_a_pair() -> None:
    wanted = {
        "node-added", "node-removed", "node-renamed", "edge-changed", "prompt-changed",
        "schema-breaking", "schema-compatible", "model-route", "budget-increase", "budget-decrease",
        "policy-looser", "policy-tighter", "tool-effect", "new-write-path", "ungated-write",
        "invalid-head", "spec-added", "spec-removed", "no-change",
    }  # fmt: skip
    assert wanted <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_pair_json_matches_expected(flowrun: click.Group, runner: CliRunner, case: str) -> None:
    code, out, err = run_diff(flowrun, runner, case, "--output", "json")
    assert code == 0, err
    got = json.loads(out)
    expected_file = PAIRS / case / "expected.json"
    if UPDATE:
        expected_file.write_text(
            json.dumps(got, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    assert got == json.loads(expected_file.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("case", "fail_on", "code"),
    [
        ("ungated-write", "ungated-write", 1),
        ("ungated-write", "budget-increase,breaking-schema", 0),
        ("new-write-path", "new-write-path", 1),
        ("tool-effect", "new-write-path", 1),
        ("tool-effect", "ungated-write", 0),
        ("budget-increase", "budget-increase", 1),
        ("budget-decrease", "budget-increase", 0),
        ("schema-breaking", "breaking-schema", 1),
        ("schema-compatible", "breaking-schema", 0),
        ("policy-looser", "looser-policy", 1),
        ("policy-tighter", "looser-policy", 0),
        ("invalid-head", "invalid-spec", 1),
        (
            "no-change",
            "looser-policy,new-write-path,ungated-write,budget-increase,breaking-schema",
            0,
        ),
    ],
)
def test_fail_on_exit_code(
    flowrun: click.Group, runner: CliRunner, case: str, fail_on: str, code: int
) -> None:
    got, out, err = run_diff(flowrun, runner, case, "--fail-on", fail_on)
    assert got == code, err
    assert out.startswith("<!-- flowrun-diff -->")
    if code:
        assert "fail-on" in err
    else:
        assert "fail-on" not in err


def test_unknown_fail_on_class_is_a_usage_error(flowrun: click.Group, runner: CliRunner) -> None:
    code, out, err = run_diff(flowrun, runner, "no-change", "--fail-on", "ungated")
    assert code == 2
    assert "unknown class 'ungated'" in err and "ungated-write" in err
    assert "Traceback" not in err + out


def test_markdown_puts_flags_before_summary_and_graph(
    flowrun: click.Group, runner: CliRunner
) -> None:
    code, out, _ = run_diff(flowrun, runner, "ungated-write")
    assert code == 0
    flags, summary, graph = (
        out.index("#### Risk flags"),
        out.index("#### Summary"),
        out.index("```mermaid"),
    )
    assert flags < summary < graph
    assert "**ungated-write**: write node 'act' lost its gate (verify)" in out
    assert "| write `act` | lost-gate; guards verify → none |" in out
    assert 'n_verify -.->|"removed"| n_act' in out  # the removed edge is drawn dashed
    assert "class n_act ungated" in out


def test_markdown_of_renamed_and_prompt_changes(flowrun: click.Group, runner: CliRunner) -> None:
    _, out, _ = run_diff(flowrun, runner, "node-renamed")
    assert "| nodes renamed | `intake` → `fetch_ticket` |" in out
    _, out, _ = run_diff(flowrun, runner, "prompt-changed")
    assert (
        "```diff" in out
        and "+Never promise more than the order total." in out
        and "-Be brief." in out
    )


def test_invalid_side_is_reported_and_still_diffed(flowrun: click.Group, runner: CliRunner) -> None:
    code, out, err = run_diff(flowrun, runner, "invalid-head")
    assert code == 0, err
    assert "The head spec does not validate" in out
    assert "head.yaml:39:10: unknown-model: model alias 'stronk' is not defined" in out
    assert "| nodes changed | `propose` (llm) |" in out


def test_missing_side_is_added_not_an_error(flowrun: click.Group, runner: CliRunner) -> None:
    code, out, _ = run_diff(flowrun, runner, "spec-added")
    assert code == 0
    assert "**New spec.**" in out and "base.yaml` (absent)" in out


def test_both_sides_missing_is_a_usage_error(
    flowrun: click.Group, runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(flowrun, ["diff", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")])
    assert result.exit_code == 2
    assert "neither" in result.stderr
