"""8 processes x 50 runs of one tenant against one USD ceiling: together they never pass it
(0 overspend), and every refused run ends budget_exceeded naming the ceiling; the same with the
model calls made in parallel inside maps (8 x 25 runs of 4 calls each: still far past the
ceiling, in half the suite's time). On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.store import open_store
from tests.budgets.conftest import budgets_file, env_for, json_lines, llm_spec, prices, run, start

pytestmark = pytest.mark.slow

PROCESSES, RUNS = 8, 50
CEILING = 0.008  # about 140 recorded calls' worth: far less than 8 x 50 runs need


@pytest.mark.parametrize("items", [0, 4], ids=["one-call", "map-of-4"])
def test_concurrent_processes_never_pass_a_tenant_ceiling(
    tmp_path: Path, store_target: str, items: int
) -> None:
    runs = RUNS if not items else RUNS // 2
    env = env_for(store_target)
    spec, responses = llm_spec(tmp_path, items=items)
    budgets = budgets_file(
        tmp_path,
        f"ceilings:\n  acme-usd: {{scope: {{tenant: acme}}, window: day, max_usd: {CEILING}}}\n",
    )
    assert run(env, "budgets", "set", "--file", str(budgets)).returncode == 0
    procs = []
    for p in range(PROCESSES):
        data = tmp_path / f"data{p}.jsonl"
        data.write_text("".join(f'{{"who": "p{p}r{r}"}}\n' for r in range(runs)))
        procs.append(start(
            env, "batch", str(spec), "--data", str(data), "--responses", str(responses),
            "--tenant", "acme", "--concurrency", "4", "--output", "json",
        ))  # fmt: skip
    lines = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode in (0, 4), err  # 4: some lines ended budget_exceeded
        lines += json_lines(out)
    assert len(lines) == PROCESSES * runs
    statuses = {line["status"] for line in lines}
    assert statuses <= {"succeeded", "budget_exceeded"}, statuses
    succeeded = [line for line in lines if line["status"] == "succeeded"]
    refused = [line for line in lines if line["status"] == "budget_exceeded"]
    assert succeeded and refused
    for line in refused:
        assert "ceiling 'acme-usd' (tenant acme, per day) reached" in line["reason"], line
    store = open_store(store_target)
    try:
        counted = store.spend_totals({"tenant": "acme"}, 0.0)
        billed = sum(float(line["cost_usd"]) for line in lines)
    finally:
        store.close()
    billed_call, reserved_call = prices()
    # 0 overspend: what every row counts (billed, or reserved while open) is within the ceiling
    assert counted["usd"] <= CEILING + 1e-12, counted
    assert billed <= CEILING + 1e-12
    assert abs(billed - counted["usd"]) < 1e-9  # every call settled at its bill
    if not items:  # each call billed (a map's items cut off by a refused sibling count their
        # reservation: they may have reached the provider)
        assert counted["llm_calls"] * billed_call == pytest.approx(counted["usd"])
    # and the ceiling was used, not refused early: at most the calls in flight at once, each
    # reserved at its worst case, can be left over
    in_flight = PROCESSES * 4 * max(items, 1)
    assert counted["usd"] > CEILING - in_flight * reserved_call
    if items:  # a map's refused item names the ceiling too, and its run counts what it spent
        assert all("item " in line["reason"] for line in refused)
