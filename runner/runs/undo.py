"""Undo: the compensations a run's completed writes declared, newest first, each at most once."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from runner.errors import RunError
from runner.store import Store


async def compensate(store: Store, run_id: str, *, by: str | None) -> list[dict[str, Any]]:
    """Run each completed write's compensation; the ledger marks it undone so it runs once."""
    from runner.plan.tools import ImplError, import_callable

    writes = [
        r
        for r in store.ledger_for_run(run_id)
        if r["effect"] == "write" and r["status"] == "done" and not r["undone"]
    ]
    report: list[dict[str, Any]] = []
    for r in sorted(writes, key=lambda r: r.get("done_seq") or 0, reverse=True):
        entry = {"node_id": r["node_id"], "tool": r["tool"], "key": r["key"]}
        if not r["compensate"]:
            entry["status"] = "no compensation declared"
            store.event(run_id, "undo_skipped", r["node_id"], tool=r["tool"], key=r["key"], by=by)
            report.append(entry)
            continue
        try:
            fn = import_callable(r["compensate"], Path(r["spec_dir"] or "."))
            kwargs = _compensation_args(fn, r["args"], r["result"])
            result = fn(**kwargs)
            if inspect.isawaitable(result):
                result = await result
        except (ImplError, Exception) as e:
            entry["status"] = f"failed: {type(e).__name__}: {e}"
            store.event(
                run_id,
                "undo_failed",
                r["node_id"],
                tool=r["tool"],
                key=r["key"],
                error=str(e),
                by=by,
            )
            report.append(entry)
            continue
        store.ledger_mark_undone(r["key"])
        store.event(
            run_id, "undo", r["node_id"], tool=r["tool"], key=r["key"], by=by, result=result
        )
        entry["status"] = "undone"
        report.append(entry)
    if not writes:
        store.event(run_id, "undo_nothing", by=by)
    return report


def _compensation_args(fn: Any, args: dict[str, Any], result: Any) -> dict[str, Any]:
    """A compensation receives the fields it names, from the write's result first, then its args."""
    pool = {**(args or {}), **(result if isinstance(result, dict) else {})}
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return pool
    missing = [
        n
        for n, p in params.items()
        if n not in pool
        and p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if missing:
        raise RunError(
            f"compensation needs {', '.join(missing)}, which the write neither took nor returned"
        )
    return {n: pool[n] for n in params if n in pool}
