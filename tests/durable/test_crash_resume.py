"""SIGKILL `flowrun execute` at every node boundary and around each write, then `flowrun resume`;
on SQLite at every point, on PostgreSQL around the writes."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.durable.conftest import Flowrun, only_run_id, refund_case, rows

pytestmark = pytest.mark.slow

NODES = ["intake", "classify", "retrieve", "route", "propose", "verify", "approve", "act", "log"]
POINTS = [f"{when}:{n}" for n in NODES for when in ("before", "after")] + [
    f"{when}:{n}" for n in ("act", "log") for when in ("before-effect", "after-effect")
]


def _final(out: dict[str, Any]) -> dict[str, Any]:
    """What must not depend on a crash: outcome, outputs and per-node statuses (not timings)."""
    outputs = json.loads(json.dumps(out["outputs"]))
    if isinstance(outputs.get("refund"), dict):
        outputs["refund"].pop("created_at", None)
    return {
        "status": out["status"],
        "outputs": outputs,
        "nodes": {k: v["status"] for k, v in out["nodes"].items()},
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import os
    import subprocess
    import sys

    from tests.durable.conftest import ROOT

    tmp = tmp_path_factory.mktemp("clean")
    support = tmp / "support.db"
    subprocess.run([sys.executable, "-m", "tools.seed", "--db", str(support)], cwd=ROOT, check=True)
    env = {**os.environ, "FLOWRUN_STORE": str(tmp / "s.db"), "FLOWRUN_SUPPORT_DB": str(support)}
    env.pop("FLOWRUN_CRASH_AT", None)
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", *refund_case("refund_granted")],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return _final(json.loads(proc.stdout))


def _crash_then_resume(make: Any, point: str) -> tuple[str, Any, Any, list[Any], list[Any]]:
    flowrun, env = make()
    crashed = flowrun(*refund_case("refund_granted"), crash_at=point)
    run_id = only_run_id(env)
    resumed = flowrun("resume", run_id, "--output", "json")
    refunds = rows(env["FLOWRUN_SUPPORT_DB"], "SELECT order_id, amount_usd, status FROM refunds")
    notes = rows(env["FLOWRUN_SUPPORT_DB"], "SELECT ticket_id FROM ticket_notes")
    return point, crashed, resumed, refunds, notes


def _maker(
    tmp_path_factory: pytest.TempPathFactory, pg_server: str | None = None
) -> Callable[[], tuple[Flowrun, dict[str, str]]]:
    """A fresh store (a file, or a new database on `pg_server`) and support database per call."""
    import os
    import subprocess
    import sys

    from tests.durable.conftest import ROOT

    def make() -> tuple[Flowrun, dict[str, str]]:
        tmp = tmp_path_factory.mktemp("crash")
        support = tmp / "support.db"
        subprocess.run(
            [sys.executable, "-m", "tools.seed", "--db", str(support)],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        env = {**os.environ, "FLOWRUN_STORE": str(tmp / "s.db"), "FLOWRUN_SUPPORT_DB": str(support)}
        env.pop("FLOWRUN_CRASH_AT", None)
        if pg_server is not None:
            from tests.pg_server import new_database
            from tests.stores import pg_env

            env.update(pg_env(tmp, new_database(pg_server)))

        def run(*args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
            e = dict(env)
            if crash_at:
                e["FLOWRUN_CRASH_AT"] = crash_at
            return subprocess.run(
                [sys.executable, "-m", "runner.cli", *args],
                cwd=ROOT, env=e, capture_output=True, text=True, timeout=600,
            )  # fmt: skip

        return run, env

    return make


def _check(results: list[Any], uninterrupted: dict[str, Any]) -> None:
    for point, crashed, resumed, refunds, notes in results:
        assert crashed.returncode == -signal.SIGKILL, (point, crashed.stderr[-2000:])
        assert resumed.returncode == 0, (point, resumed.stdout[-1000:], resumed.stderr[-2000:])
        assert _final(json.loads(resumed.stdout)) == uninterrupted, point
        assert refunds == [("O-5001", 35.0, "issued")], (point, refunds)
        assert notes == [("T-1001",)], (point, notes)


def test_every_crash_point_resumes_to_the_uninterrupted_outcome(
    tmp_path_factory: pytest.TempPathFactory, uninterrupted: dict[str, Any]
) -> None:
    make = _maker(tmp_path_factory)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda p: _crash_then_resume(make, p), POINTS))
    assert len(results) == len(POINTS) == 22
    _check(results, uninterrupted)


# on PostgreSQL: the points where durability matters most (a model's answer, each write's
# intent and result), not all 22 again
PG_POINTS = [
    "after:propose", "before:act", "before-effect:act", "after-effect:act", "after:act",
    "before-effect:log", "after-effect:log",
]  # fmt: skip


def test_crash_points_around_the_writes_resume_on_postgres(
    tmp_path_factory: pytest.TempPathFactory, uninterrupted: dict[str, Any], postgres_server: str
) -> None:
    assert set(PG_POINTS) <= set(POINTS)
    make = _maker(tmp_path_factory, postgres_server)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda p: _crash_then_resume(make, p), PG_POINTS))
    assert len(results) == len(PG_POINTS)
    _check(results, uninterrupted)
