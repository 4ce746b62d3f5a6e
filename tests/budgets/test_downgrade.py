"""Budget-aware routing: a route's cheaper `downgrade_to` model answers while a ceiling that
selects the call is past its soft threshold; the node's record and the run's events say why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.models.pricing import price_of
from tests.budgets.conftest import COMPLETION, PROMPT, budgets_file, env_for, llm_spec, run


def _cost(model: str) -> float:
    p = price_of(model)
    assert p is not None
    return PROMPT * p.input_per_token + COMPLETION * p.output_per_token


def test_a_soft_threshold_downgrades_the_route(tmp_path: Path, store_target: str) -> None:
    env = env_for(store_target)
    spec, responses = llm_spec(tmp_path)
    text = spec.read_text().replace(
        "small: {model: openai/gpt-4o-mini,",
        "small: {model: openai/gpt-4o, downgrade_to: openai/gpt-4o-mini,",
    )
    spec.write_text(text)
    # one gpt-4o answer is about 9.5% of $0.01: past the soft 5%
    budgets = budgets_file(
        tmp_path,
        "ceilings:\n  acme: {scope: {tenant: acme}, window: day, max_usd: 0.01, soft: 0.05}\n",
    )
    assert run(env, "budgets", "set", "--file", str(budgets)).returncode == 0
    outs = []
    for tenant in ("acme", "acme", "beta"):
        p = run(env, "execute", str(spec), "--responses", str(responses), "--tenant", tenant,
                "--input-json", '{"who": "x"}', "--output", "json")  # fmt: skip
        assert p.returncode == 0, p.stderr
        outs.append(json.loads(p.stdout))
    first, second, other = (o["nodes"]["hello"] for o in outs)
    assert first["model"] == "openai/gpt-4o" and "downgraded" not in first["detail"]
    assert outs[0]["totals"]["cost_usd"] == pytest.approx(_cost("openai/gpt-4o"))
    assert outs[1]["totals"]["cost_usd"] == pytest.approx(_cost("openai/gpt-4o-mini"))
    assert second["detail"]["downgraded"] == (
        "openai/gpt-4o -> openai/gpt-4o-mini: ceiling 'acme' (tenant acme, per day) has used "
        "10% of max_usd (soft 5%)"
    )
    assert other["model"] == "openai/gpt-4o"  # another tenant: no ceiling is near
