"""`flowrun eval` end to end: the reference passes, regressed specs fail, bad input exits 2."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from runner.eval_cli import eval_command

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "support_refund.yaml"
CASES = REPO / "examples" / "evals" / "support_refund"
BASELINE = REPO / "examples" / "evals" / "baseline.support_refund.json"
REGRESSED = Path(__file__).resolve().parent / "regressed"
FIXTURE = (
    'fixture: {env: FLOWRUN_SUPPORT_DB, seed: "tools.seed:seed"}\n'
    'identity: {scopes: ["refunds:write"]}\n'
)

GOOD_CASE = """
  - id: damaged
    kind: gold
    input: {ticket_id: T-1001}
    responses:
      - node: classify
        content: {category: refund, confidence: 0.9}
        usage: {prompt_tokens: 400, completion_tokens: 14}
      - node: propose
        content: {amount_usd: 35.0, reason: damaged, reply: "Refunded $35.00, sorry!"}
        usage: {prompt_tokens: 700, completion_tokens: 50}
    expect:
      status: %s
"""


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(eval_command, [str(a) for a in args], catch_exceptions=False)


def cases_file(tmp_path: Path, body: str, name: str = "cases.yaml") -> Path:
    p = tmp_path / name
    p.write_text(FIXTURE + "cases:\n" + body, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ref")
    res = run(
        SPEC,
        "--cases",
        CASES,
        "--baseline",
        BASELINE,
        "--output",
        "json",
        "--junit",
        out / "junit.xml",
        "--report",
        out / "report.md",
    )
    return {"res": res, "json": json.loads(res.stdout), "dir": out}


def test_reference_passes_every_gate(reference: dict[str, Any]) -> None:
    res, data = reference["res"], reference["json"]
    assert res.exit_code == 0, res.output
    assert data["passed"] is True
    m = data["metrics"]
    assert m["runs"] == len(data["cases"]) >= 20
    assert m["by_kind"]["adversarial"]["runs"] >= 5
    assert m["task_completion"] == 1.0
    assert m["escalation_correctness"] == 1.0
    assert m["policy_violations"] == 0
    assert m["tool_recovery"] == 1.0 and m["recovery_runs"] >= 3
    assert {g["name"] for g in data["gates"]} >= {
        "drift:cost_per_task_usd",
        "drift:tool_calls_per_task",
        "drift:tokens_per_task",
    }


def test_reference_metrics_are_measured_per_run(reference: dict[str, Any]) -> None:
    runs = {r["case_id"]: r for r in reference["json"]["runs"]}
    granted = runs["refund-damaged-item"]
    assert granted["status"] == "succeeded"
    assert granted["calls_by_tool"] == {
        "get_ticket": 1,
        "search_kb": 1,
        "issue_refund": 1,
        "add_note": 1,
    }
    assert granted["tokens"] == 412 + 14 + 733 + 58
    assert granted["cost_usd"] > 0
    assert runs["writes-switched-off"]["denied_tools"] == ["issue_refund"]
    timeout = runs["ticket-read-timeout-retried"]
    assert timeout["calls_by_tool"]["get_ticket"] == 2  # the hung call and the retry
    assert timeout["latency_s"] >= 0.5  # it really waited out the shortened node timeout
    assert runs["runaway-context-budget"]["status"] == "budget_exceeded"
    assert runs["runaway-context-budget"]["llm_calls"] == 0


def test_junit_and_markdown_reports(reference: dict[str, Any]) -> None:
    root = ET.parse(reference["dir"] / "junit.xml").getroot()
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    cases = suites["support-refund.cases"]
    assert int(cases.get("tests") or 0) == len(reference["json"]["cases"])
    assert cases.get("failures") == "0"
    names = {tc.get("name") for tc in cases.iter("testcase")}
    assert "injection-refund-5000" in names
    md = (reference["dir"] / "report.md").read_text()
    assert md.startswith("## flowrun eval: `support-refund` — ✅ passed")
    assert "| policy violations | 0 |" in md
    assert "### Drift against the baseline" in md


def _regressed(name: str, tmp_path: Path) -> tuple[Result, str]:
    res = run(
        REGRESSED / f"{name}.yaml",
        "--cases",
        CASES,
        "--baseline",
        BASELINE,
        "--junit",
        tmp_path / "j.xml",
        "--report",
        tmp_path / "r.md",
    )
    return res, (tmp_path / "r.md").read_text()


def test_prompt_change_that_multiplies_tool_calls_fails_on_drift(tmp_path: Path) -> None:
    res, md = _regressed("more_tool_calls", tmp_path)
    assert res.exit_code == 1, res.output
    line = next(ln for ln in res.stdout.splitlines() if "drift: tool_calls_per_task" in ln)
    m = re.match(r"gate failed: drift: tool_calls_per_task ([\d.]+) vs baseline 2\.44 \(\+", line)
    assert m is not None, line
    assert float(m.group(1)) > 2.44 * 1.5  # a search per article found: half as many again
    assert "tolerance 10%" in line
    assert "— ❌ failed" in md
    root = ET.parse(tmp_path / "j.xml").getroot()
    failed = [tc.get("name") for tc in root.iter("testcase") if tc.find("failure") is not None]
    assert "drift:tool_calls_per_task" in failed


def test_removed_gate_is_refused_before_any_case_runs(tmp_path: Path) -> None:
    """Removing the verify gate lets untrusted data reach the refund: tainted-write refuses the
    spec at validate, so the eval never runs it (an `ungated:` marker does not clear taint)."""
    res = run(REGRESSED / "no_verify.yaml", "--cases", CASES, "--baseline", BASELINE)
    assert res.exit_code == 2, res.output
    assert "tainted-write" in res.output and "act.args.amount_usd" in res.output


def test_looser_budget_fails_the_runaway_case_and_token_drift(tmp_path: Path) -> None:
    res, _ = _regressed("loose_budget", tmp_path)
    assert res.exit_code == 1, res.output
    assert "FAIL runaway-context-budget" in res.stdout
    assert "expected budget_exceeded" in res.stdout
    assert "gate failed: drift: tokens_per_task" in res.stdout


def test_regressed_specs_differ_from_the_reference_only_where_meant() -> None:
    ref = SPEC.read_text()
    loose = (REGRESSED / "loose_budget.yaml").read_text()
    assert "max_usd: 5.0" in loose and "max_usd: 0.05" in ref
    assert "verify:" not in (REGRESSED / "no_verify.yaml").read_text()
    for p in ("classify.j2", "answer.j2", "propose.j2"):
        assert (REGRESSED / "prompts" / p).read_text() == (SPEC.parent / "prompts" / p).read_text()


def test_repeat_all_pass_small_k_fails_wilson_gate(tmp_path: Path) -> None:
    cases = cases_file(tmp_path, GOOD_CASE % "succeeded")
    res = run(SPEC, "--cases", cases, "--repeat", "3", "--output", "json")
    assert res.exit_code == 1, res.output
    gate = next(g for g in json.loads(res.stdout)["gates"] if g["name"] == "case:damaged")
    assert gate["actual"] == pytest.approx(0.4385, abs=1e-4)
    assert "3/3 passed" in gate["message"] and "--repeat 16 can" in gate["message"]
    # the same evidence clears a threshold it supports
    res = run(SPEC, "--cases", cases, "--repeat", "3", "--gate", "min_pass_rate=0.4")
    assert res.exit_code == 0, res.output


def test_repeat_no_passes_has_zero_lower_bound(tmp_path: Path) -> None:
    cases = cases_file(tmp_path, GOOD_CASE % "escalated")
    res = run(
        SPEC, "--cases", cases, "--repeat", "2", "--gate", "min_pass_rate=0", "--output", "json"
    )
    data = json.loads(res.stdout)
    gate = next(g for g in data["gates"] if g["name"] == "case:damaged")
    assert gate["actual"] == 0.0 and gate["passed"] is True  # 0 >= 0
    assert data["metrics"]["escalation_correctness"] == 0.0
    res = run(SPEC, "--cases", cases, "--repeat", "2")
    assert res.exit_code == 1
    assert "status succeeded, expected escalated" in res.stdout


def test_spec_gates_and_flags(tmp_path: Path) -> None:
    cases = cases_file(tmp_path, GOOD_CASE % "succeeded")
    res = run(SPEC, "--cases", cases, "--gate", "max_cost_per_task_usd=0.0001")
    assert res.exit_code == 1
    assert "gate failed: cost_per_task_usd 0.002918 > 0.0001" in res.stdout


def test_update_baseline_writes_a_baseline_that_then_holds(tmp_path: Path) -> None:
    cases = cases_file(tmp_path, GOOD_CASE % "succeeded")
    base = tmp_path / "base.json"
    res = run(SPEC, "--cases", cases, "--baseline", base, "--update-baseline")
    assert res.exit_code == 0, res.output
    data = json.loads(base.read_text())
    assert data["spec"] == "support-refund" and data["cases"]["damaged"]["tool_calls_per_task"] == 4
    res = run(SPEC, "--cases", cases, "--baseline", base)
    assert res.exit_code == 0 and "drift" not in res.stdout.replace("drift:", "")


# -- bad input: exit 2, a positioned message, nothing written ---------------------------------


def _bad(tmp_path: Path, *args: str | Path) -> Result:
    out = tmp_path / "junit.xml"
    res = run(SPEC, *args, "--junit", out)
    assert res.exit_code == 2, res.output
    assert not out.exists()
    assert "Traceback" not in res.output
    return res


def test_case_input_that_does_not_match_the_spec(tmp_path: Path) -> None:
    body = (GOOD_CASE % "succeeded").replace("{ticket_id: T-1001}", "{ticket: 1001}")
    res = _bad(tmp_path, "--cases", cases_file(tmp_path, body))
    assert "cases.yaml:7:12: eval-input: case 'damaged': input does not match" in res.stderr


def test_unknown_node_in_an_assertion(tmp_path: Path) -> None:
    body = (GOOD_CASE % "succeeded") + "      assert: [nodes.verfy.status == 'succeeded']\n"
    res = _bad(tmp_path, "--cases", cases_file(tmp_path, body))
    assert "cases.yaml:17:16: eval-unknown-node: case 'damaged': unknown node 'verfy'" in res.stderr
    assert "did you mean 'verify'?" in res.stderr


def test_unknown_key(tmp_path: Path) -> None:
    body = (GOOD_CASE % "succeeded").replace("    expect:", "    expected: 1\n    expect:")
    res = _bad(tmp_path, "--cases", cases_file(tmp_path, body))
    assert (
        "cases.yaml:15:5: eval-case: unknown key 'expected'; did you mean 'expect'?" in res.stderr
    )


def test_unknown_tool_response_node_and_fault(tmp_path: Path) -> None:
    body = (GOOD_CASE % "succeeded").replace("node: propose", "node: propse")
    body = body.replace(
        "    expect:", "    faults: [{tool: get_ticket, invalid_json: 1}]\n    expect:"
    )
    body += "      must_call: [refund_issue]\n"
    res = _bad(tmp_path, "--cases", cases_file(tmp_path, body))
    assert "unknown LLM node 'propse'" in res.stderr
    assert "invalid_json/provider_error need an LLM 'node'" in res.stderr
    assert "unknown tool 'refund_issue'" in res.stderr
    assert "3 problems found" in res.stderr


def test_baseline_for_another_spec(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    data = json.loads(BASELINE.read_text())
    data["spec"] = "another-workflow"
    other.write_text(json.dumps(data))
    res = _bad(tmp_path, "--cases", CASES, "--baseline", other)
    assert "baseline is for spec 'another-workflow', not 'support-refund'" in res.stderr
    # --update-baseline never overwrites another spec's baseline either
    res = _bad(tmp_path, "--cases", CASES, "--baseline", other, "--update-baseline")
    assert json.loads(other.read_text())["spec"] == "another-workflow"


def test_bad_flags(tmp_path: Path) -> None:
    res = _bad(tmp_path, "--cases", CASES, "--gate", "min_passrate=0.5")
    assert "hint: gates:" in res.stderr
    res = _bad(tmp_path, "--cases", CASES, "--gate", "min_pass_rate=2")
    assert "--gate min_pass_rate" in res.stderr
    res = _bad(tmp_path, "--cases", tmp_path / "missing.yaml")
    assert "no such file or directory" in res.stderr
    res = _bad(tmp_path, "--cases", CASES, "--update-baseline")
    assert "--update-baseline needs --baseline" in res.stderr


def test_duplicate_case_ids_across_files(tmp_path: Path) -> None:
    d = tmp_path / "cases"
    d.mkdir()
    cases_file(d, GOOD_CASE % "succeeded", "a.yaml")
    cases_file(d, GOOD_CASE % "succeeded", "b.yaml")
    res = _bad(tmp_path, "--cases", d)
    assert "eval-duplicate-case: case id 'damaged' is also used at" in res.stderr


def test_subprocess_exit_codes(tmp_path: Path) -> None:
    """The command as CI runs it: a real process, exit code 2 on a baseline for another spec."""
    other = tmp_path / "base.json"
    shutil.copyfile(BASELINE, other)
    other.write_text(other.read_text().replace('"support-refund"', '"not-this-one"'))
    code = (
        "from runner.cli import cli; from runner.eval_cli import eval_command; "
        "cli.add_command(eval_command); cli()"
    )
    cp = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "eval",
            str(SPEC),
            "--cases",
            str(CASES),
            "--baseline",
            str(other),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert cp.returncode == 2, cp.stderr
    assert cp.stderr.startswith("error: ") and "not-this-one" in cp.stderr
