"""The response cache of LLM nodes: a repeated input with the cache on costs $0 the second time
(marked in the node's record, the run's events and stats); another tenant's run misses unless
the node shares its answers. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.budgets.conftest import env_for, llm_spec, prices, run


def _run(env: dict[str, str], spec: Path, responses: Path, tenant: str, who: str,
         run_id: str) -> dict:  # fmt: skip
    p = run(env, "execute", str(spec), "--responses", str(responses), "--tenant", tenant,
            "--input-json", json.dumps({"who": who}), "--run-id", run_id, "--output", "json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_a_repeated_input_costs_nothing_and_tenants_do_not_share(
    tmp_path: Path, store_target: str
) -> None:
    env = env_for(store_target)
    spec, responses = llm_spec(tmp_path, cache="    cache: true\n")
    billed, _ = prices()
    first = _run(env, spec, responses, "acme", "ann", "c1")
    assert first["totals"]["cost_usd"] == pytest.approx(billed)
    again = _run(env, spec, responses, "acme", "ann", "c2")
    assert again["totals"]["cost_usd"] == 0.0 and again["totals"]["llm_calls"] == 0
    assert again["outputs"] == first["outputs"]
    assert again["nodes"]["hello"]["detail"]["cache_hits"] == 1
    other_input = _run(env, spec, responses, "acme", "bob", "c3")
    assert other_input["totals"]["cost_usd"] == pytest.approx(billed)  # another question
    other_tenant = _run(env, spec, responses, "beta", "ann", "c4")
    assert other_tenant["totals"]["cost_usd"] == pytest.approx(billed)  # never shared
    assert "cache_hits" not in other_tenant["nodes"]["hello"]["detail"]
    shown = json.loads(run(env, "show", "c2", "--output", "json").stdout)
    assert shown["totals"]["cost_usd"] == 0.0 and shown["model_calls"] == []
    stats = json.loads(run(env, "stats", "--tenant", "acme", "--output", "json").stdout)
    assert stats["response_cache"] == {"entries": 2, "hits": 1}


def test_a_shared_cache_serves_every_tenant(tmp_path: Path, store_target: str) -> None:
    env = env_for(store_target)
    spec, responses = llm_spec(tmp_path, cache="    cache: {shared: true}\n")
    assert _run(env, spec, responses, "acme", "ann", "s1")["totals"]["cost_usd"] > 0
    assert _run(env, spec, responses, "beta", "ann", "s2")["totals"]["cost_usd"] == 0.0


def test_the_cache_is_opt_in(tmp_path: Path, store_target: str) -> None:
    env = env_for(store_target)
    spec, responses = llm_spec(tmp_path)
    billed, _ = prices()
    for run_id in ("n1", "n2"):
        out = _run(env, spec, responses, "acme", "ann", run_id)
        assert out["totals"]["cost_usd"] == pytest.approx(billed)
