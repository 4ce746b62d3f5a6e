"""Priced tools: a call's bill counts in the node's and the run's cost, in its max_usd, in every
ceiling that selects it, in the trace and in `flowrun stats`; a ceiling on a tool's calls ends
the run budget_exceeded naming it. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.store import open_store
from tests.budgets.conftest import budgets_file, env_for, run

SPEC = """\
apiVersion: flowrun/v1
kind: Workflow
metadata: {name: notify}
inputs:
  type: object
  properties: {who: {type: string}, where: {type: string}}
  required: [who, where]
tools:
  sms: {impl: tests.budgets.btools:sms, price: {usd: 0.01}}
  geocode:
    impl: tests.budgets.btools:geocode
    price: {from_result: billing.usd, max_usd: 0.05}
nodes:
  locate: {tool: geocode, args: {query: "${{ inputs.where }}"}}
  texts:
    map:
      over: "${{ [1, 2, 3] }}"
      node: {tool: sms, args: {to: "${{ inputs.who }}"}}
    needs: [locate]
outputs:
  place: "${{ nodes.locate.output.place }}"
"""


def _spec(tmp: Path, budget: str = "") -> Path:
    p = tmp / "notify.yaml"
    p.write_text(SPEC + budget, encoding="utf-8")
    return p


def test_a_priced_tool_counts_in_cost_trace_and_stats(tmp_path: Path, store_target: str) -> None:
    env = env_for(store_target)
    spec = _spec(tmp_path)
    p = run(env, "execute", str(spec), "--input-json", '{"who": "a", "where": "paris"}',
            "--tenant", "acme", "--run-id", "t1", "--output", "json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    # geocode bills 0.001 per character of "paris" (its result says so), each sms 0.01
    assert out["totals"]["cost_usd"] == pytest.approx(0.005 + 3 * 0.01)
    nodes = out["nodes"]
    assert nodes["locate"]["usage"]["cost_usd"] == pytest.approx(0.005)
    assert nodes["texts"]["usage"]["cost_usd"] == pytest.approx(0.03)
    assert nodes["texts"]["usage"]["tool_cost_usd"] == pytest.approx(0.03)
    shown = json.loads(run(env, "show", "t1", "--output", "json").stdout)
    assert shown["totals"]["cost_usd"] == pytest.approx(0.035)
    assert shown["model_calls"] == []
    bills = sorted((b["model"], b["status"], b["usd"]) for b in shown["tool_bills"])
    assert (
        bills
        == [("geocode", "billed", pytest.approx(0.005))]
        + [("sms", "billed", pytest.approx(0.01))] * 3
    )
    store = open_store(store_target)
    try:
        totals = store.spend_totals({"tenant": "acme"}, 0.0)
        calls = store.calls("t1")
    finally:
        store.close()
    assert totals["usd"] == pytest.approx(0.035) and totals["tool_calls"] == 4
    assert totals["tool_usd"] == pytest.approx(0.035) and totals["llm_calls"] == 0
    billed = sorted(c["data"].get("cost_usd") for c in calls if c["kind"] == "tool")
    assert billed == pytest.approx([0.005, 0.01, 0.01, 0.01])  # each call's bill in the trace
    stats = json.loads(run(env, "stats", "--tenant", "acme", "--output", "json").stdout)
    assert stats["cost_per_completed_usd"]["max"] == pytest.approx(0.035)
    assert stats["tool_billed_usd"] == pytest.approx(0.035)


def test_max_usd_counts_tool_bills(tmp_path: Path, store_target: str) -> None:
    env = env_for(store_target)
    spec = _spec(tmp_path, "budget: {max_usd: 0.055}\n")
    where = json.dumps({"who": "a", "where": "x" * 30})  # geocode bills $0.03
    p = run(env, "execute", str(spec), "--input-json", where, "--run-id", "t2",
            "--output", "json")  # fmt: skip
    assert p.returncode == 4, p.stderr  # 0.03 + 2 x 0.01 fit; the third sms would pass $0.055
    out = json.loads(p.stdout)
    assert out["status"] == "budget_exceeded"
    assert out["totals"]["cost_usd"] == pytest.approx(0.05)
    assert "max_usd" in out["reason"] and "'sms'" in out["reason"]
    # a price read from the result is reserved at its max_usd first: under $0.05 left, geocode
    # is not called at all
    spec = _spec(tmp_path, "budget: {max_usd: 0.04}\n")
    p = run(env, "execute", str(spec), "--input-json", where, "--output", "json")
    out = json.loads(p.stdout)
    assert p.returncode == 4 and out["totals"]["cost_usd"] == 0.0
    assert "a call of 'geocode' costs up to $0.050000" in out["reason"]


def test_a_ceiling_on_a_tools_calls_across_runs(tmp_path: Path, store_target: str) -> None:
    env = env_for(store_target)
    spec = _spec(tmp_path)
    budgets = budgets_file(
        tmp_path,
        "ceilings:\n"
        "  sms-daily: {scope: {tool: sms, tenant: '*'}, window: day, max_tool_calls: 5}\n",
    )
    assert run(env, "budgets", "set", "--file", str(budgets)).returncode == 0
    args = ("--input-json", '{"who": "a", "where": "x"}', "--output", "json")
    first = run(env, "execute", str(spec), "--tenant", "acme", *args)
    assert first.returncode == 0, first.stderr  # 3 of acme's 5
    second = run(env, "execute", str(spec), "--tenant", "acme", *args)
    assert second.returncode == 4, second.stderr
    out = json.loads(second.stdout)
    assert "ceiling 'sms-daily' (tenant acme, tool sms, per day) reached" in out["reason"]
    assert "1 of max_tool_calls 5" not in out["reason"]
    other = run(env, "execute", str(spec), "--tenant", "zeta", *args)
    assert other.returncode == 0, other.stderr  # each tenant its own ceiling
    shown = json.loads(run(env, "budgets", "show", "--output", "json").stdout)
    used = {c["scope"]["tenant"]: c["dimensions"]["tool_calls"]["used"] for c in shown["ceilings"]}
    assert used == {"acme": 5, "zeta": 3}
