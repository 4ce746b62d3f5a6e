"""Opening a SQLite store in a process that already has it open keeps that process's locks.

POSIX drops every lock a process holds on a file when any descriptor of it is closed. Had
opening a store opened and closed a descriptor of the database (to set its mode), a server
that opens the store per request while a run's connection stays open would lose its shared
lock; another process closing its own connection would then take the database for its last
user, checkpoint and delete the WAL, and the server's later commits would go to a deleted file
that nobody else ever reads.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from runner.store import open_store

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
sys.path.insert(0, {root!r})
from runner.store import open_store
db = {db!r}
kept = open_store(db)  # a run's connection, open throughout
kept.event("r", "tick", i=0)
open_store(db, create=False).close()  # a request of the same server opens the store
print("ready", flush=True)
sys.stdin.readline()  # meanwhile another process read the store and closed its connection
for i in range(1, 11):
    kept.event("r", "tick", i=i)
print("written", flush=True)
sys.stdin.readline()
kept.close()
"""


def ticks(db: Path) -> int:
    c = sqlite3.connect(db)  # a fresh connection, closed at once: another process's read
    try:
        return int(c.execute("SELECT COUNT(*) FROM events WHERE type = 'tick'").fetchone()[0])
    finally:
        c.close()


def test_commits_stay_visible_after_the_store_is_opened_again_in_the_same_process(
    tmp_path: Path,
) -> None:
    db = tmp_path / "flowrun.db"
    open_store(db).close()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), db=str(db))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        assert ticks(db) == 1
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "written"
        assert ticks(db) == 11  # seen while the writer's connection is still open
        child.stdin.write("end\n")
        child.stdin.flush()
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
    assert ticks(db) == 11
    c = sqlite3.connect(db)
    try:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        c.close()
