"""Budgets across a crash: SIGKILL `flowrun execute` in the middle of a parallel fan-out of model
calls, then `flowrun resume`; what was reserved or billed before the crash still counts, on
both stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.models.pricing import price_of
from tests.durable.conftest import BOTH_STORES, Flowrun, tool_log

pytestmark = pytest.mark.slow

MODEL = "openai/gpt-4o-mini"
ITEMS = 12
PROMPT, COMPLETION, MAX_TOKENS = 300, 20, 50  # each recorded answer bills 300 in + 20 out


def fan_out(tmp: Path, budget: str, latency_s: float = 0.3) -> tuple[Path, Path]:
    """A spec whose one node is a map of ITEMS model calls, four at a time, and its answers."""
    spec = tmp / "fan_out.yaml"
    spec.write_text(
        f"""\
apiVersion: flowrun/v1
kind: Workflow
metadata: {{name: fan-out}}
models:
  small: {{model: {MODEL}, temperature: 0, max_tokens: {MAX_TOKENS}}}
budget: {budget}
nodes:
  each:
    map:
      over: "${{{{ {list(range(ITEMS))} }}}}"
      max_concurrency: 4
      node:
        llm: small
        prompt: "Greet visitor {{{{ item }}}}"
        output: {{type: object, properties: {{hi: {{type: string}}}}, required: [hi]}}
""",
        encoding="utf-8",
    )
    responses = tmp / "fan_out.jsonl"
    responses.write_text(
        "".join(
            json.dumps(
                {
                    "node": "each",
                    "index": i,
                    "content": {"hi": f"visitor {i}"},
                    "usage": {"prompt_tokens": PROMPT, "completion_tokens": COMPLETION},
                    "latency_s": latency_s,
                }
            )
            + "\n"
            for i in range(ITEMS)
        ),
        encoding="utf-8",
    )
    return spec, responses


def _price() -> tuple[float, float]:
    price = price_of(MODEL)
    assert price is not None
    billed = PROMPT * price.input_per_token + COMPLETION * price.output_per_token
    reserved = PROMPT * price.input_per_token + MAX_TOKENS * price.output_per_token
    return billed, reserved


def crash_then_resume(
    flowrun: Flowrun, env: dict[str, str], spec: Path, responses: Path, point: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Execute until the crash point SIGKILLs it, resume; the run as `show` and `trace` see it."""
    run_id = "b1"
    crashed = flowrun(
        "execute", str(spec), "--responses", str(responses), "--run-id", run_id,
        "--output", "json", crash_at=point,
    )  # fmt: skip
    assert crashed.returncode == -9, crashed.stderr  # SIGKILL
    resumed = flowrun("resume", run_id, "--output", "json")
    assert resumed.returncode == 4, resumed.stderr  # budget_exceeded
    shown = flowrun("show", run_id, "--output", "json")
    traced = flowrun("trace", run_id, "--output", "json")
    assert shown.returncode == traced.returncode == 0, shown.stderr + traced.stderr
    return json.loads(shown.stdout), json.loads(traced.stdout)


def spend_holds(shown: dict[str, Any], traced: dict[str, Any]) -> list[dict[str, Any]]:
    """Every call made is counted: the totals are the calls' rows, a billed row is a recorded
    call at what it billed, a row cut off by the crash counts its whole reservation."""
    billed_usd, reserved_usd = _price()
    rows = shown["model_calls"]
    totals = shown["totals"]
    made = [c for n in traced["nodes"] for c in n["calls"] if c["cost_usd"] is not None]
    billed = [r for r in rows if r["status"] == "billed"]
    cut = [r for r in rows if r["status"] in ("open", "cancelled")]
    assert len(billed) + len(cut) == len(rows) == totals["llm_calls"]
    assert sorted(c["cost_usd"] for c in made) == pytest.approx(sorted(r["usd"] for r in billed))
    assert all(r["usd"] == pytest.approx(billed_usd) for r in billed)
    assert all(r["usd"] == pytest.approx(reserved_usd) for r in cut)
    assert cut, "the crash cut at least the call it stopped at"
    assert totals["cost_usd"] == pytest.approx(sum(r["usd"] for r in rows))
    assert totals["cost_usd"] == pytest.approx(
        sum(c["cost_usd"] for c in made) + len(cut) * reserved_usd
    )
    assert totals["tokens"] == sum(r["input_tokens"] + r["output_tokens"] for r in rows)
    return rows


@BOTH_STORES
def test_a_crash_mid_fan_out_then_resume_never_passes_max_llm_calls(
    flowrun: Flowrun, env: dict[str, str], tmp_path: Path
) -> None:
    cap = 8
    spec, responses = fan_out(tmp_path, f"{{max_llm_calls: {cap}}}")
    # items 0-3 start together; item 5 starts once two of them are done: the crash leaves
    # calls billed, and calls in flight whose reservation is in the store
    shown, traced = crash_then_resume(flowrun, env, spec, responses, "call:each[5]")
    rows = spend_holds(shown, traced)
    assert len(rows) <= cap
    assert shown["totals"]["llm_calls"] <= cap
    assert shown["status"] == "budget_exceeded"
    assert "max_llm_calls 8 reached" in shown["nodes"]["each"]["error"]
    made = [c for n in traced["nodes"] for c in n["calls"]]
    assert len(made) <= cap


@BOTH_STORES
def test_a_crash_mid_fan_out_then_resume_never_passes_max_usd(
    flowrun: Flowrun, env: dict[str, str], tmp_path: Path
) -> None:
    billed, reserved = _price()
    cap = 7 * billed + reserved / 2  # room for seven calls at what they bill, not for twelve
    spec, responses = fan_out(tmp_path, f"{{max_usd: {cap!r}}}")
    shown, traced = crash_then_resume(flowrun, env, spec, responses, "call:each[5]")
    spend_holds(shown, traced)
    assert shown["totals"]["cost_usd"] <= cap + 1e-12
    assert shown["status"] == "budget_exceeded"
    assert "max_usd" in shown["nodes"]["each"]["error"]


def test_calls_cut_off_by_max_seconds_count_in_the_run_spend(
    flowrun: Flowrun, env: dict[str, str], tmp_path: Path
) -> None:
    # the first four answers take a minute: max_seconds cuts them off in flight
    spec, responses = fan_out(tmp_path, "{max_seconds: 1s}", latency_s=60)
    ran = flowrun("execute", str(spec), "--responses", str(responses), "--output", "json")
    assert ran.returncode == 4, ran.stderr
    out = json.loads(ran.stdout)
    _, reserved = _price()
    assert out["totals"]["llm_calls"] == 4
    assert out["totals"]["cost_usd"] == pytest.approx(4 * reserved)
    shown = json.loads(flowrun("show", out["run_id"], "--output", "json").stdout)
    assert [r["status"] for r in shown["model_calls"]] == ["cancelled"] * 4
    assert shown["totals"]["llm_calls"] == 4
    assert shown["totals"]["cost_usd"] == pytest.approx(4 * reserved)


@BOTH_STORES
def test_a_crash_mid_map_of_tool_calls_then_resume_never_passes_max_tool_calls(
    flowrun: Flowrun, env: dict[str, str], tmp_path: Path
) -> None:
    spec = tmp_path / "tool_map.yaml"
    spec.write_text(
        """\
apiVersion: flowrun/v1
kind: Workflow
metadata: {name: tool-map}
tools:
  slow: {impl: tests.durable.dtools:slow}
budget: {max_tool_calls: 5}
nodes:
  each:
    map:
      over: "${{ [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] }}"
      max_concurrency: 1
      node: {tool: slow, args: {label: "${{ 'item' + string(item) }}", seconds: 0.1}}
""",
        encoding="utf-8",
    )
    # items 0-2 ran; item 3's intent is in the store, its call not made: SIGKILL
    crashed = flowrun("execute", str(spec), "--run-id", "t1", crash_at="before-effect:each[3]")
    assert crashed.returncode == -9, crashed.stderr
    assert [e["label"] for e in tool_log(env)] == ["item0", "item1", "item2"]
    resumed = flowrun("resume", "t1", "--output", "json")
    assert resumed.returncode == 4, resumed.stderr  # budget_exceeded
    # the three calls made before the crash are replayed from the ledger, not made again, and
    # count; so does item 3's call whose outcome the crash left unknown (it may have been
    # made): one more call fits under the cap, not five
    assert [e["label"] for e in tool_log(env)] == [f"item{i}" for i in range(4)]
    shown = json.loads(flowrun("show", "t1", "--output", "json").stdout)
    assert shown["totals"]["tool_calls"] == 5
    assert "max_tool_calls 5 reached" in shown["nodes"]["each"]["error"]


@BOTH_STORES
def test_a_subflow_s_own_cap_holds_across_a_crash(
    flowrun: Flowrun, env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "child.yaml").write_text(
        f"""\
apiVersion: flowrun/v1
kind: Workflow
metadata: {{name: child}}
models:
  small: {{model: {MODEL}, temperature: 0, max_tokens: {MAX_TOKENS}}}
budget: {{max_llm_calls: 3}}
nodes:
  each:
    map:
      over: "${{{{ [0, 1, 2, 3, 4, 5] }}}}"
      max_concurrency: 1
      node:
        llm: small
        prompt: "Greet visitor {{{{ item }}}}"
        output: {{type: object, properties: {{hi: {{type: string}}}}, required: [hi]}}
""",
        encoding="utf-8",
    )
    spec = tmp_path / "parent.yaml"
    spec.write_text(
        """\
apiVersion: flowrun/v1
kind: Workflow
metadata: {name: parent}
nodes:
  sub: {flow: child.yaml, inputs: {}}
""",
        encoding="utf-8",
    )
    responses = tmp_path / "parent.jsonl"
    responses.write_text(
        "".join(
            json.dumps({"node": "sub.each", "index": i, "content": {"hi": str(i)}}) + "\n"
            for i in range(6)
        ),
        encoding="utf-8",
    )
    # two calls billed, the third reserved: SIGKILL; the resumed subflow starts from three
    shown, _ = crash_then_resume(flowrun, env, spec, responses, "call:sub/each[2]")
    assert shown["totals"]["llm_calls"] == len(shown["model_calls"]) == 3
    assert "max_llm_calls 3 reached" in shown["nodes"]["sub"]["error"]
