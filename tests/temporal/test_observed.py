"""A Temporal run is observed as a local run is: the same call rows, transcript lines and spans.

The worker runs in this process (its spans go to an in-memory exporter); the local run goes
through `runner.runs`, as `flowrun execute` does. A run approved half-way on Temporal records
what the same run executed straight through records, plus a second attempt.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client

from runner.models.responses import RecordedResponses
from runner.plan.compile import compile_plan
from runner.runs import Observe, Runs
from runner.spec import load_spec
from runner.store import Store, open_store
from runner.temporal.activities import export_spans_to, run_result_from_json
from runner.temporal.client import Target, decide, settle, start
from runner.temporal.worker import make_worker
from runner.trace.observe import transcript_path
from tests.durable.test_observed_resume import (
    APPROVAL,
    RESPONSES,
    SPEC,
    _calls,
    _spans,
    _transcript,
)
from tests.temporal.inproc import run_input

pytestmark = pytest.mark.slow


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    export_spans_to(spans)
    yield spans
    export_spans_to(None)


def _attempts(store: Store, run_id: str) -> list[int]:
    lines = [json.loads(x) for x in transcript_path(store.path, run_id).read_text().splitlines()]
    return [x["attempt"] for x in lines if x["event"] == "run_started"]


def test_a_temporal_run_records_what_a_local_run_records(
    temporal_address: str,
    exporter: InMemorySpanExporter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MCP_STOOLS_LOG", str(tmp_path / "filed.jsonl"))
    store = open_store(tmp_path / "flowrun.db")
    plan = compile_plan(load_spec(str(SPEC)), None)

    local_spans = InMemorySpanExporter()
    local = asyncio.run(
        Runs(store).start(
            plan,
            {"text": "refund please", "amount": 5},
            run_id="local",
            responses=RecordedResponses.load(RESPONSES),
            responses_path=str(RESPONSES),
            options={"live": True},
            observe=Observe(exporter=local_spans),
        )
    )
    assert local.status == "succeeded"

    def run_in(run_id: str, amount: float) -> Any:
        return run_input(
            plan, {"text": "refund please", "amount": amount}, store=store, run_id=run_id,
            responses=RESPONSES, options={"live": True},
        )  # fmt: skip

    async def go() -> dict[str, Any]:
        client = await Client.connect(temporal_address)
        queue = f"observed-{tmp_path.name}"
        target = Target(address=temporal_address, task_queue=queue)
        async with make_worker(client, task_queue=queue):
            straight = await settle(await start(client, run_in("straight", 5), target))
            handle = await start(client, run_in("approved", 50), target)
            parked = await settle(handle)
            assert parked["status"] == "waiting", parked
            store.approval_decide("approved", APPROVAL, status="approved", by="lead")
            await decide(client, "approved", APPROVAL)
            approved = await handle.result()
        return {"straight": straight, "approved": approved}

    out = asyncio.run(asyncio.wait_for(go(), timeout=300))
    straight, approved = (run_result_from_json(out[k]) for k in ("straight", "approved"))
    assert straight.status == approved.status == "succeeded"
    assert straight.outputs == approved.outputs == local.outputs
    store.flush()

    # call rows, transcript lines and spans: Temporal as local, approved half-way as straight
    assert _calls(store, "straight") == _calls(store, "local")
    assert _transcript(store, "straight") == _transcript(store, "local")
    temporal_spans = _spans(exporter)
    assert ("execute_tool file_note", "TOOL", "file") in temporal_spans
    assert sorted(temporal_spans) == sorted(_spans(local_spans) * 2)
    assert _calls(store, "approved") == _calls(store, "straight")
    assert _transcript(store, "approved") == _transcript(store, "straight")

    # one tree per attempt: node spans under the run span of their attempt
    roots = [s for s in exporter.get_finished_spans() if s.parent is None]
    by_run: dict[str, list[int]] = {}
    for r in roots:
        by_run.setdefault(str(r.attributes["flowrun.run_id"]), []).append(
            int(r.attributes["flowrun.attempt"])
        )
    assert {k: sorted(v) for k, v in by_run.items()} == {"straight": [1], "approved": [1, 2]}
    root_ids = {r.context.span_id for r in roots}
    nodes = [
        s for s in exporter.get_finished_spans() if "flowrun.node.kind" in (s.attributes or {})
    ]
    assert nodes and all(s.parent is not None and s.parent.span_id in root_ids for s in nodes)
    assert _attempts(store, "straight") == [1]
    assert _attempts(store, "approved") == [1, 2]
