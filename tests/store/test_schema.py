"""Schema versions on both stores: a store an older flowrun made opens and is upgraded in place,
its runs kept; processes opening it together upgrade it once; a newer one is refused, untouched."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from runner.store import open_store
from runner.store import postgres as pg
from runner.store import sqlite as lite
from tests.stores import is_pg, query

ROOT = Path(__file__).resolve().parents[2]
RUN = {
    "run_id": "old1",
    "workflow": "w",
    "spec_path": "w.yaml",
    "spec_dir": ".",
    "spec_text": "",
    "spec_digest": "d",
    "inputs": '{"a": 1}',
    "status": "succeeded",
    "created_at": 1.0,
    "updated_at": 2.0,
}


def make_version_1(target: str) -> None:
    """A store as flowrun's first schema left it, with one run."""
    cols = ", ".join(RUN)
    if is_pg(target):
        import psycopg

        with psycopg.connect(target) as c:
            for stmt in pg._MIGRATIONS[1]:
                c.execute(stmt)  # type: ignore[arg-type]
            c.execute(
                "INSERT INTO flowrun_meta (key, value) VALUES ('app', %s), ('schema_version', '1')",
                (pg.APP,),
            )
            marks = ", ".join(["%s"] * len(RUN))
            c.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", tuple(RUN.values()))  # type: ignore[arg-type]
        return
    with sqlite3.connect(target) as c:
        c.executescript(lite._MIGRATIONS[1])
        c.execute(f"PRAGMA application_id = {lite.APP_ID}")
        c.execute("PRAGMA user_version = 1")
        c.execute(f"INSERT INTO runs ({cols}) VALUES ({', '.join('?' * len(RUN))})", tuple(RUN.values()))  # fmt: skip
    c.close()


def version(target: str) -> int:
    if is_pg(target):
        return int(
            query(target, "SELECT value FROM flowrun_meta WHERE key = 'schema_version'")[0][0]
        )
    return int(query(target, "PRAGMA user_version")[0][0])


def test_both_stores_have_one_schema_version() -> None:
    assert pg.SCHEMA_VERSION == lite.SCHEMA_VERSION
    assert (
        sorted(pg._MIGRATIONS)
        == sorted(lite._MIGRATIONS)
        == list(range(1, lite.SCHEMA_VERSION + 1))
    )


def test_a_store_made_by_an_older_flowrun_opens_upgraded_with_its_runs(target: str) -> None:
    make_version_1(target)
    assert version(target) == 1
    store = open_store(target, create=False)
    try:
        assert version(target) == lite.SCHEMA_VERSION
        row = store.get_run("old1")
        assert (row.status, row.inputs, row.workflow) == ("succeeded", {"a": 1}, "w")
        # the tables later versions added work: a ledger row, an approval, a batch
        store.ledger_intent("k", run_id="old1", node_id="n", tool="t", effect="write",
                            args={}, compensate=None, spec_dir=".")  # fmt: skip
        store.ledger_done("k", {"ok": True})
        assert (store.ledger_get("k") or {})["status"] == "done"
        line = {"line": 1, "inputs": {"a": 1}, "status": "pending"}
        store.batch_create("b1", lines=[line], workflow="w", spec_path="w.yaml",
                           data_path="d.jsonl", options={}, status="running")  # fmt: skip
        assert [line["line"] for line in store.batch_lines("b1")] == [1]
    finally:
        store.close()


OPEN = "import sys; from runner.store import open_store; open_store(sys.argv[1]).close()"


def test_processes_opening_an_old_store_together_upgrade_it_once(target: str) -> None:
    make_version_1(target)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(Path(target).parent)}
    if is_pg(target):
        env["HOME"] = os.environ["HOME"]  # the fixture's private home (the seal key)
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN, target], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    assert version(target) == lite.SCHEMA_VERSION
    assert query(target, "SELECT run_id, status FROM runs") == [("old1", "succeeded")]


def test_a_store_made_by_a_newer_flowrun_is_refused_and_left_alone(target: str) -> None:
    open_store(target).close()
    newer = lite.SCHEMA_VERSION + 1
    if is_pg(target):
        import psycopg

        with psycopg.connect(target) as c:
            c.execute(
                "UPDATE flowrun_meta SET value = %s WHERE key = 'schema_version'", (str(newer),)
            )
    else:
        with sqlite3.connect(target) as c:
            c.execute(f"PRAGMA user_version = {newer}")
        c.close()
    before = query(target, "SELECT COUNT(*) FROM runs")
    t0 = time.monotonic()
    # a process opening it: an operator's command (this one already knows the store as it was)
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "runs", "--store", target],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 2, proc.stderr
    assert f"schema version {newer}" in proc.stderr and "upgrade flowrun" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert version(target) == newer and query(target, "SELECT COUNT(*) FROM runs") == before
