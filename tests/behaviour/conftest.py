"""Fixtures of the behaviour suite: inline specs, recorded responses, one `backend` per engine."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.engine.results import RunResult
from runner.engine.run import execute
from runner.models.client import LLMRequest, complete, ensure_litellm
from runner.models.responses import Recorded, RecordedResponses
from runner.plan.compile import compile_plan
from runner.plan.model import Plan
from runner.spec import load_spec_text
from tests.behaviour import btools

HERE = Path(__file__).resolve().parent
SPEC_PATH = HERE / "inline.yaml"  # not a file: tool impls resolve from this folder upwards

PRIMARY = "openai/gpt-4o-mini"
FALLBACK = "anthropic/claude-haiku-4-5"

PRELUDE = f"""\
apiVersion: flowrun/v1
kind: Workflow
metadata: {{name: behaviour}}
models:
  small: {{model: {PRIMARY}, temperature: 0, max_tokens: 100, fallbacks: [{FALLBACK}]}}
  solo: {{model: {PRIMARY}, temperature: 0, max_tokens: 100}}
tools:
  sleepy: {{impl: tests.behaviour.btools:sleepy}}
  echo: {{impl: tests.behaviour.btools:echo}}
  flaky: {{impl: tests.behaviour.btools:flaky}}
  slow_then_fast: {{impl: tests.behaviour.btools:slow_then_fast}}
  typed: {{impl: tests.behaviour.btools:typed}}
  explode: {{impl: tests.behaviour.btools:explode}}
  keyed: {{impl: tests.behaviour.btools:keyed}}
  keyed_by_order:
    impl: tests.behaviour.btools:keyed
    idempotency_key: "${{{{ 'order:' + args.order_id }}}}"
  item_work: {{impl: tests.behaviour.btools:item_work}}
"""

Run = Callable[..., Coroutine[Any, Any, RunResult]]


def plan_of(body: str) -> Plan:
    """Compile the shared prelude plus `body` (budget, nodes, outputs, written at column 0)."""
    text = PRELUDE + textwrap.dedent(body)
    return compile_plan(load_spec_text(text, str(SPEC_PATH)))


@pytest.fixture(autouse=True)
def _fresh_tool_log() -> Iterator[None]:
    btools.reset()
    yield
    btools.reset()


@pytest.fixture(scope="session", autouse=True)
def _litellm_warm() -> None:
    """Import litellm and replay one call up front, so their seconds never land inside a timing."""
    ensure_litellm()
    recorded = Recorded(
        node="warm",
        index=None,
        attempt=1,
        content="{}",
        usage=None,
        model=None,
        finish_reason="stop",
        error=None,
        latency_s=0.0,
        line=1,
    )
    for model in (PRIMARY, FALLBACK):
        request = LLMRequest(
            model=model,
            messages=[{"role": "user", "content": "hi"}],
            output_schema=None,
            max_tokens=10,
        )
        asyncio.run(complete(request, recorded))


def _recorded(tmp_path: Path, responses: list[dict[str, Any]] | None) -> RecordedResponses:
    # Always replay: with no responses given, an LLM call fails instead of reaching a provider.
    path = tmp_path / f"responses-{len(list(tmp_path.glob('responses-*')))}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in responses or []), encoding="utf-8")
    return RecordedResponses.load(path)


@pytest.fixture(params=["local"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Run:
    """`run(plan, inputs, responses=None) -> RunResult` on the backend named by the param."""
    if request.param == "local":

        async def run(
            plan: Plan, inputs: dict[str, Any], responses: list[dict[str, Any]] | None = None
        ) -> RunResult:
            return await execute(plan, inputs, responses=_recorded(tmp_path, responses))

        return run
    raise AssertionError(f"unknown backend {request.param!r}")
