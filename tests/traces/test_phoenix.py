"""Real backend: the reference workflow's spans go to Arize Phoenix and come back as a tree."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import EXAMPLES, REPO, SPEC, run_flowrun, seed_db

PHOENIX = REPO / ".phoenix-venv" / "bin" / "phoenix"
PROJECT = "flowrun-it"

pytestmark = pytest.mark.slow

if not PHOENIX.is_file():
    if os.environ.get("CI"):
        pytest.fail(f"{PHOENIX} is missing; CI must run tests/traces/setup_phoenix.sh first")
    pytest.skip(
        "Arize Phoenix is not installed (run tests/traces/setup_phoenix.sh)",
        allow_module_level=True,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    work = tmp_path_factory.mktemp("phoenix")
    env = {
        **os.environ,
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(_free_port()),
        "PHOENIX_WORKING_DIR": str(work),
    }
    log = (work / "phoenix.log").open("w")
    proc = subprocess.Popen([str(PHOENIX), "serve"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                _get(f"{base}/v1/projects")
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("phoenix did not start:\n" + (work / "phoenix.log").read_text())
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _attr(span: dict[str, Any], key: str) -> Any:
    attrs = span.get("attributes") or {}
    if key in attrs:
        return attrs[key]
    node: Any = attrs
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def test_reference_run_spans_land_in_phoenix(phoenix: str, tmp_path: Path) -> None:
    db = seed_db(tmp_path / "support.sqlite")
    p = run_flowrun(
        "execute", SPEC,
        "--input", EXAMPLES / "inputs" / "refund_granted.json",
        "--responses", EXAMPLES / "responses" / "refund_granted.jsonl",
        "--run-id", "t-phoenix", "--output", "json", "--otlp-endpoint", phoenix,
        "--live", "--scopes", "refunds:write",
        cwd=tmp_path, db=db, env={"FLOWRUN_TRACE_PROJECT": PROJECT},
    )  # fmt: skip
    assert p.rc == 0, p
    assert "warning" not in p.stderr
    spans: list[dict[str, Any]] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            spans = _get(f"{phoenix}/v1/projects/{PROJECT}/spans?limit=100")["data"]
        except Exception:
            spans = []
        if len(spans) >= 16:
            break
        time.sleep(0.5)
    by_name = {s["name"]: s for s in spans}
    ids = {s["context"]["span_id"]: s for s in spans}
    root = by_name["invoke_workflow support-refund"]
    assert not root.get("parent_id")
    assert _attr(root, "flowrun.run_id") == "t-phoenix"
    for node in ("intake", "classify", "propose", "verify", "act", "log", "answer"):
        assert ids[by_name[node]["parent_id"]]["name"] == root["name"], node
    chat = by_name["chat anthropic/claude-sonnet-4-5"]
    assert ids[chat["parent_id"]]["name"] == "propose"
    assert chat["span_kind"] == "LLM"
    assert _attr(chat, "llm.token_count.prompt") == 733
    assert _attr(chat, "llm.token_count.completion") == 58
    assert _attr(chat, "gen_ai.usage.input_tokens") == 733
    assert _attr(chat, "llm.cost.total") == pytest.approx(0.003069, rel=1e-3)
    refund = by_name["execute_tool issue_refund"]
    assert ids[refund["parent_id"]]["name"] == "act"
    assert refund["span_kind"] == "TOOL" and _attr(refund, "tool.name") == "issue_refund"
