"""Issue 20's done-when: seeded secrets are in clear nowhere a run is shown or stored.

An API key (Stripe live, OpenAI project), an email and a Luhn-valid card go into the input of a
workflow that waits for approval; the run is approved and finishes, once through the CLI and once
through MCP. Every file under the store's folder (database, WAL, transcripts, key file), every
command's output, the console's pages, the MCP answers and the spans are scanned: none of the
seeded values is there in clear. The write tool still received the real values.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from runner.engine.run import execute
from runner.plan.compile import compile_plan
from runner.spec import load_spec
from runner.trace.observe import RunObserver
from runner.trace.otel import setup_tracing
from runner.web import ConsoleConfig, create_app
from tests.web.conftest import TOKEN, login

pytestmark = pytest.mark.slow  # flowrun processes

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SPEC = HERE / "specs" / "sealed_refund.yaml"

# assembled at run time: the repository holds no literal key
STRIPE = "sk_live_" + "51HxYzQ8rT2mW9kLp4Vn"
OPENAI = "sk-proj-" + "Zr8Kp3LwQ7xT2mW9" * 2
EMAIL = "maya.sealed@example.com"
CARD = "4111111111111111"
SEEDS = (STRIPE, OPENAI, EMAIL, CARD)


def inputs(n: int) -> dict[str, str]:
    return {
        "customer_email": EMAIL,
        "card": CARD,
        "api_key": STRIPE,
        "note": f"case {n}: reach me at {EMAIL}, or use {OPENAI}",
    }


def assert_clean(where: str, text: str | bytes) -> None:
    raw = text if isinstance(text, bytes) else text.encode()
    for seed in SEEDS:
        assert seed.encode() not in raw, f"{seed!r} in clear in {where}"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    (tmp_path / "store").mkdir(mode=0o700)  # a store is made only in a folder that exists
    e.update(
        FLOWRUN_STORE=str(tmp_path / "store" / "flowrun.db"),  # its transcripts folder: flowrun's
        STOOLS_LOG=str(tmp_path / "stools.log"),
        PYTHONPATH=str(ROOT),
    )
    e.pop("FLOWRUN_SEAL_KEY", None)
    return e


def flowrun(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def shown(env: dict[str, str], run_id: str) -> None:
    """Every command that shows the run prints no seeded value."""
    for args in (
        ("show", run_id),
        ("show", run_id, "--output", "json"),
        ("trace", run_id),
        ("trace", run_id, "--output", "json"),
        ("inbox", "--output", "json"),
        ("runs", "--output", "json"),
    ):
        res = flowrun(env, *args)
        assert res.returncode == 0, res.stderr
        assert_clean(" ".join(args), res.stdout + res.stderr)


def through_mcp(env: dict[str, str], tmp_path: Path) -> list[Any]:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "runner.cli", "mcp", "serve", str(SPEC), "--live", "--operate", "--stdio"],
        env={k: env[k] for k in ("PATH", "PYTHONPATH", "FLOWRUN_STORE", "STOOLS_LOG")},
        cwd=str(ROOT),
    )

    async def go() -> list[Any]:
        with (tmp_path / "mcp-stderr.txt").open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=90) as c:
                started = await c.call_tool("sealed-refund", inputs(2))
                run_id = started.structured_content["run_id"]
                approved = await c.call_tool(
                    "flowrun.approve", {"run_id": run_id, "node": "ok", "by": "lead"}
                )
                return [started, approved]

    return asyncio.run(asyncio.wait_for(go(), timeout=240))


def test_seeded_secrets_are_sealed_at_rest_and_redacted_wherever_shown(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert flowrun(env, "writes", "on").returncode == 0
    started = flowrun(
        env, "execute", str(SPEC), "--input-json", json.dumps(inputs(1)),
        "--run-id", "sealed-1", "--live", "--output", "json",
    )  # fmt: skip
    assert started.returncode != 2, started.stderr
    assert json.loads(started.stdout)["status"] == "waiting"
    assert_clean("execute --output json", started.stdout + started.stderr)
    text = flowrun(env, "show", "sealed-1")
    assert "[REDACTED:email]" in text.stdout and "[REDACTED:card]" in text.stdout
    shown(env, "sealed-1")

    approved = flowrun(env, "approve", "sealed-1", "ok", "--by", "lead", "--output", "json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["status"] == "succeeded"
    assert_clean("approve --output json", approved.stdout + approved.stderr)
    shown(env, "sealed-1")

    # MCP: a run started and approved as an MCP client does
    answers = through_mcp(env, tmp_path)
    for answer in answers:
        assert not answer.is_error, answer.content[0].text
        assert_clean("an MCP answer", answer.content[0].text)
        assert_clean("an MCP answer", json.dumps(answer.structured_content))
    assert answers[1].structured_content["status"] == "succeeded"

    # the write tool got the real values, both times, after the approval
    received = [json.loads(line) for line in Path(env["STOOLS_LOG"]).read_text().splitlines()]
    assert [(r["email"], r["card"], r["key"]) for r in received] == [(EMAIL, CARD, STRIPE)] * 2
    assert OPENAI in received[0]["note"] and EMAIL in received[0]["note"]

    # the console's pages
    store = Path(env["FLOWRUN_STORE"])
    config = ConsoleConfig(store_path=store, token=TOKEN, resume_wait_s=30, env=env)
    with TestClient(create_app(config), base_url="http://127.0.0.1:8765") as client:
        login(client, TOKEN)  # the shared token: this test only reads pages
        for page in ("/", "/inbox", "/runs", "/runs/sealed-1", "/runs/sealed-1/trace"):
            got = client.get(page)
            assert got.status_code == 200, page
            assert_clean(f"console page {page}", got.text)

    # at rest: every byte of every file under the store's folder
    folder = store.parent
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"flowrun.db", "seal.key", "sealed-1.jsonl"}
    for path in files:
        assert_clean(str(path.relative_to(folder)), path.read_bytes())
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path

    # spans: the same workflow executed in process, its spans exported in memory
    monkeypatch.setenv("STOOLS_LOG", env["STOOLS_LOG"])
    exporter = InMemorySpanExporter()
    tracing = setup_tracing(exporter=exporter)
    assert tracing is not None
    obs = RunObserver(store=None, tracing=tracing, capture="default")
    plan = compile_plan(load_spec(SPEC), None)
    result = asyncio.run(execute(plan, inputs(3), hooks=obs, telemetry=obs, run_id="s-spans"))
    assert result.status == "waiting"
    spans = exporter.get_finished_spans()
    assert spans
    for span in spans:
        assert_clean(f"span {span.name}", span.to_json())
