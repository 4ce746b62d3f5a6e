"""`flowrun stats --tenant T --workflow W --since D`: cost per completed task (p50, p95, max)
and its drift against the window as long just before; on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.store import open_store
from runner.trace.stats import compute_stats
from tests.store.test_store import _run


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_cost_drift_against_the_previous_window(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "postgres":
        from tests.pg_server import new_database

        server = request.getfixturevalue("postgres_server")
        source, target = new_database(server), new_database(server)
    else:
        source, target = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    now = time.time()
    src = open_store(source)
    # last week (the window before), then this week: costs went up by half
    plan = [(f"old{i}", now - 10 * 86400, c) for i, c in enumerate((0.01, 0.02, 0.03, 0.04))]
    plan += [(f"new{i}", now - 86400, c) for i, c in enumerate((0.015, 0.03, 0.045, 0.06))]
    plan += [("other", now - 86400, 9.0)]  # another tenant's run is not counted
    try:
        for run_id, _, cost in plan:
            _run(src, run_id, tenant="beta" if run_id == "other" else "acme")
            src.finish_run(run_id, add_duration_s=1.0, status="succeeded", cost_usd=cost)
        src.flush()
        rows = src.export_rows("runs")
    finally:
        src.close()
    when = {run_id: at for run_id, at, _ in plan}
    for row in rows:  # the same runs, made at those times
        row["created_at"] = when[row["run_id"]]
    dst = open_store(target)
    try:
        dst.import_rows({"runs": rows})
        s = compute_stats(dst, tenant="acme", workflow="wf", since=now - 7 * 86400, now=now)
    finally:
        dst.close()
    assert s["cost_per_completed_usd"] == {"p50": 0.03, "p95": 0.06, "max": 0.06}
    prev = s["previous_window"]
    assert prev["completed"] == 4
    assert prev["cost_per_completed_usd"] == {"p50": 0.02, "p95": 0.04, "max": 0.04}
    assert s["cost_drift"] == {"p50": pytest.approx(0.5), "p95": pytest.approx(0.5),
                               "max": pytest.approx(0.5)}  # fmt: skip
