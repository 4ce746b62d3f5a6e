"""Model calls: prices, recorded-response files, and replay through litellm's mock path."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from runner.errors import UsageError
from runner.models import pricing
from runner.models.client import (
    LLMRequest,
    LLMResponse,
    ProviderError,
    complete,
    count_prompt_tokens,
    ensure_litellm,
)
from runner.models.pricing import Price, cost_usd, estimate_tokens, price_of
from runner.models.responses import Recorded, RecordedResponses

REPO = Path(__file__).resolve().parents[2]
MESSAGES = [
    {"role": "system", "content": "Classify the ticket."},
    {"role": "user", "content": "My refund has not arrived after 10 days."},
]


# --- pricing ---------------------------------------------------------------------------------


def test_price_with_and_without_provider_prefix_match() -> None:
    bare = price_of("gpt-4o-mini")
    assert bare == Price(input_per_token=1.5e-07, output_per_token=6e-07, max_output_tokens=16384)
    assert price_of("openai/gpt-4o-mini") == bare
    sonnet = price_of("anthropic/claude-sonnet-4-5")
    assert sonnet is not None and sonnet.input_per_token == pytest.approx(3e-06)


def test_bare_name_resolves_through_its_only_provider_form() -> None:
    assert price_of("mistral-large-2402") == price_of("azure/mistral-large-2402")
    assert price_of("mistral-large-2402") is not None


def test_prefix_of_another_provider_is_not_priced_as_that_model() -> None:
    assert price_of("anthropic/gpt-4o-mini") is None


def test_unknown_model_has_no_price() -> None:
    assert price_of("openai/no-such-model-xyz") is None
    assert price_of("no-such-model-xyz") is None
    assert cost_usd("openai/no-such-model-xyz", 100, 100) is None


def test_local_models_are_free() -> None:
    assert price_of("local/qwen2.5-0.5b") == Price(0.0, 0.0, None)
    assert cost_usd("local/qwen2.5-0.5b", 10_000, 5_000) == 0.0


def test_cost_from_token_counts() -> None:
    assert cost_usd("openai/gpt-4o-mini", 812, 37) == pytest.approx(0.000144)


def test_estimate_tokens_is_a_byte_based_upper_bound() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abc") == 1
    assert estimate_tokens("abcd") == 2
    assert estimate_tokens("ééé") == 2  # 6 utf-8 bytes
    text = "The quick brown fox jumps over the lazy dog. " * 20
    real = count_prompt_tokens("openai/gpt-4o-mini", [{"role": "user", "content": text}])
    assert estimate_tokens(text) >= real - 10


def test_importing_models_package_does_not_import_litellm() -> None:
    code = (
        "import sys, runner.models, runner.models.pricing, runner.models.responses\n"
        "import runner.models.client\n"
        "runner.models.pricing.price_of('openai/gpt-4o-mini')\n"
        "assert 'litellm' not in sys.modules, 'litellm was imported'\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# --- recorded responses file ------------------------------------------------------------------


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "responses.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_valid_file_with_comments_defaults_and_json_content(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# recorded for the refund demo",
        "",
        '{"node": "classify", "content": {"label": "refund", "score": 0.9}}',
        '{"node": "draft", "content": "Hello",'
        ' "usage": {"prompt_tokens": 5, "completion_tokens": 1},'
        ' "model": "gpt-4o-mini-2024-07-18", "finish_reason": "length", "latency_s": 0.5}',
        '{"node": "fetch", "index": 2, "error": "rate_limit"}',
    )
    rec = RecordedResponses.load(path)
    classify = rec.get("classify", None, 1)
    assert classify is not None
    assert classify.content == '{"label":"refund","score":0.9}'
    assert (classify.usage, classify.error, classify.finish_reason, classify.latency_s) == (
        None,
        None,
        "stop",
        0.0,
    )
    assert classify.line == 3
    draft = rec.get("draft", None, 1)
    assert draft is not None and draft.usage is not None
    assert (draft.usage.prompt_tokens, draft.usage.completion_tokens) == (5, 1)
    assert (draft.model, draft.finish_reason, draft.latency_s) == (
        "gpt-4o-mini-2024-07-18",
        "length",
        0.5,
    )
    fetch = rec.get("fetch", 2, 1)
    assert fetch is not None and fetch.error == "rate_limit" and fetch.content is None
    assert rec.get("fetch", None, 1) is None
    assert rec.nodes() == frozenset({"classify", "draft", "fetch"})
    assert [e.node for e in rec.entries()] == ["classify", "draft", "fetch"]


def test_attempts_are_numbered_in_file_order_per_node_and_index(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"node": "a", "error": "timeout"}',
        '{"node": "b", "index": 0, "content": "b0-1"}',
        '{"node": "a", "content": "a-2"}',
        '{"node": "b", "index": 1, "content": "b1-1"}',
        '{"node": "b", "index": 0, "content": "b0-2"}',
        '{"node": "c", "attempt": 3, "content": "c-3"}',
        '{"node": "c", "content": "c-4"}',
    )
    rec = RecordedResponses.load(path)
    got = {(e.node, e.index, e.attempt): e.content for e in rec.entries()}
    assert got == {
        ("a", None, 1): None,
        ("b", 0, 1): "b0-1",
        ("a", None, 2): "a-2",
        ("b", 1, 1): "b1-1",
        ("b", 0, 2): "b0-2",
        ("c", None, 3): "c-3",
        ("c", None, 4): "c-4",
    }
    assert rec.lines_for("a") == [1, 3]
    assert rec.lines_for("zzz") == []


@pytest.mark.parametrize(
    ("lines", "line", "problem"),
    [
        (['{"node": "a", "content": "x"}', "{not json"], 2, "not valid JSON"),
        (['["node", "a"]'], 1, "expected a JSON object, got list"),
        (['{"node": "a", "contnet": "x"}'], 1, "unknown field 'contnet'; did you mean 'content'?"),
        (['{"content": "x"}'], 1, "missing required field 'node'"),
        (['{"node": 3, "content": "x"}'], 1, "'node' must be a non-empty string"),
        (['{"node": "a", "index": -1, "content": "x"}'], 1, "'index' must be >= 0"),
        (['{"node": "a", "index": "0", "content": "x"}'], 1, "'index' must be an integer"),
        (['{"node": "a", "attempt": 0, "content": "x"}'], 1, "'attempt' must be >= 1"),
        (['{"node": "a", "attempt": true, "content": "x"}'], 1, "'attempt' must be an integer"),
        (
            [
                '{"node": "a", "content": "x",'
                ' "usage": {"prompt_tokens": -1, "completion_tokens": 1}}'
            ],
            1,
            "'usage.prompt_tokens' must be an integer >= 0",
        ),
        (
            ['{"node": "a", "content": "x", "usage": {"prompt_tokens": 1}}'],
            1,
            "'usage' is missing 'completion_tokens'",
        ),
        (['{"node": "a", "content": "x", "latency_s": "fast"}'], 1, "'latency_s' must be a number"),
        (['{"node": "a", "content": "x", "model": ""}'], 1, "'model' must be a non-empty string"),
        (
            ['{"node": "a", "content": "x"}', "", '{"node": "a", "attempt": 1, "content": "y"}'],
            3,
            "duplicate response for node 'a' attempt 1; previously defined at line 1",
        ),
        (
            [
                '{"node": "m", "index": 1, "content": "x"}',
                '{"node": "m", "index": 1, "attempt": 1, "content": "y"}',
            ],
            2,
            "duplicate response for node 'm' index 1 attempt 1",
        ),
        (['{"node": "a", "content": "x", "error": "timeout"}'], 1, "both present"),
        (['{"node": "a"}'], 1, "neither 'content' nor 'error'"),
        (['{"node": "a", "error": "rate_limited"}'], 1, "did you mean 'rate_limit'?"),
    ],
)
def test_file_problems_name_path_and_line(
    tmp_path: Path, lines: list[str], line: int, problem: str
) -> None:
    path = write(tmp_path, *lines)
    with pytest.raises(UsageError) as caught:
        RecordedResponses.load(path)
    assert caught.value.message.startswith(f"{path}:{line}: ")
    assert problem in caught.value.message


def test_unknown_field_lists_the_allowed_ones(tmp_path: Path) -> None:
    path = write(tmp_path, '{"node": "a", "content": "x", "tokens": 3}')
    with pytest.raises(UsageError) as caught:
        RecordedResponses.load(path)
    assert caught.value.hint is not None
    assert "node, index, attempt, content, usage" in caught.value.hint
    assert "unknown error kind" not in caught.value.message


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(UsageError) as caught:
        RecordedResponses.load(path)
    assert str(path) in caught.value.message and "not found" in caught.value.message


# --- complete() through litellm ---------------------------------------------------------------


def request(**overrides: object) -> LLMRequest:
    base: dict[str, object] = {
        "model": "openai/gpt-4o-mini",
        "messages": MESSAGES,
        "output_schema": {"type": "object", "properties": {"label": {"type": "string"}}},
        "max_tokens": 200,
        "temperature": 0.0,
        "timeout_s": 5.0,
    }
    base.update(overrides)
    return LLMRequest(**base)  # type: ignore[arg-type]


def recorded(**fields: object) -> Recorded:
    base: dict[str, object] = {
        "node": "classify",
        "index": None,
        "attempt": 1,
        "content": None,
        "usage": None,
        "model": None,
        "finish_reason": "stop",
        "error": None,
        "latency_s": 0.0,
        "line": 1,
    }
    base.update(fields)
    return Recorded(**base)  # type: ignore[arg-type]


def load_one(tmp_path: Path, line: str) -> Recorded:
    entry = RecordedResponses.load(write(tmp_path, line)).entries()[0]
    return entry


def run(req: LLMRequest, rec: Recorded | None) -> LLMResponse:
    return asyncio.run(complete(req, rec))


def test_recorded_response_is_served_and_priced_by_litellm(tmp_path: Path) -> None:
    rec = load_one(
        tmp_path,
        '{"node": "classify", "content": {"label": "refund"},'
        ' "usage": {"prompt_tokens": 812, "completion_tokens": 37}}',
    )
    resp = run(request(), rec)
    assert resp.content == '{"label":"refund"}'
    assert json.loads(resp.content) == {"label": "refund"}
    assert (resp.prompt_tokens, resp.completion_tokens) == (812, 37)
    assert resp.cost_usd == pytest.approx(0.000144)
    assert resp.cost_known
    assert resp.finish_reason == "stop"
    assert resp.model == "openai/gpt-4o-mini"


def test_recorded_model_and_finish_reason_are_reported(tmp_path: Path) -> None:
    rec = load_one(
        tmp_path,
        '{"node": "n", "content": "cut", "model": "gpt-4o-mini", "finish_reason": "length",'
        ' "usage": {"prompt_tokens": 1000, "completion_tokens": 0}}',
    )
    resp = run(request(output_schema=None, temperature=None, timeout_s=None), rec)
    assert (resp.content, resp.model, resp.finish_reason) == ("cut", "gpt-4o-mini", "length")
    assert resp.cost_usd == pytest.approx(1000 * 1.5e-07)


def test_missing_usage_is_counted() -> None:
    content = '{"label": "refund", "reason": "the customer waited ten days"}'
    resp = run(request(), recorded(content=content))
    assert resp.prompt_tokens == count_prompt_tokens("openai/gpt-4o-mini", MESSAGES)
    assert resp.prompt_tokens > 10
    assert 5 < resp.completion_tokens <= estimate_tokens(content)
    assert resp.cost_usd == pytest.approx(
        pricing.cost_usd("openai/gpt-4o-mini", resp.prompt_tokens, resp.completion_tokens)
    )


def test_recorded_latency_is_simulated() -> None:
    started = time.monotonic()
    resp = run(request(), recorded(content="ok", latency_s=0.2))
    assert time.monotonic() - started >= 0.2
    assert resp.latency_s >= 0.2


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        ("rate_limit", True),
        ("internal_server_error", True),
        ("timeout", True),
        ("context_window", False),
        ("bad_request", False),
        ("auth", False),
    ],
)
def test_recorded_errors_become_provider_errors(error: str, retryable: bool) -> None:
    with pytest.raises(ProviderError) as caught:
        run(request(), recorded(error=error))
    assert caught.value.kind == error
    assert caught.value.retryable is retryable
    assert caught.value.model == "openai/gpt-4o-mini"
    assert caught.value.message
    assert isinstance(caught.value.__cause__, openai.APIError)  # litellm's own, chained


def test_real_call_to_closed_local_port_is_a_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends
    req = request(params={"api_base": f"http://127.0.0.1:{port}/v1", "api_key": "sk-test"})
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        run(req, None)
    assert caught.value.kind == "connection"
    assert caught.value.retryable
    assert time.monotonic() - started < 5


def test_ensure_litellm_is_idempotent_and_offline() -> None:
    import os

    first = ensure_litellm()
    assert ensure_litellm() is first
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert first.telemetry is False
    assert first.suppress_debug_info is True
