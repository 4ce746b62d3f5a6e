"""Cost as billed: prompt-cache reads and writes and reasoning tokens are priced the way each
provider bills them. flowrun's cost of recorded usages of the reference profiles' models is
checked against a table computed by hand from the providers' published prices, within 1%."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from runner.models.client import LLMRequest, complete
from runner.models.responses import RecordedResponses
from tests.budgets.conftest import env_for, run

# Published prices, dollars per million tokens (openai.com/api/pricing, anthropic.com/pricing;
# Anthropic's cache write is the 5-minute one): input, cache read, cache write, output.
# OpenAI bills no cache write (a written prompt costs its input price); reasoning tokens are
# output tokens everywhere.
PUBLISHED = {
    "openai/gpt-4o-mini": (0.15, 0.075, 0.15, 0.60),
    "anthropic/claude-haiku-4-5": (1.00, 0.10, 1.25, 5.00),
    "anthropic/claude-sonnet-4-5": (3.00, 0.30, 3.75, 15.00),
}

# usages: prompt, completion, of the prompt read from cache, of it written to cache, of the
# completion spent reasoning
USAGES = {
    "plain": (1200, 300, 0, 0, 0),
    "cache read": (1200, 300, 1000, 0, 0),
    "cache write": (1200, 300, 0, 1000, 0),
    "reasoning": (1200, 300, 0, 0, 200),
}

# each cell worked out by hand from PUBLISHED, in dollars
EXPECTED = {
    ("openai/gpt-4o-mini", "plain"): 0.000360,  # 1200 x 0.15 + 300 x 0.60 = 360 u$
    ("openai/gpt-4o-mini", "cache read"): 0.000285,  # 200 x 0.15 + 1000 x 0.075 + 180
    ("openai/gpt-4o-mini", "cache write"): 0.000360,  # no write surcharge
    ("openai/gpt-4o-mini", "reasoning"): 0.000360,  # the 200 are among the 300 output tokens
    ("anthropic/claude-haiku-4-5", "plain"): 0.002700,  # 1200 x 1 + 300 x 5
    ("anthropic/claude-haiku-4-5", "cache read"): 0.001800,  # 200 x 1 + 1000 x 0.10 + 1500
    ("anthropic/claude-haiku-4-5", "cache write"): 0.002950,  # 200 x 1 + 1000 x 1.25 + 1500
    ("anthropic/claude-haiku-4-5", "reasoning"): 0.002700,
    ("anthropic/claude-sonnet-4-5", "plain"): 0.008100,  # 1200 x 3 + 300 x 15
    ("anthropic/claude-sonnet-4-5", "cache read"): 0.005400,  # 200 x 3 + 1000 x 0.30 + 4500
    ("anthropic/claude-sonnet-4-5", "cache write"): 0.008850,  # 200 x 3 + 1000 x 3.75 + 4500
    ("anthropic/claude-sonnet-4-5", "reasoning"): 0.008100,
}


def _hand(model: str, usage: tuple[int, int, int, int, int]) -> float:
    inp, read, write, out = PUBLISHED[model]
    prompt, completion, cached, written, _ = usage
    return ((prompt - cached - written) * inp + cached * read + written * write
            + completion * out) / 1e6  # fmt: skip


def test_the_hand_table_is_the_published_prices() -> None:
    for (model, case), dollars in EXPECTED.items():
        assert _hand(model, USAGES[case]) == pytest.approx(dollars, rel=1e-9)


def _usage_json(usage: tuple[int, int, int, int, int]) -> dict[str, int]:
    prompt, completion, cached, written, reasoning = usage
    return {"prompt_tokens": prompt, "completion_tokens": completion, "cached_tokens": cached,
            "cache_creation_tokens": written, "reasoning_tokens": reasoning}  # fmt: skip


@pytest.mark.parametrize(("model", "case"), sorted(EXPECTED))
def test_flowrun_bills_as_the_provider_does(tmp_path: Path, model: str, case: str) -> None:
    path = tmp_path / "r.jsonl"
    line = {"node": "n", "content": "ok", "usage": _usage_json(USAGES[case])}
    path.write_text(json.dumps(line) + "\n")
    rec = RecordedResponses.load(path).get("n", None, 1)
    req = LLMRequest(model=model, messages=[{"role": "user", "content": "hi"}],
                     output_schema=None, max_tokens=400)  # fmt: skip
    resp = asyncio.run(complete(req, rec))
    assert resp.cost_usd == pytest.approx(EXPECTED[(model, case)], rel=0.01)


def test_a_run_counts_cached_tokens_as_billed(tmp_path: Path) -> None:
    spec = tmp_path / "one.yaml"
    spec.write_text(
        "apiVersion: flowrun/v1\nkind: Workflow\nmetadata: {name: one}\n"
        "models: {m: {model: anthropic/claude-haiku-4-5, max_tokens: 400}}\n"
        "nodes:\n  n: {llm: m, prompt: hi}\n"
    )
    responses = tmp_path / "one.jsonl"
    usage = _usage_json(USAGES["cache read"])
    responses.write_text(json.dumps({"node": "n", "content": "ok", "usage": usage}) + "\n")
    p = run(env_for(str(tmp_path / "s.db")), "execute", str(spec), "--responses",
            str(responses), "--output", "json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    cost = json.loads(p.stdout)["totals"]["cost_usd"]
    assert cost == pytest.approx(EXPECTED[("anthropic/claude-haiku-4-5", "cache read")], rel=0.01)


def test_a_recorded_usage_whose_parts_exceed_it_is_refused(tmp_path: Path) -> None:
    from runner.errors import FlowrunError

    path = tmp_path / "r.jsonl"
    bad = {"prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 11}
    path.write_text(json.dumps({"node": "n", "content": "ok", "usage": bad}) + "\n")
    with pytest.raises(FlowrunError) as e:
        RecordedResponses.load(path)
    assert "cached_tokens" in e.value.render() and ":1" in e.value.render()
