"""Ceilings over many runs and rate limits: the SQL both stores run inside their transactions.

Each store calls these inside the one write transaction that reserves a call (SQLite: BEGIN
IMMEDIATE, one writer at a time; PostgreSQL: a transaction-scoped advisory lock per ceiling and
per rate-limit key, taken in sorted order after the run's own lock, so no two reservations
deadlock). `q` runs one statement with `?` placeholders and returns its rows; `lock` takes the
lock on a key (a no-op on SQLite, whose transaction already excludes every other writer).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from runner.spec.budgets import Budgets, CallScope, Ceiling, CeilingReached, window_bounds

Query = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]
Lock = Callable[[str], None]

# what a ceiling counts of a spend row: every row but a released one (an open row: in flight,
# or cut off by a crash, counts at its reservation, as for a run's own caps)
_TOTALS = (
    "SELECT COALESCE(SUM(usd), 0), "
    "COALESCE(SUM(CASE WHEN kind = 'llm' THEN input_tokens + output_tokens ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN kind = 'llm' THEN 1 ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN kind = 'tool' THEN 1 ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN kind = 'tool' THEN usd ELSE 0 END), 0) "
    "FROM spend WHERE status != 'released' AND created_at >= ?"
)


def totals_sql(bound: dict[str, str], since: float) -> tuple[str, tuple[Any, ...]]:
    """The statement adding up what the rows selected by `bound` (tenant, workflow, tool)
    count since `since`."""
    sql, args = _TOTALS, list[Any]([since])
    for k in ("tenant", "workflow"):
        if k in bound:
            sql += f" AND {k} = ?"
            args.append(bound[k])
    if "tool" in bound:
        sql += " AND kind = 'tool' AND tool = ?"
        args.append(bound["tool"])
    return sql, tuple(args)


def totals(q: Query, bound: dict[str, str], since: float) -> dict[str, float]:
    sql, args = totals_sql(bound, since)
    rows = q(sql, args)
    usd, tokens, llm, tool, tool_usd = rows[0] if rows else (0.0, 0, 0, 0, 0.0)
    return {
        "usd": float(usd),
        "tokens": float(tokens),
        "llm_calls": float(llm),
        "tool_calls": float(tool),
        "tool_usd": float(tool_usd),
    }


def values(q: Query, key: str, since: float, *, tools: bool = False) -> list[str]:
    """The distinct values of `key` (tenant, workflow, tool) among rows since `since`."""
    if key not in ("tenant", "workflow", "tool"):
        raise ValueError(f"no spend key {key!r}")
    sql = f"SELECT DISTINCT {key} FROM spend WHERE created_at >= ? AND {key} IS NOT NULL"
    if tools:
        sql += " AND kind = 'tool'"
    return sorted(str(r[0]) for r in q(sql + f" ORDER BY {key}", (since,)))


# a rate-limit hit is held past its window by 1% of it, at most half a second: the achieved
# rate is within 1% of the limit
GUARD_FRACTION, GUARD_S = 0.01, 0.5


_BUDGETS_CACHE: dict[str, tuple[int, Budgets]] = {}


def current_budgets(q: Query, cache_key: str) -> Budgets:
    """The budgets set in force (the newest `budgets` row), parsed once per version."""
    rows = q("SELECT MAX(id) FROM budgets", ())
    if not rows or rows[0][0] is None:
        return Budgets()
    version = int(rows[0][0])
    hit = _BUDGETS_CACHE.get(cache_key)
    if hit is not None and hit[0] == version:
        return hit[1]
    body = q("SELECT body FROM budgets WHERE id = ?", (version,))[0][0]
    budgets = Budgets.from_json(json.loads(body))
    _BUDGETS_CACHE[cache_key] = (version, budgets)
    return budgets


def check_ceilings(
    q: Query,
    lock: Lock,
    ceilings: Sequence[Ceiling],
    call: CallScope,
    want: dict[str, float],
    now: float,
) -> None:
    """Raise CeilingReached for the first ceiling (in the file's order) the call would pass.

    Locks are taken on every applicable ceiling first, in sorted order, then the sums are read:
    what any other process reserved under one of them is committed before it, or waits."""
    for key in sorted({c.lock_key(call) for c in ceilings}):
        lock(key)
    for c in ceilings:
        start, _ = window_bounds(c.spec.window, now)
        used = totals(q, c.bound(call), start)
        for dim, limit in c.limits().items():
            need = want.get(dim, 0.0)
            if need > 0 and used[dim] + need > limit + (1e-12 if dim == "usd" else 0):
                raise CeilingReached(c, dim, used[dim], need, limit, call)


def rate_acquire(q: Query, lock: Lock, key: str, *, amount: int, limit: int, per: float) -> float:
    """Take `amount` of the limit under `key` (sliding window of `per` seconds): 0.0 when taken
    (a row is written), else the seconds until enough of the window frees (inf: never, the
    amount is over the limit); nothing is written then. The time of the hit is read once the
    key's lock is held: a hit stamped before a wait for the lock would free its slot early."""
    if amount > limit:
        return math.inf
    # a hit is held a little longer than the window: between its admission here and the call
    # reaching its destination the calling process may be delayed (scheduling on a busy
    # machine: 10-60 ms measured), and the destination must never see more than the limit in
    # any window
    per = per + min(GUARD_S, per * GUARD_FRACTION)
    lock("rate:" + key)
    now = time.time()
    q("DELETE FROM rate_hits WHERE key = ? AND at <= ?", (key, now - per))
    rows = q("SELECT at, amount FROM rate_hits WHERE key = ? ORDER BY at", (key,))
    used = sum(int(r[1]) for r in rows)
    if used + amount <= limit:
        q("INSERT INTO rate_hits (key, at, amount) VALUES (?, ?, ?)", (key, now, amount))
        return 0.0
    freed = 0
    for at, n in rows:
        freed += int(n)
        if used - freed + amount <= limit:
            return max(float(at) + per - now, 0.0) + 1e-3
    return per


def clock() -> float:
    return time.time()
