"""The outside world of the fleet test (tests/store/test_fleet.py): two writes whose effects land
in a PostgreSQL database of their own ($FLEET_EFFECTS), shared by every worker as a payment
provider's API would be.

Each call records an attempt; an effect is one row per idempotency key (the target deduplicates
by key, as a payment API does). A call named by its run's `hold` argument, the first time it gets
there, says that it is inside the write (a row in `inside`) and waits there for the test to
SIGKILL its worker: before the effect (`pay:before`, `ship:before`) or after it, before the call
returns (`pay:after`, `ship:after`).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

HOLD_S = 300.0  # the test kills the worker long before; a call never killed goes on after it

SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, worker TEXT NOT NULL, pid INTEGER NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS effects (
    key TEXT PRIMARY KEY, tool TEXT NOT NULL, run_order TEXT NOT NULL, amount DOUBLE PRECISION,
    worker TEXT NOT NULL, pid INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS inside (
    key TEXT PRIMARY KEY, hold TEXT NOT NULL, worker TEXT NOT NULL, pid INTEGER NOT NULL);
"""


def _write(tool: str, order: str, amount: float, hold: str, key: str) -> dict[str, Any]:
    import psycopg

    worker = os.environ.get("FLEET_WORKER") or socket.gethostname()
    pid = os.getpid()
    where, _, when = hold.partition(":")
    held = where == tool
    with psycopg.connect(os.environ["FLEET_EFFECTS"], autocommit=True) as c:
        c.execute("INSERT INTO attempts (key, worker, pid) VALUES (%s, %s, %s)", (key, worker, pid))
        if held and when == "before":
            _inside(c, key, hold, worker, pid)
        c.execute(
            "INSERT INTO effects (key, tool, run_order, amount, worker, pid) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
            (key, tool, order, amount, worker, pid),
        )
        if held and when == "after":
            _inside(c, key, hold, worker, pid)
    return {"order": order, "key": key}


def _inside(c: Any, key: str, hold: str, worker: str, pid: int) -> None:
    """Say so and wait, the first time only: a call made again after the kill goes through."""
    first = c.execute(
        "INSERT INTO inside (key, hold, worker, pid) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (key) DO NOTHING RETURNING key",
        (key, hold, worker, pid),
    ).fetchone()
    if first is None:
        return
    deadline = time.monotonic() + HOLD_S
    while time.monotonic() < deadline:  # the worker is SIGKILLed here
        time.sleep(0.05)


def pay(order: str, amount: float, hold: str, idempotency_key: str) -> dict[str, Any]:
    """Charge `amount` for `order` (once per idempotency key)."""
    return _write("pay", order, amount, hold, idempotency_key)


def ship(order: str, hold: str, idempotency_key: str) -> dict[str, Any]:
    """Ship `order` (once per idempotency key)."""
    return _write("ship", order, 0.0, hold, idempotency_key)
