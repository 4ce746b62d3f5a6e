"""Budgets over many runs: put a budgets file in force in the store, and report spend against
each ceiling (per scope value, burn rate, forecast to the end of the window).

The store holds the set in force (runner/store: `budgets_set`), so every process that reserves
a call against it obeys the same ceilings; see docs/budgets.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.spec.budgets import (
    CALENDAR,
    EACH,
    SCOPE_KEYS,
    Budgets,
    BudgetsFile,
    Ceiling,
    load_budgets,
    to_json,
    window_bounds,
    window_seconds,
)
from runner.store import Store

BURN_WINDOW_S = 3600.0  # the burn rate is measured over the last hour (or the window so far)


def set_budgets(store: Store, path: str | Path, *, by: str | None) -> tuple[int, BudgetsFile]:
    """Check a budgets file and put it in force; a file with a problem changes nothing."""
    f, text = load_budgets(path)
    version = store.budgets_set(to_json(f), text=text, source=str(path), by=by)
    return version, f


def budgets_in_force(store: Store) -> tuple[Budgets, dict[str, Any] | None]:
    row = store.budgets_get()
    if row is None:
        return Budgets(), None
    return Budgets.from_json(row["body"]), row


@dataclass(frozen=True)
class ScopeSpend:
    """One ceiling for one scope value (a `"*"` ceiling has one per tenant, workflow, tool)."""

    ceiling: str
    scope: dict[str, str]
    window: str | None
    window_start: float
    window_end: float | None
    on_exceed: str
    soft: float | None
    limits: dict[str, float]
    used: dict[str, float]
    burn_per_hour: dict[str, float]
    forecast: dict[str, float | None]

    def to_json(self) -> dict[str, Any]:
        return {
            "ceiling": self.ceiling,
            "scope": self.scope,
            "window": self.window,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "on_exceed": self.on_exceed,
            "soft": self.soft,
            "dimensions": {
                dim: {
                    "limit": limit,
                    "used": self.used[dim],
                    "left": max(limit - self.used[dim], 0.0),
                    "used_fraction": (self.used[dim] / limit) if limit else None,
                    "burn_per_hour": self.burn_per_hour[dim],
                    "forecast_end_of_window": self.forecast[dim],
                }
                for dim, limit in self.limits.items()
            },
        }


def spend_report(store: Store, budgets: Budgets, *, now: float | None = None) -> list[ScopeSpend]:
    """Spend against every ceiling in force, per scope value."""
    now = time.time() if now is None else now
    out: list[ScopeSpend] = []
    for c in budgets.ceilings:
        start, end = window_bounds(c.spec.window, now)
        for bound in _scopes(store, c, start):
            out.append(_scope_spend(store, c, bound, start, end, now))
    return out


def _scopes(store: Store, c: Ceiling, since: float) -> list[dict[str, str]]:
    """The scope values a ceiling has spend under in its window (its one scope without `*`)."""
    scopes: list[dict[str, str]] = [{}]
    for k in SCOPE_KEYS:
        v = getattr(c.spec.scope, k)
        if v is None:
            continue
        options = store.spend_values(k, since) if v == EACH else [v]
        scopes = [{**s, k: o} for s in scopes for o in options]
    return scopes


def _scope_spend(
    store: Store, c: Ceiling, bound: dict[str, str], start: float, end: float | None, now: float
) -> ScopeSpend:
    used = store.spend_totals(bound, start)
    # the burn rate: what the last hour (or the window so far, when shorter) spent, per hour
    since = max(start, now - BURN_WINDOW_S)
    recent = store.spend_totals(bound, since)
    span = max(now - since, 1.0)
    burn = {d: recent[d] / span * 3600 for d in c.limits()}
    forecast: dict[str, float | None] = {}
    for d in c.limits():
        if end is not None:  # calendar: what the window will hold at its end, at this rate
            forecast[d] = used[d] + burn[d] / 3600 * max(end - now, 0.0)
        elif c.spec.window is not None:  # rolling: what a whole window holds at this rate
            forecast[d] = burn[d] / 3600 * (window_seconds(c.spec.window) or 0.0)
        else:
            forecast[d] = None
    return ScopeSpend(
        ceiling=c.id,
        scope=bound,
        window=c.spec.window,
        window_start=start,
        window_end=end,
        on_exceed=c.spec.on_exceed,
        soft=c.spec.soft,
        limits=c.limits(),
        used={d: used[d] for d in c.limits()},
        burn_per_hour=burn,
        forecast=forecast,
    )


def window_label(window: str | None) -> str:
    if window is None:
        return "all time"
    return f"per {window} (UTC)" if window in CALENDAR else f"rolling {window}"
