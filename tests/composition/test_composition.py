"""Subflows, bounded loops and map over them: run on recorded responses against a seeded KB."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from runner.engine.results import RunResult
from runner.engine.run import check_responses, execute
from runner.errors import UsageError
from runner.models.responses import RecordedResponses
from runner.plan.compile import compile_plan
from runner.plan.model import Plan
from runner.spec import load_spec, load_spec_text
from tests.cli.conftest import run_flowrun
from tools.seed import seed

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"
GOOD = {"reply": "You can reset your password from the sign-in page in a minute."}
LONG = {"reply": "We are happy to refund you " + "and more " * 60}
REFUND = {"reply": "We will refund the order and reset your password today."}
USAGE = {"prompt_tokens": 300, "completion_tokens": 30}


@pytest.fixture(autouse=True)
def support_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "support.db"
    seed(db)
    monkeypatch.setenv("FLOWRUN_SUPPORT_DB", str(db))
    return db


def responses(tmp_path: Path, lines: list[dict[str, Any]]) -> RecordedResponses:
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps({**x, "usage": USAGE}) + "\n" for x in lines))
    return RecordedResponses.load(path)


def run(plan: Plan, inputs: dict[str, Any], rec: RecordedResponses) -> RunResult:
    check_responses(plan, rec, str(rec.path))
    return asyncio.run(execute(plan, inputs, responses=rec))


def faq_run(tmp_path: Path, revisions: list[dict[str, Any]]) -> RunResult:
    plan = compile_plan(load_spec(SPECS / "support_faq.yaml"))
    lines = [{"node": "answer.draft", "content": GOOD}]
    lines += [{"node": "polish.revise", "content": r} for r in revisions]
    return run(plan, {"ticket_id": "T-1003"}, responses(tmp_path, lines))


def test_propose_verify_revise_loop_converges_in_two_passes(tmp_path: Path) -> None:
    result = faq_run(tmp_path, [REFUND, GOOD])
    assert result.status == "succeeded", result.reason
    assert result.outputs["passes"] == 2
    assert result.outputs["reply"] == GOOD["reply"]
    polish = result.nodes["polish"]
    assert polish.output["converged"] is True
    passes = polish.items or []
    assert [p.node_id for p in passes] == ["polish#1", "polish#2"]
    first = {r.node_id: r for r in passes[0].items or []}
    assert first["check"].output == {"passed": False, "failed": ["the reply mentions a refund"]}
    second = {r.node_id: r for r in passes[1].items or []}
    assert second["check"].output["passed"] is True
    assert second["revise"].output == GOOD
    # the loop's usage is its passes' usage; the run's total counts every nested call once
    assert polish.usage.llm_calls == 2
    assert result.usage.llm_calls == 3
    # nested results survive the JSON round trip the store does
    again = type(polish).from_json(json.loads(json.dumps(polish.to_json())))
    assert again.items is not None and again.items[1].items is not None
    assert again.items[1].items[0].node_id in ("revise", "check")


def test_the_second_pass_sees_the_first_through_previous(tmp_path: Path) -> None:
    plan = compile_plan(load_spec(SPECS / "support_faq.yaml"))
    seen: list[str] = []
    from runner.engine.hooks import Hooks

    class Spy(Hooks):
        pass

    lines = [{"node": "answer.draft", "content": GOOD}]
    lines += [{"node": "polish.revise", "content": r} for r in (LONG, GOOD)]
    rec = responses(tmp_path, lines)
    from runner.engine import telemetry

    class Capture(telemetry.Telemetry):
        def llm_call(self, ctx: Any, req: Any) -> Any:
            seen.append(req.messages[-1]["content"])
            return super().llm_call(ctx, req)

    result = asyncio.run(
        execute(plan, {"ticket_id": "T-1003"}, responses=rec, telemetry=Capture(), hooks=Spy())
    )
    assert result.status == "succeeded", result.reason
    assert "failed these checks" not in seen[1]
    assert "longer than 400 characters" in seen[2]
    assert "happy to refund" in seen[2]


def test_a_loop_that_never_converges_escalates_after_max_iterations(tmp_path: Path) -> None:
    result = faq_run(tmp_path, [REFUND, LONG, REFUND])
    assert result.status == "escalated"
    polish = result.nodes["polish"]
    assert polish.status == "escalated"
    assert "did not hold after 3 passes" in (polish.error or "")
    assert polish.output["converged"] is False and polish.output["iterations"] == 3
    assert len(polish.items or []) == 3
    assert polish.usage.llm_calls == 3


def exhausting(policy: str) -> Plan:
    text = (SPECS / "support_faq.yaml").read_text()
    text = text.replace("on_exhausted: escalate", f"on_exhausted: {policy}")
    return compile_plan(load_spec_text(text, str(SPECS / "support_faq_variant.yaml")))


@pytest.mark.parametrize(("policy", "status"), [("fail", "failed"), ("last", "succeeded")])
def test_on_exhausted_fail_and_last(tmp_path: Path, policy: str, status: str) -> None:
    lines = [{"node": "answer.draft", "content": GOOD}]
    lines += [{"node": "polish.revise", "content": REFUND}] * 3
    result = run(exhausting(policy), {"ticket_id": "T-1003"}, responses(tmp_path, lines))
    assert result.status == status
    if policy == "last":
        assert result.outputs["reply"] == REFUND["reply"]
        assert result.nodes["polish"].output["converged"] is False


def test_one_subflow_is_reused_by_two_reference_specs(tmp_path: Path) -> None:
    faq = compile_plan(load_spec(SPECS / "support_faq.yaml"))
    batch = compile_plan(load_spec(SPECS / "support_batch.yaml"))
    a = faq.nodes["answer"].flow
    b = batch.nodes["answers"].map.inner.flow  # type: ignore[union-attr]
    assert a is not None and b is not None
    assert a.path == b.path == str(Path("specs/flows/kb_answer.yaml")) or a.path.endswith(
        "flows/kb_answer.yaml"
    )
    assert a.plan.name == b.plan.name == "kb-answer"
    # the subflow's output is typed by its child nodes: a wrong field fails at validate
    bad = (
        (SPECS / "support_faq.yaml")
        .read_text()
        .replace("nodes.answer.output.sources", "nodes.answer.output.source")
    )
    from runner.errors import SpecError

    with pytest.raises(SpecError) as e:
        compile_plan(load_spec_text(bad, str(SPECS / "bad_faq.yaml")))
    (d,) = e.value.diagnostics
    assert d.rule == "unknown-field" and "did you mean 'sources'?" in (d.hint or "")


def test_map_over_a_subflow_collects_partial_failures_in_input_order(tmp_path: Path) -> None:
    plan = compile_plan(load_spec(SPECS / "support_batch.yaml"))
    qs = ["how do I reset my password", "where is my parcel", "can I change my address"]
    lines = [
        {
            "node": "answers.draft",
            "index": 0,
            "content": {"reply": "Use 'Forgot password' on the sign-in page."},
        },
        {"node": "answers.draft", "index": 1, "error": "bad_request"},
        {
            "node": "answers.draft",
            "index": 2,
            "content": {"reply": "Change it under Account, Addresses."},
        },
    ]
    result = run(plan, {"questions": qs}, responses(tmp_path, lines))
    assert result.status == "succeeded", result.reason
    answers = result.outputs["answers"]
    assert [a["ok"] for a in answers] == [True, False, True]
    assert answers[0]["output"]["reply"].startswith("Use 'Forgot")
    assert answers[1]["output"] is None and "bad_request" in answers[1]["error"]
    assert answers[2]["output"]["reply"].startswith("Change it")
    assert result.outputs["answered"] == 2
    node = result.nodes["answers"]
    assert node.detail["failed_items"] == [1]
    items = node.items or []
    assert [i.status for i in items] == ["succeeded", "failed", "succeeded"]
    assert [r.node_id for r in items[0].items or []] == ["retrieve", "draft"]


def test_map_over_a_subflow_fails_fast_by_default(tmp_path: Path) -> None:
    text = (SPECS / "support_batch.yaml").read_text().replace("on_item_failure: collect", "")
    text = text.replace("nodes.answers.output.filter(a, a.ok)", "nodes.answers.output")
    plan = compile_plan(load_spec_text(text, str(SPECS / "batch_variant.yaml")))
    lines = [
        {"node": "answers.draft", "index": 0, "content": {"reply": "Use 'Forgot password' now."}},
        {"node": "answers.draft", "index": 1, "error": "bad_request"},
    ]
    result = run(plan, {"questions": ["a question", "another one"]}, responses(tmp_path, lines))
    assert result.status == "failed"
    assert "item 1" in (result.nodes["answers"].error or "")


def test_a_subflow_is_stopped_at_the_parent_s_remaining_cap(tmp_path: Path) -> None:
    text = (SPECS / "support_batch.yaml").read_text()
    text = text.replace("max_usd: 0.05", "max_usd: 0.0002").replace(
        "max_concurrency: 2", "max_concurrency: 1"
    )
    plan = compile_plan(load_spec_text(text, str(SPECS / "batch_variant.yaml")))
    child_cap = plan.nodes["answers"].map.inner.flow.plan.budget.max_usd  # type: ignore[union-attr]
    assert child_cap == 0.01  # the child alone would allow many more calls
    lines = [
        {"node": "answers.draft", "index": i, "content": {"reply": f"Answer number {i} is here."}}
        for i in range(3)
    ]
    result = run(plan, {"questions": ["one q", "two q", "three q"]}, responses(tmp_path, lines))
    assert result.status == "budget_exceeded"
    node = result.nodes["answers"]
    assert "the parent run's budget" in (node.error or "")
    assert "max_usd $0.0002" in (node.error or "")
    assert result.usage.cost_usd <= 0.0002
    assert 1 <= result.usage.llm_calls < 3


def test_worst_case_cost_multiplies_loops_and_maps() -> None:
    faq = compile_plan(load_spec(SPECS / "support_faq.yaml"))
    child = faq.nodes["answer"].flow.plan  # type: ignore[union-attr]
    assert faq.cost.per_node["answer"] == pytest.approx(child.cost.usd)
    body = faq.nodes["polish"].loop.body  # type: ignore[union-attr]
    assert faq.cost.per_node["polish"] == pytest.approx(body.cost.usd * 3)
    batch = compile_plan(load_spec(SPECS / "support_batch.yaml"))
    assert batch.cost.per_node["answers"] == pytest.approx(child.cost.usd * 20)
    assert batch.cost.llm_calls == child.cost.llm_calls * 20


def test_worst_case_per_profile_prices_subflows_under_that_profile() -> None:
    from runner.summary import summarize

    for spec in ("support_faq.yaml", "support_batch.yaml"):
        default = summarize(compile_plan(load_spec(SPECS / spec)))["worst_case_cost"]
        local = summarize(compile_plan(load_spec(SPECS / spec), "local"))["worst_case_cost"]
        assert default == local, spec  # the same figures whichever profile was compiled
        assert default["local"]["usd"] == 0.0, spec  # the child runs on the free local model too
        assert default["default"]["usd"] > 0.0, spec


def test_responses_may_name_nested_nodes_only(tmp_path: Path) -> None:
    plan = compile_plan(load_spec(SPECS / "support_faq.yaml"))
    rec = responses(tmp_path, [{"node": "polish.revize", "content": GOOD}])
    with pytest.raises(UsageError) as e:
        check_responses(plan, rec, "r.jsonl")
    assert "did you mean 'polish.revise'?" in (e.value.hint or "")


def test_cli_runs_and_shows_nested_results(tmp_path: Path, support_db: Path) -> None:
    lines = [{"node": "answer.draft", "content": GOOD}]
    lines += [{"node": "polish.revise", "content": r} for r in (REFUND, REFUND, REFUND)]
    rec = tmp_path / "r.jsonl"
    rec.write_text("".join(json.dumps(x) + "\n" for x in lines))
    store = tmp_path / "runs.db"
    p = run_flowrun(
        "execute",
        "specs/support_faq.yaml",
        "--input-json",
        '{"ticket_id": "T-1003"}',
        "--responses",
        rec,
        "--store",
        store,
        "--output",
        "json",
        "--run-id",
        "r-composition-1",
        cwd=REPO,
        db=support_db,
    )
    assert p.rc == 3, p  # escalated: the loop ran out of passes
    assert json.loads(p.stdout)["status"] == "escalated"
    shown = run_flowrun("show", "r-composition-1", "--store", store, "--output", "json", cwd=REPO)
    assert shown.rc == 0, shown
    polish = json.loads(shown.stdout)["nodes"]["polish"]
    assert [i["node_id"] for i in polish["items"]] == ["polish#1", "polish#2", "polish#3"]
    assert {n["node_id"] for n in polish["items"][0]["items"]} == {"revise", "check"}


def test_graph_draws_subflows_and_loops_as_nested_blocks() -> None:
    from runner.graph.model import from_plan
    from runner.graph.render import to_mermaid

    text = to_mermaid(from_plan(compile_plan(load_spec(SPECS / "support_faq.yaml"))))
    assert 'subgraph n_answer["answer<br/>flow flows/kb_answer.yaml"]' in text
    assert "n_answer__retrieve --> n_answer__draft" in text
    assert "n_polish__revise --> n_polish__check" in text
    assert "n_answer --> n_polish" in text


def test_bad_composition_input_is_reported_before_anything_runs() -> None:
    from runner.errors import SpecError

    base = (SPECS / "support_batch.yaml").read_text()
    scalar = base.replace('over: "${{ inputs.questions }}"', 'over: "just one question"')
    with pytest.raises(SpecError) as e:
        compile_plan(load_spec_text(scalar, str(SPECS / "scalar.yaml")))
    assert [d.rule for d in e.value.diagnostics] == ["map-not-array"]
    unbounded = (SPECS / "support_faq.yaml").read_text().replace("max_iterations: 3", "")
    with pytest.raises(SpecError) as e:
        compile_plan(load_spec_text(unbounded, str(SPECS / "unbounded.yaml")))
    assert [d.rule for d in e.value.diagnostics] == ["loop-bound"]
    too_many = (
        (SPECS / "support_faq.yaml")
        .read_text()
        .replace("max_iterations: 3", "max_iterations: 1000")
    )
    with pytest.raises(SpecError) as e:
        compile_plan(load_spec_text(too_many, str(SPECS / "too_many.yaml")))
    assert [d.rule for d in e.value.diagnostics] == ["loop-bound"]
    wrong_input = (SPECS / "support_faq.yaml").read_text().replace("{question:", "{questoin:")
    with pytest.raises(SpecError) as e:
        compile_plan(load_spec_text(wrong_input, str(SPECS / "wrong_input.yaml")))
    rules = sorted(d.rule for d in e.value.diagnostics)
    assert rules == ["missing-arg", "unknown-arg"]


def test_the_spec_s_policies_govern_tool_calls_inside_a_loop_body(tmp_path: Path) -> None:
    text = (SPECS / "support_faq.yaml").read_text()
    text = text.replace(
        "nodes:\n  intake:",
        "policies:\n"
        '  - {id: no-lookups-in-loops, when: \'tool == "get_ticket" && args.ticket_id == "T-1"\','
        " effect: deny, reason: not here}\n"
        "nodes:\n  intake:",
    )
    text = text.replace(
        "        check:\n          gate:",
        "        lookup:\n"
        "          tool: get_ticket\n"
        "          args: {ticket_id: T-1}\n"
        "        check:\n          gate:",
    )
    plan = compile_plan(load_spec_text(text, str(SPECS / "policy_variant.yaml")))
    lines = [{"node": "answer.draft", "content": GOOD}, {"node": "polish.revise", "content": GOOD}]
    result = run(plan, {"ticket_id": "T-1003"}, responses(tmp_path, lines))
    assert result.status == "denied", result.reason
    assert "no-lookups-in-loops" in (result.reason or "")
