"""Tools for the batch tests: each call is appended to the file named by $BTOOLS_LOG."""

from __future__ import annotations

import fcntl
import json
import os
import time
from typing import Any


def _log(entry: dict[str, object]) -> list[dict[str, Any]]:
    """Append the entry under a lock (many runs and processes log here); every entry so far."""
    with open(os.environ["BTOOLS_LOG"], "a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(entry) + "\n")
        f.flush()
        f.seek(0)
        return [json.loads(line) for line in f]


def _inside(entries: list[dict[str, Any]]) -> tuple[int, int]:
    """(runs inside `inside` now, runs that ever entered it)."""
    enters = sum(1 for e in entries if e["kind"] == "enter")
    return enters - sum(1 for e in entries if e["kind"] == "exit"), enters


def inside(item: str) -> dict[str, object]:
    """Stay inside until $BTOOLS_TARGET runs are inside at once, or every one of the
    $BTOOLS_TOTAL runs has entered (at most 60 s): a batch that runs more at once than its
    bound shows it in the log, one that runs fewer would wait out the deadline."""
    target = int(os.environ.get("BTOOLS_TARGET", "1"))
    total = int(os.environ.get("BTOOLS_TOTAL", "1"))
    now, entered = _inside(_log({"item": item, "kind": "enter"}))
    deadline = time.monotonic() + 60
    while now < target and entered < total and time.monotonic() < deadline:
        time.sleep(0.01)
        with open(os.environ["BTOOLS_LOG"], encoding="utf-8") as f:
            now, entered = _inside([json.loads(line) for line in f if line.endswith("\n")])
    _log({"item": item, "kind": "exit"})
    return {"item": item}


def write(item: str, idempotency_key: str | None = None) -> dict[str, object]:
    """A write that records each time it really happens."""
    _log({"item": item, "kind": "write", "key": idempotency_key})
    return {"item": item, "written": True}
