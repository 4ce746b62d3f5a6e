"""A worker older than the interpreter a run needs fails the run with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import ExitCode
from runner.plan.compile import compile_plan
from runner.spec import load_spec
from runner.store import open_store
from runner.temporal import INTERPRETER_VERSION
from tests.temporal.conftest import SPECS, Workers


@pytest.mark.slow
def test_a_run_needing_a_newer_interpreter_fails_clearly(
    workers: Workers, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from runner.runs import Placement, Runs
    from runner.temporal.client import TemporalRunError

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    workers.start()
    store = open_store(tmp_path / "flowrun.db")
    plan = compile_plan(load_spec(str(SPECS / "crash.yaml")))
    where = Placement(
        backend="temporal", address=workers.address, task_queue=workers.queue,
        interpreter_version=INTERPRETER_VERSION + 1,
    )  # fmt: skip
    with pytest.raises(TemporalRunError) as caught:
        asyncio.run(
            Runs(store).start(
                plan, {"seconds": 0}, run_id="v1", options={"live": True}, where=where
            )
        )
    assert caught.value.exit_code == ExitCode.FAILED
    assert (
        f"needs interpreter version {INTERPRETER_VERSION + 1}; this worker has version "
        f"{INTERPRETER_VERSION}: upgrade the worker's flowrun" in caught.value.message
    )
    row = store.get_run("v1")
    assert row.status == "failed"
    assert row.reason is not None and "upgrade the worker" in row.reason
