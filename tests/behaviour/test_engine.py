"""Engine behaviour every backend must show: scheduling, skips, retries, budgets, gates, maps."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import pytest

from runner.engine.hooks import Hooks
from runner.engine.results import RunResult
from runner.engine.run import execute
from runner.models.pricing import price_of
from runner.plan.model import Plan
from tests.behaviour import btools
from tests.behaviour.conftest import FALLBACK, PRIMARY, Run, plan_of

Responses = list[dict[str, Any]] | None

CLASSIFY = """
    llm: {alias}
    prompt: "classify ticket {n}"
    output:
      type: object
      properties: {{category: {{enum: [refund, other]}}}}
      required: [category]
      additionalProperties: false
"""


def llm_node(name: str, alias: str = "small", extra: str = "") -> str:
    """A structured-output LLM node in YAML, at node indentation."""
    body = CLASSIFY.format(alias=alias, n=name) + "".join(
        f"    {line}\n" for line in extra.splitlines()
    )
    return f"  {name}:{body}"


def answer(node: str, category: str = "refund", **kw: Any) -> dict[str, Any]:
    """A recorded valid answer for `node`."""
    return {"node": node, "content": {"category": category}, **kw}


def run(
    backend: Run, plan: Plan, inputs: dict[str, Any] | None = None, responses: Responses = None
) -> RunResult:
    return asyncio.run(backend(plan, inputs or {}, responses))


def statuses(result: RunResult) -> dict[str, str]:
    return {nid: r.status for nid, r in result.nodes.items()}


def timed(
    backend: Run, plan: Plan, inputs: dict[str, Any] | None = None, responses: Responses = None
) -> tuple[RunResult, float]:
    t0 = time.perf_counter()
    result = run(backend, plan, inputs, responses)
    return result, time.perf_counter() - t0


# --- concurrency ----------------------------------------------------------------------------


def test_fan_out_of_async_tools_runs_concurrently(backend: Run) -> None:
    nodes = "".join(
        f"  n{i}: {{tool: sleepy, args: {{name: n{i}, seconds: 0.2}}}}\n" for i in range(10)
    )
    plan = plan_of("nodes:\n" + nodes)
    result, elapsed = timed(backend, plan)
    assert result.status == "succeeded", result.reason
    assert statuses(result) == {f"n{i}": "succeeded" for i in range(10)}
    assert btools.LOG.peak == 10
    assert elapsed < 0.6
    assert 0.2 <= result.duration_s < 0.6


def test_ready_set_scheduling_starts_a_node_when_its_own_needs_are_done(backend: Run) -> None:
    plan = plan_of(
        """
        nodes:
          a: {tool: sleepy, args: {name: a, seconds: 0.05}}
          b: {tool: sleepy, args: {name: b, seconds: 0.3}}
          c: {tool: sleepy, needs: [a], args: {name: c, seconds: 0.01}}
          d: {tool: sleepy, needs: [b], args: {name: d, seconds: 0.01}}
        """
    )
    result = run(backend, plan)
    assert result.status == "succeeded", result.reason
    spans = btools.LOG.spans
    assert spans["c"][0] >= spans["a"][1]
    assert spans["d"][0] >= spans["b"][1]
    assert spans["c"][0] < spans["b"][1] - 0.1  # no level barrier: c did not wait for b
    assert spans["c"][1] < spans["b"][1]


def test_fan_out_of_llm_calls_takes_about_one_latency(backend: Run) -> None:
    plan = plan_of("nodes:\n" + "".join(llm_node(f"c{i}") for i in range(5)))
    responses = [answer(f"c{i}", latency_s=0.2) for i in range(5)]
    result, elapsed = timed(backend, plan, responses=responses)
    assert result.status == "succeeded", result.reason
    assert result.usage.llm_calls == 5
    assert 0.2 <= elapsed < 0.5
    for i in range(5):
        assert result.nodes[f"c{i}"].duration_s >= 0.2


# --- skip propagation -----------------------------------------------------------------------

SKIPS = """
inputs:
  type: object
  properties: {go: {type: boolean}}
  required: [go]
nodes:
  a: {tool: echo, when: inputs.go, args: {value: 1}}
  b: {tool: echo, args: {value: "${{ nodes.a.output.value }}"}}
  x: {tool: echo, args: {value: x}}
  c: {tool: echo, needs: [a, x], join: any, args: {value: "${{ nodes.a.output }}"}}
  d: {tool: echo, needs: [a, b], join: any, args: {value: d}}
outputs:
  a: "${{ nodes.a.output }}"
  a_status: "${{ nodes.a.status }}"
  c: "${{ nodes.c.output.value }}"
  a_is_null: "${{ nodes.a.output == null }}"
"""


def test_when_false_skips_and_join_decides_what_follows(backend: Run) -> None:
    result = run(backend, plan_of(SKIPS), {"go": False})
    assert result.status == "succeeded", result.reason
    assert statuses(result) == {
        "a": "skipped",
        "b": "skipped",
        "x": "succeeded",
        "c": "succeeded",
        "d": "skipped",
    }
    assert result.nodes["a"].detail["reason"] == "its `when` is false"
    assert result.nodes["b"].detail["reason"] == "'a' was skipped"
    assert result.nodes["d"].detail["reason"] == "every node it needs was skipped"
    assert result.nodes["a"].output is None and result.nodes["a"].attempts == 0
    # a skipped node reads as null in later expressions
    assert result.nodes["c"].output == {"value": None}
    assert result.outputs == {"a": None, "a_status": "skipped", "c": None, "a_is_null": True}
    assert btools.LOG.calls == {"echo": 2}


def test_when_true_runs_everything(backend: Run) -> None:
    result = run(backend, plan_of(SKIPS), {"go": True})
    assert result.status == "succeeded", result.reason
    assert set(statuses(result).values()) == {"succeeded"}
    assert result.nodes["b"].output == {"value": 1}
    assert result.outputs == {
        "a": {"value": 1},
        "a_status": "succeeded",
        "c": {"value": 1},
        "a_is_null": False,
    }
    assert btools.LOG.calls == {"echo": 5}


SWITCH = """
inputs:
  type: object
  properties: {kind: {type: string}}
nodes:
  route:
    switch:
      cases:
        - when: 'inputs.kind == "a"'
          then: [pa]
        - when: 'inputs.kind == "b"'
          then: [pb]
      default: [pd]
  pa: {tool: sleepy, args: {name: pa}}
  pb: {tool: sleepy, args: {name: pb}}
  pd: {tool: sleepy, args: {name: pd}}
  after_a: {tool: sleepy, needs: [pa], args: {name: after_a}}
  merge:
    tool: echo
    needs: [pa, pb, pd]
    join: any
    args: {value: "${{ nodes.route.output.branch }}"}
"""


@pytest.mark.parametrize(
    ("kind", "branch", "ran"),
    [("a", 0, {"pa", "after_a"}), ("b", 1, {"pb"}), ("zzz", "default", {"pd"})],
)
def test_switch_runs_the_chosen_branch_and_skips_the_others(
    backend: Run, kind: str, branch: int | str, ran: set[str]
) -> None:
    result = run(backend, plan_of(SWITCH), {"kind": kind})
    assert result.status == "succeeded", result.reason
    assert result.nodes["route"].output == {
        "branch": branch,
        "chosen": ["pd"] if branch == "default" else [f"p{kind}"],
    }
    branch_nodes = {"pa", "pb", "pd", "after_a"}
    assert {n for n in branch_nodes if result.nodes[n].status == "succeeded"} == ran
    assert {n for n in branch_nodes if result.nodes[n].status == "skipped"} == branch_nodes - ran
    if "pa" not in ran:
        assert result.nodes["pa"].detail["reason"] == "switch 'route' chose another branch"
        assert result.nodes["after_a"].detail["reason"] == "'pa' was skipped"
    assert set(btools.LOG.calls) == ran | {"echo"}
    assert result.nodes["merge"].output == {"value": branch}


def test_a_failure_lets_running_nodes_finish_but_starts_no_new_ones(backend: Run) -> None:
    plan = plan_of(
        """
        nodes:
          a: {tool: explode, args: {reason: broken}}
          b: {tool: sleepy, args: {name: b, seconds: 0.1}}
          c: {tool: sleepy, needs: [b], args: {name: c}}
        """
    )
    result = run(backend, plan)
    assert result.status == "failed"
    assert result.reason == "node 'a': tool 'explode' raised ValueError: broken"
    assert statuses(result) == {"a": "failed", "b": "succeeded"}
    assert set(btools.LOG.calls) == {"explode", "b"}
    assert result.outputs == {}


# --- retry and timeout ----------------------------------------------------------------------


def flaky_plan(retry: str) -> Plan:
    return plan_of(
        f"""
        nodes:
          f:
            tool: flaky
            args: {{name: f, failures: 2}}
            retry: {retry}
        """
    )


def test_retry_succeeds_on_the_third_attempt(backend: Run) -> None:
    result = run(backend, flaky_plan("{max_attempts: 3, backoff: 10ms}"))
    node = result.nodes["f"]
    assert result.status == "succeeded", result.reason
    assert (node.status, node.attempts, node.output) == ("succeeded", 3, {"call": 3})
    assert node.detail["retried"] == [
        "tool 'flaky' raised RuntimeError: boom 1",
        "tool 'flaky' raised RuntimeError: boom 2",
    ]
    assert node.duration_s >= 0.03  # backoff 10ms then 20ms
    assert btools.LOG.calls == {"f": 3}
    assert result.usage.tool_calls == 3


def test_retry_gives_up_after_max_attempts(backend: Run) -> None:
    result = run(backend, flaky_plan("{max_attempts: 2, backoff: 10ms}"))
    node = result.nodes["f"]
    assert result.status == "failed"
    assert (node.status, node.attempts) == ("failed", 2)
    assert node.error == "tool 'flaky' raised RuntimeError: boom 2"
    assert result.reason == "node 'f': tool 'flaky' raised RuntimeError: boom 2"
    assert btools.LOG.calls == {"f": 2}


def test_retry_on_timeout_only_does_not_retry_a_plain_error(backend: Run) -> None:
    result = run(backend, flaky_plan("{max_attempts: 3, backoff: 10ms, on: [timeout]}"))
    node = result.nodes["f"]
    assert (result.status, node.status, node.attempts) == ("failed", "failed", 1)
    assert node.error == "tool 'flaky' raised RuntimeError: boom 1"
    assert btools.LOG.calls == {"f": 1}


def test_timeout_fails_a_slow_node(backend: Run) -> None:
    plan = plan_of(
        """
        nodes:
          s:
            tool: slow_then_fast
            timeout: 100ms
            args: {name: s, slow_calls: 9, seconds: 0.3}
          after: {tool: echo, needs: [s]}
        """
    )
    result, elapsed = timed(backend, plan)
    node = result.nodes["s"]
    assert (result.status, node.status, node.attempts) == ("failed", "failed", 1)
    assert node.error is not None and "timed out after 0.1s" in node.error
    assert 0.09 <= node.duration_s < 0.25
    assert elapsed < 0.3
    assert "after" not in result.nodes and "echo" not in btools.LOG.calls


def test_timeout_is_retried_when_retry_on_includes_timeout(backend: Run) -> None:
    plan = plan_of(
        """
        nodes:
          s:
            tool: slow_then_fast
            timeout: 100ms
            retry: {max_attempts: 3, backoff: 10ms, on: [timeout]}
            args: {name: s, slow_calls: 1, seconds: 0.3}
        """
    )
    result = run(backend, plan)
    node = result.nodes["s"]
    assert result.status == "succeeded", result.reason
    assert (node.status, node.attempts, node.output) == ("succeeded", 2, {"call": 2})
    assert node.detail["retried"] == ["timed out after 0.1s"]
    assert 0.1 <= node.duration_s < 0.3


def test_timeout_applies_to_llm_latency(backend: Run) -> None:
    plan = plan_of("nodes:\n" + llm_node("c", extra="timeout: 100ms"))
    result, elapsed = timed(backend, plan, responses=[answer("c", latency_s=0.3)])
    node = result.nodes["c"]
    assert (result.status, node.status) == ("failed", "failed")
    assert node.error == "timed out after 0.1s"
    assert elapsed < 0.3
    # cut off in flight: the provider may have billed it, so the call keeps its reservation
    # (its prompt and the node's max_tokens at the route's costliest price) as spent
    assert result.usage.llm_calls == 1 and result.usage.output_tokens == 100
    assert node.usage.cost_usd == result.usage.cost_usd > 0


# --- LLM re-ask and fallbacks ---------------------------------------------------------------

REASK = [
    {
        "node": "c",
        "content": "Sure! It is a refund.",
        "usage": {"prompt_tokens": 90, "completion_tokens": 8},
    },
    {
        "node": "c",
        "content": {"category": "bogus"},
        "usage": {"prompt_tokens": 150, "completion_tokens": 6},
    },
    {
        "node": "c",
        "content": {"category": "refund"},
        "usage": {"prompt_tokens": 210, "completion_tokens": 6},
    },
]


def test_reask_with_validation_errors_until_the_answer_fits(backend: Run) -> None:
    plan = plan_of("nodes:\n" + llm_node("c"))
    result = run(backend, plan, responses=REASK)
    node = result.nodes["c"]
    assert result.status == "succeeded", result.reason
    assert (node.status, node.attempts, node.output) == ("succeeded", 3, {"category": "refund"})
    assert node.model == PRIMARY
    assert node.usage.llm_calls == 3 and result.usage.llm_calls == 3
    assert (node.usage.input_tokens, node.usage.output_tokens) == (450, 20)
    rejected = node.detail["rejected"]
    assert len(rejected) == 2
    assert rejected[0].startswith("the answer is not valid JSON")
    assert rejected[1].startswith("category: 'bogus' is not one of")
    price = price_of(PRIMARY)
    assert price is not None
    expected = 450 * price.input_per_token + 20 * price.output_per_token
    assert node.usage.cost_usd == pytest.approx(expected, rel=1e-6)


def test_reask_bound_fails_the_node_with_the_validation_errors(backend: Run) -> None:
    plan = plan_of("nodes:\n" + llm_node("c", extra="max_attempts: 2"))
    result = run(backend, plan, responses=REASK)
    node = result.nodes["c"]
    assert (result.status, node.status, node.attempts) == ("failed", "failed", 2)
    assert node.error is not None
    assert node.error.startswith("the answer did not match the output schema after 2 asks")
    assert "category: 'bogus' is not one of ['refund', 'other']" in node.error
    assert node.output is None
    assert result.usage.llm_calls == 2


def test_provider_error_falls_back_to_the_next_model(backend: Run) -> None:
    plan = plan_of("nodes:\n" + llm_node("c"))
    responses = [{"node": "c", "error": "rate_limit"}, answer("c", category="other")]
    result = run(backend, plan, responses=responses)
    node = result.nodes["c"]
    assert result.status == "succeeded", result.reason
    assert (node.status, node.output, node.model) == ("succeeded", {"category": "other"}, FALLBACK)
    assert node.detail["provider_errors"] == [f"{PRIMARY}: rate_limit"]
    assert node.usage.llm_calls == 1  # the refused call cost nothing


def test_every_model_failing_fails_the_node(backend: Run) -> None:
    plan = plan_of("nodes:\n" + llm_node("c"))
    responses = [
        {"node": "c", "error": "rate_limit"},
        {"node": "c", "error": "internal_server_error"},
    ]
    result = run(backend, plan, responses=responses)
    node = result.nodes["c"]
    assert (result.status, node.status) == ("failed", "failed")
    assert node.error is not None and node.error.startswith("every model of the route failed")
    assert f"{PRIMARY}: rate_limit" in node.error
    assert f"{FALLBACK}: internal_server_error" in node.error
    assert result.usage.llm_calls == 0 and result.usage.cost_usd == 0


def test_node_retry_covers_provider_errors(backend: Run) -> None:
    plan = plan_of(
        "nodes:\n" + llm_node("c", alias="solo", extra="retry: {max_attempts: 2, backoff: 10ms}")
    )
    responses = [{"node": "c", "error": "rate_limit"}, answer("c")]
    result = run(backend, plan, responses=responses)
    node = result.nodes["c"]
    assert result.status == "succeeded", result.reason
    assert (node.status, node.model, node.usage.llm_calls) == ("succeeded", PRIMARY, 1)
    assert node.attempts == 2


# --- budgets --------------------------------------------------------------------------------


def test_budget_too_small_for_the_first_call_makes_no_call(backend: Run) -> None:
    plan = plan_of("budget: {max_usd: 0.000001}\nnodes:\n" + llm_node("c"))
    result = run(backend, plan, responses=[answer("c")])
    node = result.nodes["c"]
    assert (result.status, node.status) == ("budget_exceeded", "budget_exceeded")
    assert result.reason is not None and "max_usd" in result.reason
    assert result.usage.llm_calls == 0
    assert result.usage.cost_usd == 0
    assert result.usage.tokens == 0


def test_budget_admits_the_first_call_but_not_the_second(backend: Run) -> None:
    # each call reserves prompt + 100 max tokens (~$0.00007; `solo` has no pricier fallback to
    # reserve at); the first really spends $0.000075
    cap = 0.00013
    plan = plan_of(
        f"budget: {{max_usd: {cap}}}\nnodes:\n"
        + llm_node("a", alias="solo")
        + llm_node("b", alias="solo", extra="needs: [a]")
    )
    usage = {"prompt_tokens": 100, "completion_tokens": 100}
    result = run(backend, plan, responses=[answer("a", usage=usage), answer("b", usage=usage)])
    assert result.status == "budget_exceeded"
    assert statuses(result) == {"a": "succeeded", "b": "budget_exceeded"}
    assert result.usage.llm_calls == 1
    assert 0 < result.usage.cost_usd <= cap
    assert result.reason is not None and result.reason.startswith("node 'b': ")


def test_capped_nodes_whose_worst_case_passes_the_cap_run_one_at_a_time(backend: Run) -> None:
    # each node could cost ~$0.0017 (three asks on the pricier fallback), more than the whole
    # cap: the scheduler starts them one at a time, each against what the others really spent;
    # each call reserves ~$0.00057 (one ask priced at the fallback) and really spends ~$0.00007
    plan = plan_of("budget: {max_usd: 0.0009}\nnodes:\n" + "".join(llm_node(n) for n in "abc"))
    responses = [answer(n, latency_s=0.05) for n in "abc"]
    result = run(backend, plan, responses=responses)
    assert result.status == "succeeded", result.reason
    assert result.usage.llm_calls == 3
    assert result.usage.cost_usd <= 0.0009
    spans = sorted(
        (r.started_at or 0.0, (r.started_at or 0.0) + r.duration_s) for r in result.nodes.values()
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.01  # no two overlapped


def test_capped_nodes_run_in_parallel_as_far_as_their_worst_cases_fit(backend: Run) -> None:
    # room for two worst cases (~$0.00165 each), not three: a and b run together, c waits for
    # one of them; then real spend (far below the worst case) leaves room for c
    plan = plan_of("budget: {max_usd: 0.004}\nnodes:\n" + "".join(llm_node(n) for n in "abc"))
    responses = [answer(n, latency_s=0.3) for n in "abc"]
    result = run(backend, plan, responses=responses)
    assert result.status == "succeeded", result.reason
    assert result.usage.llm_calls == 3 and result.usage.cost_usd <= 0.004
    a, b, c = (result.nodes[n] for n in "abc")
    assert a.started_at is not None and b.started_at is not None and c.started_at is not None
    assert abs(a.started_at - b.started_at) < 0.25  # together
    assert c.started_at >= min(a.started_at + a.duration_s, b.started_at + b.duration_s) - 0.01


def test_parallel_llm_nodes_never_pass_max_llm_calls(backend: Run) -> None:
    plan = plan_of("budget: {max_llm_calls: 2}\nnodes:\n" + "".join(llm_node(n) for n in "abc"))
    result = run(backend, plan, responses=[answer(n, latency_s=0.05) for n in "abc"])
    assert result.status == "budget_exceeded"
    assert result.usage.llm_calls == 2
    assert sorted(statuses(result).values()) == ["budget_exceeded", "succeeded", "succeeded"]


def test_a_call_is_reserved_at_the_costliest_model_of_its_route(backend: Run) -> None:
    # one ask reserves its prompt + 100 max tokens: ~$0.00007 on gpt-4o-mini, ~$0.00057 on the
    # route's fallback claude-haiku-4-5; a cap between the two refuses to start the call
    body = "budget: {max_usd: 0.0003}\nnodes:\n"
    result = run(backend, plan_of(body + llm_node("c")), responses=[answer("c")])
    node = result.nodes["c"]
    assert (result.status, node.status) == ("budget_exceeded", "budget_exceeded")
    assert node.error is not None and f"a call to {PRIMARY} could cost up to $0.0005" in node.error
    assert result.usage.llm_calls == 0 and result.usage.cost_usd == 0
    # the same cap holds the same call on a route without the pricier fallback
    solo = run(backend, plan_of(body + llm_node("c", alias="solo")), responses=[answer("c")])
    assert solo.status == "succeeded", solo.reason
    assert solo.usage.llm_calls == 1


def test_a_call_is_settled_at_the_price_of_the_model_that_answered(backend: Run) -> None:
    # the provider answered with the pricier model: the run pays what that model costs
    plan = plan_of("nodes:\n" + llm_node("c"))
    usage = {"prompt_tokens": 100, "completion_tokens": 20}
    result = run(backend, plan, responses=[answer("c", usage=usage, model=FALLBACK)])
    price = price_of(FALLBACK)
    assert price is not None
    billed = 100 * price.input_per_token + 20 * price.output_per_token
    assert result.status == "succeeded", result.reason
    assert result.usage.cost_usd == pytest.approx(billed)
    assert (result.usage.input_tokens, result.usage.output_tokens) == (100, 20)


def test_a_call_cut_off_by_a_failed_sibling_counts_its_reservation(backend: Run) -> None:
    # item 1's call is in flight when item 0 fails (its provider refused it, which costs
    # nothing); the map stops and cuts item 1 off, but the provider may have billed it
    plan = plan_of(
        """
        nodes:
          each:
            map:
              over: "${{ [0, 1] }}"
              node:
                llm: solo
                prompt: "classify ticket {{ item }}"
                output:
                  type: object
                  properties: {category: {enum: [refund, other]}}
                  required: [category]
        """
    )
    responses = [
        {"node": "each", "index": 0, "error": "auth", "latency_s": 0.2},
        {"node": "each", "index": 1, "content": {"category": "other"}, "latency_s": 30},
    ]
    result = run(backend, plan, responses=responses)
    assert result.status == "failed", result.reason
    node = result.nodes["each"]
    price = price_of(PRIMARY)
    assert price is not None
    # one call counted, at its reservation: its prompt and max_tokens 100 at the route's price
    assert (node.usage.llm_calls, node.usage.output_tokens) == (1, 100)
    prompt = node.usage.input_tokens
    reserved = prompt * price.input_per_token + 100 * price.output_per_token
    assert node.usage.cost_usd == pytest.approx(reserved)
    assert result.usage.cost_usd == pytest.approx(reserved)


def test_max_llm_calls_stops_a_reask(backend: Run) -> None:
    plan = plan_of("budget: {max_llm_calls: 1}\nnodes:\n" + llm_node("c"))
    result = run(backend, plan, responses=REASK)
    node = result.nodes["c"]
    assert (result.status, node.status) == ("budget_exceeded", "budget_exceeded")
    assert node.error is not None and node.error.startswith("max_llm_calls 1 reached")
    assert result.usage.llm_calls == 1


def test_max_tool_calls_refuses_the_call_past_the_cap(backend: Run) -> None:
    plan = plan_of(
        """
        budget: {max_tool_calls: 2}
        nodes:
          t1: {tool: sleepy, args: {name: t1}}
          t2: {tool: sleepy, needs: [t1], args: {name: t2}}
          t3: {tool: sleepy, needs: [t2], args: {name: t3}}
        """
    )
    result = run(backend, plan)
    assert result.status == "budget_exceeded"
    assert statuses(result) == {"t1": "succeeded", "t2": "succeeded", "t3": "budget_exceeded"}
    assert result.nodes["t3"].error == "max_tool_calls 2 reached; sleepy was not called"
    assert btools.LOG.calls == {"t1": 1, "t2": 1}
    assert result.usage.tool_calls == 2


def test_max_tokens_refuses_a_call_that_could_pass_it(backend: Run) -> None:
    plan = plan_of("budget: {max_tokens: 120}\nnodes:\n" + llm_node("c"))  # prompt + 100 > 120
    result = run(backend, plan, responses=[answer("c")])
    node = result.nodes["c"]
    assert (result.status, node.status) == ("budget_exceeded", "budget_exceeded")
    assert node.error is not None and "max_tokens 120" in node.error
    assert result.usage.llm_calls == 0 and result.usage.tokens == 0


def test_max_seconds_stops_a_slow_run(backend: Run) -> None:
    plan = plan_of(
        """
        budget: {max_seconds: 100ms}
        nodes:
          slow: {tool: sleepy, args: {name: slow, seconds: 0.3}}
          next: {tool: echo, needs: [slow]}
        """
    )
    result, elapsed = timed(backend, plan)
    assert result.status == "budget_exceeded"
    assert result.reason == "max_seconds 0.1 reached"
    assert statuses(result) == {"slow": "budget_exceeded", "next": "budget_exceeded"}
    assert elapsed < 0.25
    assert "slow" not in btools.LOG.spans and "echo" not in btools.LOG.calls


def test_a_map_item_past_the_budget_stops_the_map(backend: Run) -> None:
    plan = plan_of(
        """
        budget: {max_tool_calls: 2}
        inputs: {type: object, properties: {ids: {type: array, items: {type: string}}}}
        nodes:
          m:
            map:
              over: "${{ inputs.ids }}"
              max_concurrency: 1
              node: {tool: keyed, args: {order_id: "${{ item }}"}}
        """
    )
    result = run(backend, plan, {"ids": ["O-1", "O-2", "O-3"]})
    node = result.nodes["m"]
    assert (result.status, node.status) == ("budget_exceeded", "budget_exceeded")
    assert node.error == "item 2: max_tool_calls 2 reached; keyed was not called"
    assert btools.LOG.calls == {"keyed": 2}
    assert node.usage.tool_calls == 2 and result.usage.tool_calls == 2


# --- gates ----------------------------------------------------------------------------------


def gate_plan(on_fail: str) -> Plan:
    return plan_of(
        f"""
        inputs:
          type: object
          properties: {{amount: {{type: number}}}}
        nodes:
          a: {{tool: echo, args: {{value: "${{{{ inputs.amount }}}}"}}}}
          check:
            gate:
              - {{check: "nodes.a.output.value <= 50.0", message: "over the cap"}}
              - {{check: "nodes.a.output.value > 0.0", message: "not positive"}}
            on_fail: {on_fail}
          act: {{tool: sleepy, needs: [check], args: {{name: act}}}}
        outputs:
          acted: "${{{{ nodes.act.status }}}}"
        """
    )


def test_gate_passes_and_the_run_continues(backend: Run) -> None:
    result = run(backend, gate_plan("escalate"), {"amount": 20.0})
    assert result.status == "succeeded", result.reason
    assert result.nodes["check"].output == {"passed": True, "failed": []}
    assert result.outputs == {"acted": "succeeded"}
    assert btools.LOG.calls["act"] == 1


@pytest.mark.parametrize(("on_fail", "status"), [("halt", "failed"), ("escalate", "escalated")])
def test_failed_gate_stops_the_run(backend: Run, on_fail: str, status: str) -> None:
    result = run(backend, gate_plan(on_fail), {"amount": 80.0})
    gate = result.nodes["check"]
    assert (result.status, gate.status) == (status, status)
    assert gate.output == {"passed": False, "failed": ["over the cap"]}
    assert result.reason == "node 'check': over the cap"
    assert result.outputs == {}
    assert "act" not in result.nodes and "act" not in btools.LOG.calls


def test_gate_lists_every_failed_check(backend: Run) -> None:
    plan = plan_of(
        """
        nodes:
          check:
            gate:
              - {check: "1 > 2", message: "first"}
              - {check: "true", message: "never"}
              - {check: "2 > 3", message: "second"}
            on_fail: escalate
        """
    )
    result = run(backend, plan)
    assert result.status == "escalated"
    assert result.reason == "node 'check': first; second"


# --- map ------------------------------------------------------------------------------------

MAP = """
inputs:
  type: object
  properties:
    items:
      type: array
      items: {type: object, properties: {n: {type: integer}, s: {type: number}}}
nodes:
  each:
    map:
      over: "${{ inputs.items }}"
      max_concurrency: 2
      max_items: 5
      node: {tool: item_work, args: {item: "${{ item.n }}", seconds: "${{ item.s }}"}}
outputs:
  doubled: "${{ nodes.each.output }}"
"""


def test_map_bounds_concurrency_and_keeps_input_order(backend: Run) -> None:
    items = [{"n": 1, "s": 0.08}, {"n": 2, "s": 0.01}, {"n": 3, "s": 0.05}, {"n": 4, "s": 0.01}]
    result = run(backend, plan_of(MAP), {"items": items})
    assert result.status == "succeeded", result.reason
    want = [{"doubled": 2}, {"doubled": 4}, {"doubled": 6}, {"doubled": 8}]
    assert result.outputs == {"doubled": want}
    node = result.nodes["each"]
    assert node.output == want
    assert btools.LOG.peak == 2
    assert btools.LOG.calls == {"item_work": 4}
    assert node.items is not None
    assert [i.status for i in node.items] == ["succeeded"] * 4
    assert node.usage.tool_calls == 4 and result.usage.tool_calls == 4


def test_a_failing_item_fails_the_map(backend: Run) -> None:
    items = [{"n": 1, "s": 0.01}, {"n": -1, "s": 0.01}, {"n": 3, "s": 0.01}]
    result = run(backend, plan_of(MAP), {"items": items})
    node = result.nodes["each"]
    assert (result.status, node.status) == ("failed", "failed")
    assert node.error == "item 1: tool 'item_work' raised ValueError: negative item -1"
    assert result.outputs == {}


def test_map_items_read_the_nodes_the_map_needs(backend: Run) -> None:
    plan = plan_of(
        """
        nodes:
          base: {tool: echo, args: {value: 100}}
          each:
            map:
              over: "${{ [1, 2, 3] }}"
              as: n
              node: {tool: echo, args: {value: "${{ nodes.base.output.value + n }}"}}
        outputs:
          values: "${{ nodes.each.output.map(x, x.value) }}"
        """
    )
    assert plan.nodes["each"].deps == ("base",)
    result = run(backend, plan, {})
    assert result.status == "succeeded", result.reason
    assert result.outputs == {"values": [101, 102, 103]}


def test_map_over_more_than_max_items_fails_before_any_call(backend: Run) -> None:
    items = [{"n": i, "s": 0.01} for i in range(6)]
    result = run(backend, plan_of(MAP), {"items": items})
    node = result.nodes["each"]
    assert (result.status, node.status) == ("failed", "failed")
    assert node.error == "`over` gave 6 items; max_items is 5"
    assert btools.LOG.calls == {}


def test_map_of_llm_items_reads_responses_by_index(backend: Run) -> None:
    plan = plan_of(
        """
        inputs:
          type: object
          properties: {texts: {type: array, items: {type: string}}}
        nodes:
          each:
            map:
              over: "${{ inputs.texts }}"
              node:
                llm: small
                prompt: "classify: {{ item }}"
                output:
                  type: object
                  properties: {category: {enum: [refund, other]}}
                  required: [category]
        """
    )
    responses = [
        {"node": "each", "index": 0, "content": {"category": "other"}},
        {"node": "each", "index": 1, "content": "not json"},
        {"node": "each", "index": 1, "content": {"category": "refund"}},
    ]
    result = run(backend, plan, {"texts": ["hello", "refund me"]}, responses)
    node = result.nodes["each"]
    assert result.status == "succeeded", result.reason
    assert node.output == [{"category": "other"}, {"category": "refund"}]
    assert node.items is not None and [i.attempts for i in node.items] == [1, 2]
    assert node.usage.llm_calls == 3 and result.usage.llm_calls == 3


# --- tool contract --------------------------------------------------------------------------


def test_args_not_matching_the_derived_schema_fail_naming_the_field(backend: Run) -> None:
    # `n` is untyped, so only the run can tell (a typed string is `arg-type` at validate)
    plan = plan_of(
        """
        inputs: {type: object, properties: {n: {}}}
        nodes:
          t: {tool: typed, args: {count: "${{ inputs.n }}"}}
        """
    )
    result = run(backend, plan, {"n": "three"})
    node = result.nodes["t"]
    assert (result.status, node.status) == ("failed", "failed")
    assert node.error == (
        "tool 'typed' arguments do not match its schema: count: 'three' is not of type 'integer'"
    )
    assert btools.LOG.calls == {}
    assert result.usage.tool_calls == 0


def test_a_raising_tool_fails_the_node_with_its_message(backend: Run) -> None:
    plan = plan_of("nodes:\n  t: {tool: explode, args: {reason: out of paper}}\n")
    result = run(backend, plan)
    node = result.nodes["t"]
    assert (result.status, node.status, node.attempts) == ("failed", "failed", 1)
    assert node.error == "tool 'explode' raised ValueError: out of paper"
    assert result.reason == "node 't': tool 'explode' raised ValueError: out of paper"


def test_idempotency_key_from_the_contract_expression(backend: Run) -> None:
    plan = plan_of("nodes:\n  k: {tool: keyed_by_order, args: {order_id: O-7}}\n")
    result = run(backend, plan)
    assert result.status == "succeeded", result.reason
    assert btools.LOG.keys == ["order:O-7"]
    assert result.nodes["k"].output == {"order_id": "O-7", "key": "order:O-7"}


def test_idempotency_key_defaults_to_run_and_node_and_is_stable_on_retry(backend: Run) -> None:
    plan = plan_of(
        """
        nodes:
          k:
            tool: keyed
            args: {order_id: O-1, failures: 1}
            retry: {max_attempts: 2, backoff: 10ms}
        """
    )
    result = run(backend, plan)
    assert result.status == "succeeded", result.reason
    key = f"{result.run_id}:k"
    assert btools.LOG.keys == [key, key]
    assert result.nodes["k"].detail["idempotency_key"] == key


def test_idempotency_key_inside_a_map_adds_the_index(backend: Run) -> None:
    plan = plan_of(
        """
        inputs: {type: object, properties: {ids: {type: array, items: {type: string}}}}
        nodes:
          m:
            map:
              over: "${{ inputs.ids }}"
              node: {tool: keyed, args: {order_id: "${{ item }}"}}
        """
    )
    result = run(backend, plan, {"ids": ["O-1", "O-2", "O-3"]})
    assert result.status == "succeeded", result.reason
    assert sorted(btools.LOG.keys) == [f"{result.run_id}:m:{i}" for i in range(3)]
    assert [o["order_id"] for o in result.nodes["m"].output] == ["O-1", "O-2", "O-3"]


# --- outputs and the run record -------------------------------------------------------------


def test_outputs_and_to_json_carry_every_node_and_the_totals(backend: Run) -> None:
    plan = plan_of(
        "nodes:\n"
        + llm_node("c")
        + """
  t: {tool: echo, args: {value: "${{ nodes.c.output.category }}"}}
outputs:
  category: "${{ nodes.c.output.category }}"
  echoed: "${{ nodes.t.output.value + '!' }}"
  both: ["${{ nodes.c.status }}", "${{ nodes.t.status }}"]
"""
    )
    responses = [answer("c", usage={"prompt_tokens": 300, "completion_tokens": 12})]
    result = run(backend, plan, responses=responses)
    assert result.status == "succeeded", result.reason
    assert result.outputs == {
        "category": "refund",
        "echoed": "refund!",
        "both": ["succeeded", "succeeded"],
    }
    doc = json.loads(json.dumps(result.to_json()))
    assert doc["status"] == "succeeded" and doc["run_id"] == result.run_id
    assert doc["outputs"] == result.outputs
    c, t = doc["nodes"]["c"], doc["nodes"]["t"]
    assert (c["status"], c["attempts"], c["model"]) == ("succeeded", 1, PRIMARY)
    assert (t["status"], t["attempts"], t["model"]) == ("succeeded", 1, None)
    assert c["usage"]["input_tokens"] == 300 and c["usage"]["output_tokens"] == 12
    assert c["usage"]["tokens"] == 312
    assert c["usage"]["cost_usd"] > 0 and t["usage"]["cost_usd"] == 0
    assert c["duration_s"] >= 0 and t["duration_s"] >= 0
    totals = doc["totals"]
    assert totals == {
        "cost_usd": c["usage"]["cost_usd"],
        "input_tokens": 300,
        "output_tokens": 12,
        "tokens": 312,
        "llm_calls": 1,
        "tool_calls": 1,
    }
    assert doc["duration_s"] >= c["duration_s"] + t["duration_s"] - 1e-3


# --- local engine only ----------------------------------------------------------------------


class _BrokenHook(Hooks):
    """A hook that raises when a node starts, like a store whose disk is full."""

    async def node_started(self, *, run_id: str, node_id: str, **future: Any) -> None:
        raise RuntimeError(f"hook failed on {node_id}")


def test_a_failing_hook_surfaces_instead_of_hanging_the_run() -> None:
    plan = plan_of("nodes:\n  a: {tool: sleepy, args: {name: a}}\n")

    async def go() -> RunResult:
        return await asyncio.wait_for(execute(plan, {}, hooks=_BrokenHook()), timeout=60)

    with pytest.raises(RuntimeError, match="hook failed on a"):
        asyncio.run(go())
    assert btools.LOG.calls == {}
