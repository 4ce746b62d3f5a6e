"""What a ceiling does when reached, as it declares: fail (budget_exceeded, naming it), wait
for room (bounded; then budget_exceeded), or escalate; and `flowrun budgets show`'s figures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from runner.runs.budgets import budgets_in_force, spend_report
from runner.store import open_store
from tests.budgets.conftest import budgets_file, env_for, llm_spec, prices, run


def _go(env: dict[str, str], spec: Path, responses: Path) -> tuple[int, dict]:
    p = run(env, "execute", str(spec), "--responses", str(responses), "--tenant", "acme",
            "--input-json", '{"who": "x"}', "--output", "json")  # fmt: skip
    return p.returncode, json.loads(p.stdout)


def _set(env: dict[str, str], tmp: Path, ceiling: str) -> None:
    path = budgets_file(tmp, f"ceilings:\n  one-call: {ceiling}\n")
    p = run(env, "budgets", "set", "--file", str(path))
    assert p.returncode == 0, p.stderr


def test_escalate(tmp_path: Path, store_target: str) -> None:
    env = env_for(store_target)
    spec, responses = llm_spec(tmp_path)
    _set(env, tmp_path, "{scope: {tenant: acme}, max_llm_calls: 1, on_exceed: escalate}")
    assert _go(env, spec, responses)[0] == 0
    code, out = _go(env, spec, responses)
    assert code == 3 and out["status"] == "escalated"
    assert "ceiling 'one-call' (tenant acme, all time) reached" in out["reason"]


def test_wait_gives_up_after_max_wait(tmp_path: Path, store_target: str) -> None:
    env = env_for(store_target)
    spec, responses = llm_spec(tmp_path)
    _set(env, tmp_path, "{scope: {tenant: acme}, max_llm_calls: 1, on_exceed: wait, "
                        "max_wait: 1s}")  # fmt: skip
    assert _go(env, spec, responses)[0] == 0
    code, out = _go(env, spec, responses)
    assert code == 4 and out["status"] == "budget_exceeded"
    assert out["reason"].endswith("the call was not made (waited 1s for room)")


def test_wait_gets_room_when_a_rolling_window_moves(tmp_path: Path, store_target: str) -> None:
    env = env_for(store_target)
    spec, responses = llm_spec(tmp_path)
    _set(env, tmp_path, "{scope: {tenant: acme}, window: 3s, max_llm_calls: 1, "
                        "on_exceed: wait, max_wait: 60s}")  # fmt: skip
    assert _go(env, spec, responses)[0] == 0
    t0 = time.monotonic()
    code, out = _go(env, spec, responses)
    assert code == 0, out
    assert out["nodes"]["hello"]["duration_s"] >= 0.5  # it waited inside the node for room
    assert time.monotonic() - t0 < 60


def test_show_reports_spend_burn_and_forecast(tmp_path: Path, store_target: str) -> None:
    env = env_for(store_target)
    spec, responses = llm_spec(tmp_path)
    _set(env, tmp_path, "{scope: {tenant: '*'}, window: month, max_usd: 1.0}")
    for _ in range(3):
        assert _go(env, spec, responses)[0] == 0
    billed, _ = prices()
    store = open_store(store_target)
    try:
        budgets, row = budgets_in_force(store)
        now = time.time()
        (acme,) = spend_report(store, budgets, now=now)
    finally:
        store.close()
    assert row is not None and acme.scope == {"tenant": "acme"}
    assert acme.used["usd"] == pytest.approx(3 * billed)
    # all three in the last hour: the burn rate is what they cost, per hour
    assert acme.burn_per_hour["usd"] == pytest.approx(
        3 * billed * 3600 / min(3600, now - acme.window_start), rel=1e-3
    )
    assert acme.window_end is not None
    expected = 3 * billed + acme.burn_per_hour["usd"] / 3600 * (acme.window_end - now)
    assert acme.forecast["usd"] == pytest.approx(expected, rel=1e-3)
    text = run(env, "budgets", "show").stdout
    assert "one-call  (tenant acme; window month; on_exceed fail)" in text
    assert f"${3 * billed:.6f} of    $1.000000" in text
