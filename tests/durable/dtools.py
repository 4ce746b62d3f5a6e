"""Tools for the durable-run tests: each call is appended to the file named by $DTOOLS_LOG."""

from __future__ import annotations

import fcntl
import json
import os
import time


def _log(entry: dict[str, object]) -> int:
    """Append the entry and count this label's entries, under a lock: many processes log here."""
    path = os.environ["DTOOLS_LOG"]
    with open(path, "a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # a reader must never see another writer's half line
        f.write(json.dumps(entry) + "\n")
        f.flush()
        f.seek(0)
        return sum(1 for line in f if json.loads(line).get("label") == entry.get("label"))


def step(label: str) -> dict[str, object]:
    """A read that records that it ran."""
    return {"label": label, "n": _log({"label": label, "kind": "read"})}


def slow(label: str, seconds: float) -> dict[str, object]:
    """A read that takes a while, so a kill can land between nodes."""
    time.sleep(seconds)
    return {"label": label, "n": _log({"label": label, "kind": "read"})}


def held(label: str, seconds: float = 30.0) -> dict[str, object]:
    """A read that waits until the test creates `$DTOOLS_LOG.go` (at most `seconds`).

    It holds a run between two nodes for exactly as long as the test needs, however slowly the
    machine starts the other process, instead of hoping a sleep is long enough.
    """
    go = os.environ["DTOOLS_LOG"] + ".go"
    deadline = time.monotonic() + seconds
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"label": label, "n": _log({"label": label, "kind": "read"})}


def hold(label: str, seconds: float = 30.0) -> dict[str, object]:
    """`held`, but it logs that it started first: a test knows the node (item) is running."""
    _log({"label": label, "kind": "started"})
    return held(label, seconds)


def effect(label: str, idempotency_key: str | None = None) -> dict[str, object]:
    """A write that records each time it really happens."""
    n = _log({"label": label, "kind": "write", "key": idempotency_key})
    return {"label": label, "n": n, "key": idempotency_key}


def unrecord(label: str) -> dict[str, object]:
    """Compensation of `effect`."""
    return {"label": label, "undone": _log({"label": f"undo:{label}", "kind": "undo"})}
