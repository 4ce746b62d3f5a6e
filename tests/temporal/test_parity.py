"""The engine behaviour suite on both backends: the same cases, the same outcomes, on Temporal.

Cases are the local suite's own functions (tests/behaviour/test_engine.py), run here against a
`backend` fixture parametrized over local and temporal (a real dev server, in-process worker).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.engine.results import RunResult
from runner.engine.run import execute
from runner.models.responses import RecordedResponses
from runner.plan.model import Plan
from runner.store.db import Store
from tests.behaviour import btools
from tests.behaviour import test_engine as suite
from tests.behaviour.conftest import _litellm_warm  # noqa: F401  (session fixture, autouse)
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

        async def run_local(
            plan: Plan, inputs: dict[str, Any], responses: list[dict[str, Any]] | None = None
        ) -> RunResult:
            path = write_responses(tmp_path / f"responses-{next(_n)}.jsonl", responses)
            return await execute(plan, inputs, responses=RecordedResponses.load(path))

        return run_local
    address = request.getfixturevalue("temporal_address")
    store = Store(tmp_path / "flowrun.db")

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
