"""Reading what a user names: bounded file reads and bounded JSON, so bad input is a message.

A path can name a device (`/dev/zero`), a FIFO or a `/proc` file whose size says nothing of its
length, and a JSON document can nest deep enough to exhaust Python's stack: both end here as
ordinary errors (`OSError`, `json.JSONDecodeError`) that the callers already report.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

MAX_JSON_DEPTH = 100  # objects and arrays inside each other; more is no task input or answer


class UnreadableFile(OSError):
    """A path that is not a regular file, or one longer than the reader's limit."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.strerror = message


def read_bytes(path: str | Path, *, limit: int) -> bytes:
    """At most `limit` bytes of a regular file; devices, FIFOs and sockets are refused unread."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableFile("not a regular file (a device, FIFO or socket)")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UnreadableFile(f"larger than {_size(limit)}")
    return data


def read_text(path: str | Path, *, limit: int) -> str:
    """`read_bytes` decoded as UTF-8 (UnicodeDecodeError on bad bytes)."""
    return read_bytes(path, limit=limit).decode("utf-8")


def loads(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads` that refuses documents nested deeper than `max_depth` as a JSONDecodeError."""
    try:
        value = json.loads(text)
    except RecursionError:
        value = None
        depth = max_depth + 1
    else:
        depth = _depth(value, max_depth)
    if depth > max_depth:
        doc = text if isinstance(text, str) else text.decode("utf-8", "replace")
        raise json.JSONDecodeError(f"nests deeper than {max_depth} levels", doc, 0)
    return value


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, walked without recursion, stopping past `limit`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            children: Any = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        stack.extend((c, d + 1) for c in children if isinstance(c, dict | list))
    return deepest


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 else f"{n} bytes"
