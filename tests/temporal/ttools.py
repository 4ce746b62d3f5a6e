"""Tools for the Temporal tests: every real call is appended to the JSONL file named by $TTOOLS_LOG."""

from __future__ import annotations

import json
import os
import time


def _log(entry: dict[str, object]) -> None:
    with open(os.environ["TTOOLS_LOG"], "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def step(label: str) -> dict[str, object]:
    """A read that records that it ran."""
    _log({"label": label, "kind": "read"})
    return {"label": label}


def slow(label: str, seconds: float) -> dict[str, object]:
    """A read that says when it starts, so a test can kill the worker in the middle of it."""
    _log({"label": label, "kind": "started", "pid": os.getpid()})
    time.sleep(seconds)
    _log({"label": label, "kind": "read", "pid": os.getpid()})
    return {"label": label}


def effect(label: str, idempotency_key: str | None = None) -> dict[str, object]:
    """A write: each line it logs is one real side effect."""
    _log({"label": label, "kind": "write", "key": idempotency_key, "pid": os.getpid()})
    return {"label": label, "key": idempotency_key}


def undo_effect(label: str, key: str | None = None) -> dict[str, object]:
    """The compensation of `effect`: each line it logs is one real undo."""
    _log({"label": label, "kind": "undo", "key": key, "pid": os.getpid()})
    return {"label": label, "undone": True}
