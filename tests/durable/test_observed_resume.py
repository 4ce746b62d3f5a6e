"""A run continued after an approval is observed exactly as a run executed straight through.

Both go through `runner.runs` (the door the CLI, the console and MCP use): the same call rows,
the same transcript lines and the same spans, modulo ids, timestamps and the approval itself.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runner.models.responses import RecordedResponses
from runner.plan.compile import compile_plan
from runner.runs import Observe, Runs
from runner.spec import load_spec
from runner.store import Store, open_store
from runner.trace.observe import transcript_path

MCP = Path(__file__).resolve().parents[1] / "mcp"
SPEC = MCP / "served.yaml"  # label (llm) -> approve (when amount > 20) -> file (write)
RESPONSES = MCP / "served_responses.jsonl"
APPROVAL = "approve"


def _calls(store: Store, run_id: str) -> list[tuple[Any, ...]]:
    return [
        (c["node_id"], c["idx"], c["kind"], c["name"], c["attempt"], c["error"], c["data"])
        for c in store.calls(run_id)
    ]


def _transcript(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Lines about the nodes that ran, without ids and stamps; the approval's own lines left out."""
    out = []
    text = transcript_path(store.path, run_id).read_text().replace(run_id, "<run>")
    for line in text.splitlines():
        d = json.loads(line)
        if d["event"] in ("run_started", "run_finished") or d.get("node_id") == APPROVAL:
            continue
        out.append({k: v for k, v in d.items() if k not in ("ts", "run_id", "duration_s")})
    return out


def _spans(exporter: InMemorySpanExporter) -> list[tuple[str, Any, Any]]:
    """(name, OpenInference kind, parent's name) of every span below the workflow spans."""
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    out = []
    for s in spans:
        attrs = dict(s.attributes or {})
        if s.name.startswith("invoke_workflow") or attrs.get("flowrun.node.id") == APPROVAL:
            continue
        parent = by_id.get(s.parent.span_id) if s.parent is not None else None
        parent_name = parent.name.split(" ")[0] if parent is not None else None
        out.append((s.name, attrs.get("openinference.span.kind"), parent_name))
    return sorted(out)


@pytest.mark.slow
def test_a_run_approved_half_way_records_what_a_straight_run_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_STOOLS_LOG", str(tmp_path / "filed.jsonl"))
    store = open_store(tmp_path / "flowrun.db")
    runs = Runs(store)
    plan = compile_plan(load_spec(str(SPEC)), None)
    recorded = RecordedResponses.load(RESPONSES)

    def start(run_id: str, amount: float, exporter: InMemorySpanExporter) -> Any:
        return asyncio.run(
            runs.start(
                plan,
                {"text": "refund please", "amount": amount},
                run_id=run_id,
                responses=recorded,
                responses_path=str(RESPONSES),
                options={"live": True},
                observe=Observe(exporter=exporter),
            )
        )

    straight_spans, approved_spans = InMemorySpanExporter(), InMemorySpanExporter()
    straight = start("straight", 5, straight_spans)
    assert straight.status == "succeeded"
    parked = start("approved", 50, approved_spans)
    assert parked.status == "waiting"
    decided = asyncio.run(
        runs.decide(
            "approved", APPROVAL, approve=True, by="lead", follow=True,
            observe=Observe(exporter=approved_spans),
        )
    )  # fmt: skip
    assert decided.result is not None and decided.result.status == "succeeded"
    assert decided.result.outputs == straight.outputs == {"label": "billing", "filed": True}
    store.flush()

    # the write after the approval is recorded: call rows, transcript lines, spans
    assert [c[:4] for c in _calls(store, "approved")] == [
        ("label", None, "llm", "openai/gpt-4o-mini"),
        ("file", None, "tool", "file_note"),
    ]
    assert _calls(store, "approved") == _calls(store, "straight")
    assert _transcript(store, "approved") == _transcript(store, "straight")
    assert _spans(approved_spans) == _spans(straight_spans)
    assert ("execute_tool file_note", "TOOL", "file") in _spans(approved_spans)
    # the continuation is a second attempt of the same run, in its transcript and its spans
    lines = transcript_path(store.path, "approved").read_text().splitlines()
    started = [json.loads(x) for x in lines if json.loads(x)["event"] == "run_started"]
    assert [s["attempt"] for s in started] == [1, 2]
    roots = [s for s in approved_spans.get_finished_spans() if s.parent is None]
    assert [r.attributes["flowrun.attempt"] for r in roots] == [1, 2]
