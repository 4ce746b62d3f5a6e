"""Shared pieces of the budgets tests: flowrun as real processes on one store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = "openai/gpt-4o-mini"
PROMPT, COMPLETION, MAX_TOKENS = 300, 20, 50  # each recorded answer bills 300 in + 20 out


@pytest.fixture(params=["sqlite", "postgres"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store every process of a test shares: each guarantee holds on both implementations."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "flowrun.db")


def env_for(store: str, **extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e.update(FLOWRUN_STORE=store, PYTHONPATH=str(ROOT), **extra)
    e.pop("FLOWRUN_CRASH_AT", None)
    return e


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def llm_spec(tmp: Path, *, items: int = 0, name: str = "greet", latency_s: float = 0.05,
             cache: str = "") -> tuple[Path, Path]:  # fmt: skip
    """A workflow of one model call (or a map of `items` model calls, all at once) on a priced
    model, and its recorded answers."""
    out = "{type: object, properties: {hi: {type: string}}, required: [hi]}"
    if items:
        node = f"""\
  hello:
    map:
      over: "${{{{ {list(range(items))} }}}}"
      max_concurrency: {items}
      node:
        llm: small
        prompt: "Greet {{{{ inputs.who }}}}, visitor {{{{ item }}}}"
        output: {out}
"""
    else:
        node = f"""\
  hello:
    llm: small
    prompt: "Greet {{{{ inputs.who }}}}"
    output: {out}
{cache}"""
    spec = tmp / f"{name}.yaml"
    spec.write_text(
        f"""\
apiVersion: flowrun/v1
kind: Workflow
metadata: {{name: {name}}}
inputs:
  type: object
  properties: {{who: {{type: string}}}}
  required: [who]
models:
  small: {{model: {MODEL}, temperature: 0, max_tokens: {MAX_TOKENS}}}
nodes:
{node}""",
        encoding="utf-8",
    )
    usage = {"prompt_tokens": PROMPT, "completion_tokens": COMPLETION}
    lines = (
        [{"node": "hello", "index": i, "content": {"hi": f"v{i}"}, "usage": usage,
          "latency_s": latency_s} for i in range(items)]
        if items
        else [{"node": "hello", "content": {"hi": "hello"}, "usage": usage,
               "latency_s": latency_s}]
    )  # fmt: skip
    responses = tmp / f"{name}.jsonl"
    responses.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return spec, responses


def prices() -> tuple[float, float]:
    """(billed, reserved) dollars of one recorded call."""
    from runner.models.pricing import price_of

    price = price_of(MODEL)
    assert price is not None
    billed = PROMPT * price.input_per_token + COMPLETION * price.output_per_token
    reserved = PROMPT * price.input_per_token + MAX_TOKENS * price.output_per_token
    return billed, reserved


def budgets_file(tmp: Path, text: str) -> Path:
    p = tmp / "budgets.yaml"
    p.write_text("apiVersion: flowrun/v1\nkind: Budgets\n" + text, encoding="utf-8")
    return p


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
