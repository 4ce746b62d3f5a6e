"""Spans, transcripts, trace/stats/replay through the real `flowrun` command and the engine."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runner.engine.run import execute
from runner.models.responses import RecordedResponses
from runner.plan.compile import compile_plan
from runner.redact import redact
from runner.spec import load_spec
from runner.trace.observe import RunObserver
from runner.trace.otel import setup_tracing
from tests.cli.conftest import EXAMPLES, SPEC, run_flowrun

SECRET = "sk-proj-" + "A1b2C3d4" * 4


def _execute(tmp: Path, db: Path, case: str, run_id: str, *extra: str, **env: str) -> Any:
    return run_flowrun(
        "execute", SPEC,
        "--input", EXAMPLES / "inputs" / f"{case}.json",
        "--responses", EXAMPLES / "responses" / f"{case}.jsonl",
        "--run-id", run_id, "--output", "json", "--live", "--scopes", "refunds:write", *extra,
        cwd=tmp, db=db, env=env,
    )  # fmt: skip


def test_redaction_keeps_secrets_out_and_pii_out_of_default() -> None:
    text = (
        f"key {SECRET}, header Bearer abcdefghijklmnop, mail maya@example.com, "
        "card 4111 1111 1111 1111, phone +1 415-555-0134, order O-5001, run r20250101-120000-ab"
    )
    default = redact({"body": text, "api_key": "x"}, pii=True)
    full = redact({"body": text}, pii=False)
    assert SECRET not in default["body"] and "abcdefghijklmnop" not in default["body"]
    assert default["api_key"] == "[REDACTED:secret]"
    for pii in ("maya@example.com", "4111 1111 1111 1111", "415-555-0134"):
        assert pii not in default["body"] and pii in full["body"]
    assert SECRET not in full["body"]
    # ids that merely look numeric stay readable
    assert "O-5001" in default["body"] and "r20250101-120000-ab" in default["body"]


def test_span_tree_follows_genai_and_openinference_conventions(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWRUN_SUPPORT_DB", str(db))
    exporter = InMemorySpanExporter()
    tracing = setup_tracing(exporter=exporter)
    assert tracing is not None
    plan = compile_plan(load_spec(SPEC), None)
    obs = RunObserver(store=None, tracing=tracing, tenant="acme", actor="ana", capture="default")
    responses = RecordedResponses.load(EXAMPLES / "responses" / "not_a_refund.jsonl")
    inputs = json.loads((EXAMPLES / "inputs" / "not_a_refund.json").read_text())
    result = asyncio.run(
        execute(plan, inputs, responses=responses, hooks=obs, telemetry=obs, run_id="t-spans")
    )
    spans = {s.name: s for s in exporter.get_finished_spans()}
    root = spans["invoke_workflow support-refund"]
    assert root.parent is None
    assert root.attributes["flowrun.tenant"] == "acme"
    assert result.status == "succeeded" and root.attributes["flowrun.status"] == "succeeded"
    assert "flowrun.budget.remaining_usd" in root.attributes
    classify = spans["classify"]
    assert classify.parent.span_id == root.context.span_id
    (chat,) = [
        s
        for s in exporter.get_finished_spans()
        if s.name == "chat openai/gpt-4o-mini" and s.attributes["flowrun.node.id"] == "classify"
    ]
    assert chat.parent.span_id == classify.context.span_id
    a = chat.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["openinference.span.kind"] == "LLM"
    assert a["gen_ai.usage.input_tokens"] == a["llm.token_count.prompt"] > 0
    assert a["llm.cost.total"] > 0
    assert not any(k.startswith("llm.input_messages") for k in a)  # content only with full
    tool = spans["execute_tool get_ticket"]
    assert tool.parent.span_id == spans["intake"].context.span_id
    assert tool.attributes["tool.name"] == "get_ticket"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    from tests.cli.conftest import seed_db

    return seed_db(tmp_path / "support.sqlite")


def test_transcripts_default_redacts_full_is_private(tmp_path: Path, db: Path) -> None:
    store = Path(os.environ["FLOWRUN_STORE"])
    env = {"OPENAI_API_KEY": SECRET}
    assert _execute(tmp_path, db, "refund_granted", "t-def", **env).rc == 0
    assert _execute(tmp_path, db, "not_a_refund", "t-full", "--capture", "full", **env).rc == 0
    default = (store.parent / "transcripts" / "t-def.jsonl").read_text()
    full_path = store.parent / "transcripts" / "t-full.jsonl"
    full = full_path.read_text()
    events = [json.loads(line)["event"] for line in default.splitlines()]
    assert events[0] == "run_started" and events[-1] == "run_finished" and "llm_call" in events
    assert "[REDACTED:email]" in default and "@" not in default.replace("[REDACTED:email]", "")
    assert "@example" in full or "@" in full  # the full transcript keeps personal data
    for path in (full_path, store.parent / "transcripts" / "t-def.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # every transcript is private
    assert stat.S_IMODE(full_path.parent.stat().st_mode) == 0o700
    assert SECRET not in default and SECRET not in full


def test_trace_stats_and_replay_through_the_cli(tmp_path: Path, db: Path) -> None:
    assert _execute(tmp_path, db, "refund_granted", "t-a", "--tenant", "acme").rc == 0
    assert _execute(tmp_path, db, "refund_over_cap", "t-b", "--tenant", "acme").rc == 3
    tr = run_flowrun("trace", "t-a", cwd=tmp_path, db=db)
    assert tr.rc == 0, tr
    assert "chat anthropic/claude-sonnet-4-5 #1  733→58 tok" in tr.stdout
    assert "execute_tool issue_refund" in tr.stdout
    st = run_flowrun("stats", "--tenant", "acme", "--output", "json", cwd=tmp_path, db=db)
    s = json.loads(st.stdout)
    assert s["runs"] == 2 and s["completion_rate"] == 0.5 and s["escalation_rate"] == 0.5
    assert s["cost_per_completed_usd"]["max"] == pytest.approx(0.003139, rel=1e-3)
    assert s["latency_s"]["p50"] is not None and s["tool_error_rate"] == 0.0
    same = run_flowrun("replay", "t-a", "--output", "json", cwd=tmp_path, db=db)
    d = json.loads(same.stdout)
    assert same.rc == 0 and d["run"]["same"] and d["changed_nodes"] == []
    changed = tmp_path / "changed.yaml"
    changed.write_text(SPEC.read_text().replace("amount_usd <= 50.0", "amount_usd <= 30.0"))
    # a copy, not a symlink: a spec reads no file outside its project folder
    shutil.copytree(SPEC.parent / "prompts", tmp_path / "prompts")
    rep = run_flowrun("replay", "t-a", "--spec", changed, "--output", "json", cwd=tmp_path, db=db)
    d = json.loads(rep.stdout)
    assert d["changed_nodes"] == ["verify"]
    assert d["run"]["after"]["status"] == "escalated" and not d["run"]["same"]
    by = {n["node_id"]: n for n in d["nodes"]}
    assert by["propose"]["same"] and by["act"]["after"]["status"] is None
    # the replay wrote nothing: still exactly one refund in the support database
    import sqlite3

    assert sqlite3.connect(db).execute("SELECT count(*) FROM refunds").fetchone()[0] == 1


def test_bad_input_unreachable_endpoint_unknown_run_uncaptured(tmp_path: Path, db: Path) -> None:
    p = _execute(
        tmp_path, db, "not_a_refund", "t-off", "--capture", "off",
        "--otlp-endpoint", "http://127.0.0.1:9",
    )  # fmt: skip
    assert p.rc == 0, p
    assert p.stderr.count("warning: spans could not be sent") == 1
    unknown = run_flowrun("replay", "t-nope", cwd=tmp_path, db=db)
    assert unknown.rc == 2 and unknown.stderr.startswith("error: no run 't-nope'")
    off = run_flowrun("replay", "t-off", cwd=tmp_path, db=db)
    assert off.rc == 2 and "recorded with --capture off" in off.stderr
    assert "Traceback" not in off.stderr + unknown.stderr
    bad = run_flowrun("replay", "t-off", "--rerun", "nosuch", cwd=tmp_path, db=db)
    assert bad.rc == 2
