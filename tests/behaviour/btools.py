"""Tools the behaviour suite calls: they record what happened so tests can assert on it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Log:
    """Everything the tools saw in one test; reset before each test by the conftest."""

    spans: dict[str, tuple[float, float]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    running: int = 0
    peak: int = 0

    def count(self, name: str) -> int:
        self.calls[name] = self.calls.get(name, 0) + 1
        return self.calls[name]


LOG = Log()


def reset() -> None:
    """Start a test with an empty log."""
    global LOG
    LOG = Log()


async def sleepy(name: str, seconds: float = 0.0) -> dict[str, Any]:
    """Sleep without blocking the loop and record when it started and ended."""
    start = time.perf_counter()
    LOG.count(name)
    LOG.running += 1
    LOG.peak = max(LOG.peak, LOG.running)
    try:
        await asyncio.sleep(seconds)
    finally:
        LOG.running -= 1
    LOG.spans[name] = (start, time.perf_counter())
    return {"name": name, "slept": seconds}


def echo(value: Any = None) -> dict[str, Any]:
    """Return its argument, so tests can see what a binding evaluated to."""
    LOG.count("echo")
    return {"value": value}


def flaky(name: str, failures: int) -> dict[str, Any]:
    """Fail the first `failures` calls for `name`, then succeed."""
    n = LOG.count(name)
    if n <= failures:
        raise RuntimeError(f"boom {n}")
    return {"call": n}


async def slow_then_fast(name: str, slow_calls: int, seconds: float) -> dict[str, Any]:
    """Sleep `seconds` on the first `slow_calls` calls (to hit a timeout), then answer at once."""
    n = LOG.count(name)
    if n <= slow_calls:
        await asyncio.sleep(seconds)
    return {"call": n}


def typed(count: int, label: str = "x") -> dict[str, Any]:
    """A tool whose argument schema is derived from its type hints."""
    LOG.count("typed")
    return {"count": count, "label": label}


def explode(reason: str) -> dict[str, Any]:
    """Always raise, to show how a tool error reaches the node."""
    LOG.count("explode")
    raise ValueError(reason)


def keyed(order_id: str, idempotency_key: str, failures: int = 0) -> dict[str, Any]:
    """Record the idempotency key the engine passed; fail the first `failures` calls."""
    n = LOG.count("keyed")
    LOG.keys.append(idempotency_key)
    if n <= failures:
        raise RuntimeError(f"keyed failed on call {n}")
    return {"order_id": order_id, "key": idempotency_key}


async def item_work(item: int, seconds: float = 0.05) -> dict[str, Any]:
    """One map item: count concurrency, fail on a negative item, return the item doubled."""
    LOG.count("item_work")
    LOG.running += 1
    LOG.peak = max(LOG.peak, LOG.running)
    try:
        await asyncio.sleep(seconds)
    finally:
        LOG.running -= 1
    if item < 0:
        raise ValueError(f"negative item {item}")
    return {"doubled": item * 2}
