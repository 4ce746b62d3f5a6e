"""The console's batch pages over HTTP (issue 24): batches listed with their progress, one
batch's lines linked to their runs, a batch still in progress shown as such."""

from __future__ import annotations

import json
import re
from pathlib import Path

from starlette.testclient import TestClient

from runner.plan.compile import compile_plan
from runner.runs import Runs
from runner.runs import batch as b
from runner.spec import load_spec
from tests.web.conftest import EXAMPLES, REFERENCE, XSS, Flowrun, login


def _data(tmp: Path, name: str, lines: list[str]) -> str:
    p = tmp / name
    p.write_text("".join(x + "\n" for x in lines))
    return str(p)


def _row(html: str, attr: str, key: str) -> str:
    m = re.search(rf'<tr data-{attr}="{re.escape(key)}">(.*?)</tr>', html, re.S)
    assert m, f"no row {key!r}"
    return m.group(1)


def test_batches_are_listed_with_their_progress_and_lines(
    client: TestClient, flowrun: Flowrun, tmp_path: Path, env: dict[str, str]
) -> None:
    tickets = [json.dumps({"ticket_id": x}) for x in ("T-1001", XSS, "T-1001")]
    done = flowrun(
        "batch", str(REFERENCE), "--data", _data(tmp_path, "t.jsonl", tickets),
        "--responses", str(EXAMPLES / "responses" / "refund_granted.jsonl"),
        "--scopes", "refunds:write", "--batch-id", "b-done",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # the bad line failed
    # a batch recorded and not run yet: all its lines are still to do
    plan = compile_plan(load_spec(REFERENCE), None)
    path = _data(tmp_path, "u.jsonl", [json.dumps({"ticket_id": "T-1002"})] * 4)
    runs = Runs.open(env["FLOWRUN_STORE"])
    try:
        lines = b.read_data(path, {}, plan)
        b.create_batch(runs, plan, lines, data_path=path, options={"concurrency": 2},
                       batch_id="b-open")  # fmt: skip
    finally:
        runs.close()

    assert client.get("/batches", follow_redirects=False).status_code == 303  # the token first
    login(client)
    listed = client.get("/batches")
    assert listed.status_code == 200
    finished = _row(listed.text, "batch", "b-done")
    assert '<progress max="3" value="3">' in finished and "3/3" in finished
    assert "finished" in finished and "succeeded</span> 2" in finished
    assert "failed</span> 1" in finished
    pending = _row(listed.text, "batch", "b-open")
    assert '<progress max="4" value="0">' in pending and "0/4" in pending
    assert "pending</span> 4" in pending
    assert 'href="/batches"' in client.get("/").text  # the console's navigation links to it

    page = client.get("/batches/b-done")
    assert page.status_code == 200
    assert "3/3</span> lines done (100%)" in page.text
    assert "completion 66.7%" in page.text and 'id="summary"' in page.text
    one = _row(page.text, "line", "1")
    assert '<a href="/runs/b-done.1">b-done.1</a>' in one and "succeeded" in one
    bad = _row(page.text, "line", "2")
    assert "bad input:" in bad and "&lt;script&gt;" in bad  # the line's own text, escaped
    assert "<script>" not in page.text
    assert client.get("/runs/b-done.3").status_code == 200  # a line's run is a run's page

    open_page = client.get("/batches/b-open")
    assert "0/4</span> lines done (0%)" in open_page.text
    assert 'id="summary"' not in open_page.text  # no summary before the lines are done
    assert _row(open_page.text, "line", "1").count("pending") == 1

    missing = client.get("/batches/nope")
    assert missing.status_code == 404 and "no batch" in missing.text
