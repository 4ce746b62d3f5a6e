"""Determinism: checked-in histories of reference runs replay on today's interpreter; a
deliberately nondeterministic interpreter is caught. No server needed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from runner.temporal.types import RunInput
from runner.temporal.worker import WORKFLOWS, sandbox_runner
from runner.temporal.workflow import Interpreter
from tests.temporal.conftest import ROOT

HISTORIES = Path(__file__).parent / "histories"
REFERENCE_RUNS = ["writes", "approval", "support_refund"]


def history(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(
        f"flowrun-{name}", (HISTORIES / f"{name}.json").read_text(encoding="utf-8")
    )


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the histories name their specs relative to the repository


def test_there_are_at_least_three_reference_histories() -> None:
    assert sorted(p.stem for p in HISTORIES.glob("*.json")) == sorted(REFERENCE_RUNS)


@pytest.mark.parametrize("name", REFERENCE_RUNS)
def test_reference_history_replays(name: str) -> None:
    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=sandbox_runner())
    result = asyncio.run(replayer.replay_workflow(history(name)))
    assert result.replay_failure is None


@workflow.defn(name="flowrun.interpret")
class SleepyInterpreter(Interpreter):
    """A careless change: a pause before the run, which the recorded histories never had."""

    @workflow.run
    async def run(self, run: RunInput) -> dict[str, Any]:
        await workflow.sleep(0.01)
        return await super().run(run)


@workflow.defn(name="flowrun.interpret")
class GatesAsActivities(Interpreter):
    """Another: gates and switches moved into activities, with a bookkeeping timer each."""

    async def _pure(self, state: Any, node: Any) -> Any:
        await workflow.sleep(0.01)
        return await super()._pure(state, node)

    @workflow.run
    async def run(self, run: RunInput) -> dict[str, Any]:
        return await super().run(run)


@pytest.mark.parametrize("changed", [SleepyInterpreter, GatesAsActivities])
@pytest.mark.parametrize("name", ["writes", "support_refund"])
def test_a_nondeterministic_change_is_caught(changed: type, name: str) -> None:
    replayer = Replayer(workflows=[changed], workflow_runner=sandbox_runner())
    with pytest.raises(NondeterminismError):
        asyncio.run(replayer.replay_workflow(history(name)))
