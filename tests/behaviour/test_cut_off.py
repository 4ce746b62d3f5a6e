"""An answer cut at max_tokens is reported as a cut-off and re-asked with more room, not repeated."""

from __future__ import annotations

import asyncio
from typing import Any

from runner.engine.results import RunResult
from tests.behaviour.conftest import Run, plan_of

NOTE = """\
nodes:
  n:
    llm: solo
    prompt: "write a note"
    output:
      type: object
      properties: {note: {type: string}}
      required: [note]
      additionalProperties: false
"""


def cut(tokens: int) -> dict[str, Any]:
    """A recorded answer that ran into the token limit inside a string."""
    return {
        "node": "n",
        "content": '{"note": "on and on and on',
        "finish_reason": "length",
        "usage": {"prompt_tokens": 40, "completion_tokens": tokens},
    }


def whole(tokens: int) -> dict[str, Any]:
    return {
        "node": "n",
        "content": {"note": "short"},
        "usage": {"prompt_tokens": 20, "completion_tokens": tokens},  # under what litellm counts
    }


def run(backend: Run, body: str, responses: list[dict[str, Any]]) -> RunResult:
    return asyncio.run(backend(plan_of(body), {}, responses))


def test_a_cut_off_answer_is_re_asked_with_a_raised_limit(backend: Run) -> None:
    # the second answer uses 150 tokens: more than the node's 100, which only a raised limit allows
    result = run(backend, NOTE, [cut(100), whole(150)])
    node = result.nodes["n"]
    assert result.status == "succeeded", result.reason
    assert (node.attempts, node.output) == (2, {"note": "short"})
    assert node.detail["cut_off"] == [{"max_tokens": 100, "tokens": 100, "chars": 26}]
    assert node.detail["rejected"] == [
        "the answer was cut off at the token limit (node 'n', max_tokens 100): it stopped after "
        "100 tokens and 26 characters, before the JSON closed"
    ]


def test_the_raise_stays_within_the_run_token_budget(backend: Run) -> None:
    # 400 tokens in all, 140 spent by the cut answer: the raise is what the re-ask's prompt leaves of 260
    body = "budget: {max_tokens: 400}\n" + NOTE
    result = run(backend, body, [cut(100), whole(150)])
    assert result.status == "succeeded", result.reason
    assert result.nodes["n"].attempts == 2
    assert result.usage.input_tokens + result.usage.output_tokens == 310


def test_no_room_for_another_ask_ends_in_budget_exceeded_not_a_repeat(backend: Run) -> None:
    body = "budget: {max_tokens: 250}\n" + NOTE
    result = run(backend, body, [cut(100), cut(100)])
    assert result.status == "budget_exceeded"
    assert result.nodes["n"].detail["cut_off"] == [{"max_tokens": 100, "tokens": 100, "chars": 26}]


def test_cut_offs_to_the_last_ask_fail_with_the_limit_and_what_to_change(backend: Run) -> None:
    result = run(backend, NOTE, [cut(100), cut(200), cut(400)])
    node = result.nodes["n"]
    assert (result.status, node.attempts) == ("failed", 3)
    assert [c["max_tokens"] for c in node.detail["cut_off"]] == [100, 200, 400]
    assert node.error is not None
    assert node.error.startswith("the answer did not match the output schema after 3 asks: ")
    assert "cut off at the token limit (node 'n', max_tokens 400)" in node.error
    assert "after 400 tokens and 26 characters" in node.error
    assert "raise the node's max_tokens (now 100) or bound its output schema" in node.error
    assert "not valid JSON" not in node.error
