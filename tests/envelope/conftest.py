"""Envelope tests compile small specs with the tools in etools.py and run them in-process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from runner.engine.context import Envelope
from runner.engine.results import RunResult
from runner.engine.run import execute
from runner.engine.services import MemoryServices
from runner.engine.telemetry import Telemetry
from runner.plan.compile import compile_plan
from runner.plan.model import Plan
from runner.spec import load_spec_text

HEADER = """apiVersion: flowrun/v1
kind: Workflow
metadata: {name: pay-flow}
tools:
  read: {impl: tests.envelope.etools:read}
  untrusted_read: {impl: tests.envelope.etools:read, trust: untrusted}
  pay:
    impl: tests.envelope.etools:pay
    preview: tests.envelope.etools:plan_pay
    effect: write
    scopes: [payments]
  pay_no_preview: {impl: tests.envelope.etools:pay, effect: write}
"""


@pytest.fixture(autouse=True)
def etools_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "etools.log"
    monkeypatch.setenv("ETOOLS_LOG", str(log))
    return log


def plan_of(body: str, path: Path | None = None) -> Plan:
    where = str(path or Path(__file__).parent / "inline.yaml")
    return compile_plan(load_spec_text(HEADER + body, where))


def run(
    plan: Plan,
    inputs: dict[str, Any] | None = None,
    *,
    live: bool = False,
    scopes: tuple[str, ...] = ("payments",),
    services: Any = None,
    actor: str | None = "ops",
) -> RunResult:
    svc = services if services is not None else MemoryServices()
    env = Envelope(live=live, scopes=scopes, actor=actor, tenant="acme")
    return asyncio.run(execute(plan, inputs or {}, services=svc, envelope=env, telemetry=Traced()))


class Traced(Telemetry):
    """No spans, but a trace id: live writes are refused in runs whose calls have none."""

    def trace_id(self, ctx: Any) -> str | None:
        return "0" * 31 + "1"


class DurableMemory(MemoryServices):
    """In-memory services that claim durability, so live writes may run in-process."""

    durable = True
