"""The engine behaviour suite on both backends: the same cases, the same outcomes, on Temporal.

Cases are the local suite's own functions (tests/behaviour/test_engine.py), run here against a
`backend` fixture parametrized over local and temporal (a real dev server, in-process worker).
The composition features (loop, subflow, map over a subflow, switch, approval) run on both
backends in one test each, which compares node statuses (nested ones too), outputs, cost and
the side effects the tools really made.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.engine.results import NodeResult, RunResult
from runner.engine.run import execute
from runner.models.responses import RecordedResponses
from runner.plan.compile import compile_plan
from runner.plan.model import Plan
from runner.spec import load_spec
from runner.store import Store, open_store
from runner.temporal.activities import run_result_from_json
from tests.behaviour import btools
from tests.behaviour import test_engine as suite
from tests.behaviour.conftest import _litellm_warm  # noqa: F401  (session fixture, autouse)
from tests.temporal.conftest import ROOT
from tests.temporal.inproc import run_here, run_input, write_responses

_n = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_tool_log() -> Iterator[None]:
    btools.reset()
    yield
    btools.reset()


@pytest.fixture(params=["local", "temporal"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """`run(plan, inputs, responses=None) -> RunResult` on the backend named by the param."""
    if request.param == "local":
        return local_runner(tmp_path)
    return temporal_runner(request.getfixturevalue("temporal_address"), tmp_path)


def local_runner(tmp_path: Path) -> Any:
    async def run_local(
        plan: Plan, inputs: dict[str, Any], responses: list[dict[str, Any]] | None = None
    ) -> RunResult:
        path = write_responses(tmp_path / f"responses-{next(_n)}.jsonl", responses)
        return await execute(plan, inputs, responses=RecordedResponses.load(path))

    return run_local


def temporal_runner(address: str, tmp_path: Path) -> Any:
    store = open_store(tmp_path / "flowrun.db")

    async def run_temporal(
        plan: Plan, inputs: dict[str, Any], responses: list[dict[str, Any]] | None = None
    ) -> RunResult:
        n = next(_n)
        path = write_responses(tmp_path / f"responses-{n}.jsonl", responses)
        run = run_input(plan, inputs, store=store, run_id=f"p{n}", responses=path)
        result, _ = await run_here(address, run)
        return result

    return run_temporal


# Cases the two backends share. Left out, with the reason:
# - cases that bound the whole call in wall time (fan-out, timeouts, max_seconds): on Temporal
#   that time also holds starting an in-process worker (~0.1-0.5 s here); a Temporal round trip
#   per node on a shared 2-core machine makes them flaky, not wrong.
CASES = [
    "test_when_false_skips_and_join_decides_what_follows",
    "test_when_true_runs_everything",
    "test_switch_runs_the_chosen_branch_and_skips_the_others",
    "test_a_failure_lets_running_nodes_finish_but_starts_no_new_ones",
    "test_retry_succeeds_on_the_third_attempt",
    "test_retry_gives_up_after_max_attempts",
    "test_retry_on_timeout_only_does_not_retry_a_plain_error",
    "test_reask_with_validation_errors_until_the_answer_fits",
    "test_reask_bound_fails_the_node_with_the_validation_errors",
    "test_provider_error_falls_back_to_the_next_model",
    "test_every_model_failing_fails_the_node",
    "test_node_retry_covers_provider_errors",
    "test_budget_too_small_for_the_first_call_makes_no_call",
    "test_capped_nodes_whose_worst_case_passes_the_cap_run_one_at_a_time",
    "test_capped_nodes_run_in_parallel_as_far_as_their_worst_cases_fit",
    "test_budget_admits_the_first_call_but_not_the_second",
    "test_max_llm_calls_stops_a_reask",
    "test_a_call_is_reserved_at_the_costliest_model_of_its_route",
    "test_a_call_is_settled_at_the_price_of_the_model_that_answered",
    "test_a_call_cut_off_by_a_failed_sibling_counts_its_reservation",
    "test_parallel_llm_nodes_never_pass_max_llm_calls",
    "test_max_tool_calls_refuses_the_call_past_the_cap",
    "test_max_tokens_refuses_a_call_that_could_pass_it",
    "test_a_map_item_past_the_budget_stops_the_map",
    "test_gate_passes_and_the_run_continues",
    "test_failed_gate_stops_the_run",
    "test_gate_lists_every_failed_check",
    "test_map_bounds_concurrency_and_keeps_input_order",
    "test_a_failing_item_fails_the_map",
    "test_map_over_more_than_max_items_fails_before_any_call",
    "test_map_of_llm_items_reads_responses_by_index",
    "test_map_items_read_the_nodes_the_map_needs",
    "test_args_not_matching_the_derived_schema_fail_naming_the_field",
    "test_a_raising_tool_fails_the_node_with_its_message",
    "test_idempotency_key_from_the_contract_expression",
    "test_idempotency_key_defaults_to_run_and_node_and_is_stable_on_retry",
    "test_idempotency_key_inside_a_map_adds_the_index",
    "test_outputs_and_to_json_carry_every_node_and_the_totals",
]

for _name in CASES:
    globals()[_name] = getattr(suite, _name)


# --- composition features, both backends in one test --------------------------------------------

GOOD = {"reply": "You can reset your password from the sign-in page in a minute."}
REFUND = {"reply": "We will refund the order and reset your password today."}
USAGE = {"prompt_tokens": 300, "completion_tokens": 30}


def shape(r: NodeResult) -> Any:
    """A node's status with its nested results' (map items, loop passes, subflow nodes)."""
    if r.items is None:
        return r.status
    return (r.status, [(i.node_id, shape(i)) for i in r.items])


def same_run(local: RunResult, temporal: RunResult) -> None:
    """Both backends ended the same way: statuses, outputs, node outputs, cost."""
    assert (temporal.status, temporal.reason) == (local.status, local.reason)
    assert {n: shape(r) for n, r in temporal.nodes.items()} == {
        n: shape(r) for n, r in local.nodes.items()
    }
    assert temporal.outputs == local.outputs
    assert {n: r.output for n, r in temporal.nodes.items()} == {
        n: r.output for n, r in local.nodes.items()
    }
    lu, tu = local.usage.to_json(), temporal.usage.to_json()
    assert tu == {**lu, "cost_usd": pytest.approx(lu["cost_usd"])}


@pytest.fixture
def support_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from tools.seed import seed

    db = tmp_path / "support.db"
    seed(db)
    monkeypatch.setenv("FLOWRUN_SUPPORT_DB", str(db))
    return db


def on_both(
    address: str, tmp_path: Path, plan: Plan, inputs: dict[str, Any], lines: list[dict[str, Any]]
) -> tuple[RunResult, RunResult]:
    lines = [{**x, "usage": USAGE} if "content" in x else x for x in lines]
    local = asyncio.run(local_runner(tmp_path)(plan, inputs, lines))
    temporal = asyncio.run(temporal_runner(address, tmp_path)(plan, inputs, lines))
    return local, temporal


@pytest.mark.parametrize(
    ("revisions", "status"), [([REFUND, GOOD], "succeeded"), ([REFUND] * 3, "escalated")]
)
def test_a_loop_around_a_subflow_ends_the_same_on_both_backends(
    temporal_address: str, tmp_path: Path, support_db: Path, revisions: Any, status: str
) -> None:
    plan = compile_plan(load_spec(ROOT / "specs" / "support_faq.yaml"))
    lines = [{"node": "answer.draft", "content": GOOD}]
    lines += [{"node": "polish.revise", "content": r} for r in revisions]
    local, temporal = on_both(temporal_address, tmp_path, plan, {"ticket_id": "T-1003"}, lines)
    assert local.status == status, local.reason
    same_run(local, temporal)


def test_a_map_over_a_subflow_ends_the_same_on_both_backends(
    temporal_address: str, tmp_path: Path, support_db: Path
) -> None:
    plan = compile_plan(load_spec(ROOT / "specs" / "support_batch.yaml"))
    qs = ["how do I reset my password", "where is my parcel", "can I change my address"]
    lines = [
        {"node": "answers.draft", "index": 0, "content": {"reply": "Use 'Forgot password'."}},
        {"node": "answers.draft", "index": 1, "error": "bad_request"},
        {"node": "answers.draft", "index": 2, "content": {"reply": "Under Account, Addresses."}},
    ]
    local, temporal = on_both(temporal_address, tmp_path, plan, {"questions": qs}, lines)
    assert local.status == "succeeded", local.reason
    assert [i.status for i in local.nodes["answers"].items or []] == [
        "succeeded",
        "failed",
        "succeeded",
    ]
    same_run(local, temporal)


def _writes(log: Path) -> list[tuple[str, str | None]]:
    if not log.exists():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return [(r["label"], r["key"]) for r in rows if r["kind"] == "write"]


@pytest.mark.parametrize(("note", "branch"), [("fast", "fast"), ("slow", "careful")])
def test_an_approval_then_a_switch_ends_the_same_on_both_backends(
    temporal_address: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    note: str,
    branch: str,
) -> None:
    """Park at the approval, approve with a decision, go on through the switch to one write."""
    from temporalio.client import Client

    from runner.backends.local import run_durably
    from runner.runs import Runs, create_run
    from runner.temporal.client import Target, settle, start
    from runner.temporal.client import decide as wake
    from runner.temporal.worker import make_worker

    plan = compile_plan(load_spec(ROOT / "tests" / "temporal" / "specs" / "approve.yaml"))
    options = {"live": True}
    rid = f"approve-{note}-{next(_n)}"  # one run id on both: the same idempotency keys

    async def local(store: Store) -> tuple[RunResult, RunResult]:
        create_run(store, plan, {}, run_id=rid, responses_path=None, options=options)
        parked = await run_durably(store, plan, {}, run_id=rid)
        runs = Runs(store)
        runs.record_decision(rid, "ok", approve=True, by="alice", decision={"note": note})
        return parked, await runs.resume(rid)

    async def temporal(store: Store) -> tuple[RunResult, RunResult]:
        run = run_input(plan, {}, store=store, run_id=rid, responses=None, options=options)
        client = await Client.connect(temporal_address)
        queue = f"parity-approve-{next(_n)}"
        async with make_worker(client, task_queue=queue):
            handle = await start(client, run, Target(address=temporal_address, task_queue=queue))
            parked = run_result_from_json(await settle(handle, poll_s=0.05))
            Runs(store).record_decision(
                rid, "ok", approve=True, by="alice", decision={"note": note}
            )
            await wake(client, rid, "ok")
            return parked, run_result_from_json(await handle.result())

    monkeypatch.setenv("TTOOLS_LOG", str(tmp_path / "local.log"))
    lp, lf = asyncio.run(local(open_store(tmp_path / "local.db")))
    monkeypatch.setenv("TTOOLS_LOG", str(tmp_path / "temporal.log"))
    tp, tf = asyncio.run(temporal(open_store(tmp_path / "temporal.db")))
    assert lp.status == "waiting" and lf.status == "succeeded", lf.reason
    assert lf.outputs == {"note": note}
    assert lf.nodes["pick"].output["chosen"] == [branch]
    assert tp.status == "waiting"
    assert {n: shape(r) for n, r in tp.nodes.items()} == {n: shape(r) for n, r in lp.nodes.items()}
    same_run(lf, tf)
    # one real write on each backend, the chosen branch's, under the same idempotency key
    assert _writes(tmp_path / "local.log") == _writes(tmp_path / "temporal.log")
    assert [label for label, _ in _writes(tmp_path / "local.log")] == [branch]
