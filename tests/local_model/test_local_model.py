"""The real Gemma 3 270M, in-process through litellm's custom provider and over llama.cpp's
OpenAI-compatible server: outcomes are asserted by structure and class, never by wording."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.local_model.conftest import REPO, SPEC, env_for, run_flowrun
from tests.local_model.specs import TICKET, write_triage

pytestmark = pytest.mark.local_model

CLASSIFY_SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"enum": ["refund", "shipping", "account", "other"]},
        "confidence": {"enum": ["low", "medium", "high"]},
    },
    "required": ["category", "confidence"],
    "additionalProperties": False,
}


def _node_schemas() -> dict[str, Any]:
    """Each node's `output` schema as the reference spec states it."""
    nodes = yaml.safe_load(SPEC.read_text(encoding="utf-8"))["nodes"]
    return {nid: node.get("output") for nid, node in nodes.items()}


def test_reference_spec_runs_end_to_end_on_the_local_profile(gguf: Path, seeded_db: Path) -> None:
    proc = run_flowrun(
        "execute",
        SPEC,
        "--profile",
        "local",
        "--scopes",
        "refunds:write",
        "--input",
        REPO / "examples" / "inputs" / "refund_granted.json",
        "--output",
        "json",
        db=seeded_db,
    )
    result = json.loads(proc.stdout)
    # the model is freed before the interpreter's teardown: no traceback after the output
    assert "Traceback" not in proc.stderr, proc.stderr
    # a refund between $40 and $50 waits for a person: an outcome the workflow is built for
    assert result["status"] in ("succeeded", "escalated", "waiting"), proc
    assert proc.rc == {"succeeded": 0, "escalated": 3, "waiting": 6}[result["status"]]
    assert result["profile"] == "local"
    nodes = result["nodes"]
    llm_nodes = [n for n in nodes.values() if n["kind"] == "llm" and n["status"] == "succeeded"]
    assert {n["node_id"] for n in llm_nodes} >= {"classify"}
    schemas = _node_schemas()
    for node in llm_nodes:
        assert node["model"] == "local/gemma-3-270m"
        assert node["usage"]["input_tokens"] > 0 and node["usage"]["output_tokens"] > 0
        assert node["usage"]["cost_usd"] == 0.0
        jsonschema.validate(node["output"], schemas[node["node_id"]])
    totals = result["totals"]
    assert totals["cost_usd"] == 0.0
    assert totals["llm_calls"] == len(llm_nodes) >= 2  # classify, then propose or answer
    if result["status"] == "succeeded":
        assert result["outputs"]["category"] in ("refund", "shipping", "account", "other")
        assert result["outputs"]["decision"] in ("refunded", "answered")
        assert isinstance(result["outputs"]["reply"], str) and len(result["outputs"]["reply"]) >= 10
    elif result["status"] == "waiting":
        assert nodes["approve"]["status"] == "waiting" and "act" not in nodes
    else:
        assert nodes["verify"]["status"] == "escalated"
        assert nodes["act"]["status"] != "succeeded"


def test_provider_is_routed_priced_and_loaded_once_in_process(gguf: Path) -> None:
    from runner.models import local
    from runner.models.client import ensure_litellm

    litellm = ensure_litellm()
    request: dict[str, Any] = {
        "model": "local/gemma-3-270m",
        "messages": [
            {"role": "system", "content": "You triage customer support tickets."},
            {"role": "user", "content": f"Classify this ticket: {TICKET}"},
        ],
        "temperature": 0,
        "max_tokens": 64,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": CLASSIFY_SCHEMA, "strict": False},
        },
    }
    sync = litellm.completion(**request)
    first = local.load("local/gemma-3-270m")
    started = time.perf_counter()
    async_ = asyncio.run(litellm.acompletion(**request))
    async_s = time.perf_counter() - started
    assert local.load("local/gemma-3-270m") is first  # one model per process, reused
    assert first.path == gguf
    for resp in (sync, async_):
        jsonschema.validate(json.loads(resp.choices[0].message.content), CLASSIFY_SCHEMA)
        assert resp.usage.prompt_tokens > 10 and 0 < resp.usage.completion_tokens <= 64
        assert litellm.completion_cost(completion_response=resp) == 0.0
    assert async_.choices[0].message.content == sync.choices[0].message.content  # temperature 0
    assert async_s < 30, f"a warm classification took {async_s:.1f}s"


def test_corrupt_gguf_fails_its_checksum_with_a_clear_error(
    local_extra: None, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    bad = models / "gemma-3-270m-q4_k_m.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 1024)
    spec = write_triage(tmp_path, "{model: local/gemma-3-270m, temperature: 0, max_tokens: 64}")
    proc = run_flowrun(
        "execute",
        spec,
        "--input-json",
        json.dumps({"text": TICKET}),
        "--output",
        "json",
        env={"FLOWRUN_MODEL_DIR": str(models)},
    )
    assert proc.rc == 1, proc
    error = json.loads(proc.stdout)["nodes"]["classify"]["error"]
    assert f"{bad} fails its checksum" in error
    assert "FLOWRUN_MODEL_DIR" in error
    assert "Traceback" not in proc.stderr
    assert bad.read_bytes()[:4] == b"GGUF"  # flowrun reports; it does not silently replace it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def llama_server(gguf: Path, tmp_path: Path) -> Iterator[int]:
    """llama-cpp-python's OpenAI-compatible server on a free local port, stopped afterwards."""
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            *("-m", "llama_cpp.server", "--model", str(gguf)),
            *("--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"),
            *("--chat_format", "gemma"),  # the GGUF carries no chat template
        ],
        env=env_for(None),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "llama_cpp.server did not answer in 120 s"
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_workflow_runs_over_the_openai_compatible_server(llama_server: int, tmp_path: Path) -> None:
    route = (
        "{model: openai/gemma, temperature: 0, max_tokens: 64, "
        f"params: {{api_base: 'http://127.0.0.1:{llama_server}/v1', api_key: none, "
        "structured_output: json_object}}"
    )
    spec = write_triage(tmp_path, route)
    proc = run_flowrun(
        "execute", spec, "--input-json", json.dumps({"text": TICKET}), "--output", "json"
    )
    assert proc.rc == 0, proc
    result = json.loads(proc.stdout)
    node = result["nodes"]["classify"]
    assert result["status"] == "succeeded"
    assert node["model"] == "openai/gemma"
    jsonschema.validate(node["output"], CLASSIFY_SCHEMA)
    assert result["outputs"]["category"] == node["output"]["category"]
    assert node["usage"]["input_tokens"] > 10 and node["usage"]["output_tokens"] > 0
