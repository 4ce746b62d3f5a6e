"""What the engine needs from durable state: ledger, approvals, switches, kill requests.

`MemoryServices` keeps them in the process (benchmarks, library use); `runner.store.services`
keeps them in the SQLite store so that they survive crashes and are shared by processes.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from runner.spec.budgets import CallScope


class Services(Protocol):
    def ledger_get(self, key: str, *, run_id: str | None = None) -> dict[str, Any] | None: ...

    def ledger_intent(self, key: str, *, defer: bool = False, **row: Any) -> None: ...

    def ledger_claim(self, key: str, **row: Any) -> bool: ...

    def ledger_done(self, key: str, result: Any, *, defer: bool = False) -> None: ...

    def ledger_failed(self, key: str, error: str) -> None: ...

    def approval_get(self, run_id: str, node_id: str) -> dict[str, Any] | None: ...

    def approval_request(self, run_id: str, node_id: str, **row: Any) -> None: ...

    def approval_decide(
        self,
        run_id: str,
        node_id: str,
        *,
        status: str,
        by: str,
        decision: Any = None,
        reason: str | None = None,
    ) -> None: ...

    def writes_enabled(self) -> bool: ...

    def kill_requested(self, run_id: str) -> bool: ...

    def event(self, run_id: str, type_: str, node_id: str | None = None, **data: Any) -> None: ...

    async def barrier(self) -> None:
        """Return once everything written so far is durable (the store group-commits)."""

    # model-call spend (runner/engine/budget.py): rows reserved before a call, atomically
    # against the run's caps, settled after it; see runner/store/base.py for the semantics
    def spend_reserve(
        self,
        run_id: str,
        *,
        caps: dict[str, float],
        node_id: str,
        at: str,
        model: str,
        usd: float,
        input_tokens: int,
        output_tokens: int,
        call: CallScope | None = None,
    ) -> tuple[int | None, dict[str, float]]: ...

    def spend_settle(
        self,
        row_id: int,
        status: str,
        *,
        usd: float | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        model: str | None = None,
    ) -> None: ...

    def spend_by_node(
        self, run_id: str, node_id: str | None = None
    ) -> dict[str, dict[str, Any]]: ...

    def spend_rows(self, run_id: str) -> list[dict[str, Any]]: ...

    # autonomy levels (runner/engine/autonomy.py); see runner/store/base.py for the semantics
    def autonomy_level(
        self, workflow: str, tool: str, tenant: str | None
    ) -> dict[str, Any] | None: ...

    def autonomy_set(
        self,
        workflow: str,
        tool: str,
        tenant: str | None,
        level: str,
        *,
        by: str | None,
        reason: str | None,
        only_if: str | None = None,
        **audit: Any,
    ) -> bool: ...

    def tool_rates(
        self, workflow: str, tool: str, *, tenant: str | None = None, since: float | None = None
    ) -> tuple[int, int, int, int]: ...
    # spend and rate control across runs (runner/engine/ceilings.py); see runner/store/base.py
    def budgets_get(self) -> dict[str, Any] | None: ...

    def rate_acquire(self, key: str, *, amount: int, limit: int, per: float) -> float: ...

    def cache_get(self, key: str) -> dict[str, Any] | None: ...

    def spend_totals(self, bound: dict[str, str], since: float) -> dict[str, float]: ...

    def cache_put(self, key: str, *, tenant: str | None, model: str, response: Any) -> None: ...


class MemoryServices:
    """Process-local services: same semantics as the store, nothing survives the process."""

    durable = False  # live writes need a run recorded in the store

    def __init__(self) -> None:
        self.ledger: dict[str, dict[str, Any]] = {}
        self.approvals: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes = True
        self.kills: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self.spend: list[dict[str, Any]] = []
        self._spend_totals: dict[str, dict[str, float]] = {}
        self._seq = 0
        self.autonomy: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._cache: dict[str, dict[str, Any]] = {}

    def ledger_get(self, key: str, *, run_id: str | None = None) -> dict[str, Any] | None:
        return self.ledger.get(key)

    def ledger_intent(self, key: str, *, defer: bool = False, **row: Any) -> None:
        self.ledger[key] = {"key": key, **row, "status": "intent", "result": None, "undone": 0}

    def ledger_claim(self, key: str, **row: Any) -> bool:
        held = self.ledger.get(key)
        if held is not None and held["status"] != "failed" and held["run_id"] != row["run_id"]:
            return False
        self.ledger_intent(key, **row)
        return True

    def ledger_done(self, key: str, result: Any, *, defer: bool = False) -> None:
        self._seq += 1
        self.ledger[key].update(status="done", result=result, done_seq=self._seq)

    def ledger_failed(self, key: str, error: str) -> None:
        self.ledger[key].update(status="failed", error=error)

    def approval_get(self, run_id: str, node_id: str) -> dict[str, Any] | None:
        return self.approvals.get((run_id, node_id))

    def approval_request(self, run_id: str, node_id: str, **row: Any) -> None:
        self.approvals.setdefault(
            (run_id, node_id),
            {
                "run_id": run_id,
                "node_id": node_id,
                "status": "waiting",
                "requested_at": time.time(),
                **row,
            },
        )

    def approval_decide(
        self,
        run_id: str,
        node_id: str,
        *,
        status: str,
        by: str,
        decision: Any = None,
        reason: str | None = None,
    ) -> None:
        a = self.approvals.get((run_id, node_id))
        if a is None or a["status"] != "waiting":
            raise ValueError(f"no approval waiting at {node_id!r}")
        a.update(
            status=status, decided_by=by, decision=decision, reason=reason, decided_at=time.time()
        )

    def writes_enabled(self) -> bool:
        return self.writes

    def kill_requested(self, run_id: str) -> bool:
        return run_id in self.kills

    def event(self, run_id: str, type_: str, node_id: str | None = None, **data: Any) -> None:
        self.events.append({"run_id": run_id, "type": type_, "node_id": node_id, "data": data})

    async def barrier(self) -> None:
        return None

    def spend_reserve(
        self,
        run_id: str,
        *,
        caps: dict[str, float],
        node_id: str,
        at: str,
        model: str,
        usd: float,
        input_tokens: int,
        output_tokens: int,
        call: CallScope | None = None,
    ) -> tuple[int | None, dict[str, float]]:
        """As the store's, without ceilings over many runs (they live in a store)."""
        kind = call.kind if call is not None else "llm"
        tokens = input_tokens + output_tokens if kind == "llm" else 0
        totals = self._spend_totals.setdefault(
            run_id, {"usd": 0.0, "tokens": 0.0, "llm_calls": 0.0}
        )
        before = dict(totals)
        want = {"usd": usd, "tokens": tokens, "llm_calls": 1 if kind == "llm" else 0}
        for dim, cap in caps.items():
            if want[dim] and totals[dim] + want[dim] > cap + (1e-12 if dim == "usd" else 0):
                return None, before
        for dim, v in want.items():
            totals[dim] += v
        self.spend.append(
            {
                "run_id": run_id,
                "node_id": node_id,
                "at": at,
                "model": model,
                "status": "open",
                "usd": usd,
                "input_tokens": input_tokens if kind == "llm" else 0,
                "output_tokens": output_tokens if kind == "llm" else 0,
                "reserved_usd": usd,
                "reserved_tokens": tokens,
                "kind": kind,
            }
        )
        return len(self.spend), before

    def spend_settle(
        self,
        row_id: int,
        status: str,
        *,
        usd: float | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        model: str | None = None,
    ) -> None:
        row = self.spend[row_id - 1]
        totals = self._spend_totals[row["run_id"]]
        llm = 1 if row["kind"] == "llm" else 0
        if row["status"] != "released":  # take the row out of the totals, then put it back
            totals["usd"] -= row["usd"]
            totals["tokens"] -= row["input_tokens"] + row["output_tokens"]
            totals["llm_calls"] -= llm
        row["status"] = status
        for k, v in (
            ("usd", usd),
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("model", model),
        ):
            if v is not None:
                row[k] = v
        if status != "released":
            totals["usd"] += row["usd"]
            totals["tokens"] += row["input_tokens"] + row["output_tokens"]
            totals["llm_calls"] += llm

    def spend_by_node(self, run_id: str, node_id: str | None = None) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for r in self.spend:
            if r["run_id"] != run_id or r["status"] == "released" or r["kind"] != "llm":
                continue
            if node_id is not None and r["node_id"] != node_id:
                continue
            t = out.setdefault(
                r["node_id"],
                {"llm_calls": 0, "cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0},
            )
            t["llm_calls"] += 1
            t["cost_usd"] += r["usd"]
            t["input_tokens"] += r["input_tokens"]
            t["output_tokens"] += r["output_tokens"]
        return out

    def spend_rows(self, run_id: str) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in r.items() if k != "run_id"}
            for r in self.spend
            if r["run_id"] == run_id
        ]

    # autonomy levels: kept for the process; a process has no window of recorded runs, so no
    # rate ever demotes a level here
    def autonomy_level(self, workflow: str, tool: str, tenant: str | None) -> dict[str, Any] | None:
        return self.autonomy.get((workflow, tool, tenant or "")) or self.autonomy.get(
            (workflow, tool, "")
        )

    def autonomy_set(
        self,
        workflow: str,
        tool: str,
        tenant: str | None,
        level: str,
        *,
        by: str | None,
        reason: str | None,
        only_if: str | None = None,
        **audit: Any,
    ) -> bool:
        key = (workflow, tool, tenant or "")
        was = self.autonomy.get(key, {}).get("level", "")
        if only_if is not None and was != only_if:
            return False
        self.autonomy[key] = {
            "workflow": workflow,
            "tool": tool,
            "tenant": tenant or "",
            "level": level,
            "changed_by": by,
            "changed_at": time.time(),
            "reason": reason,
        }
        self.event("*", "autonomy_changed", tool=tool, to=level, by=by, reason=reason, **audit)
        return True

    def tool_rates(
        self, workflow: str, tool: str, *, tenant: str | None = None, since: float | None = None
    ) -> tuple[int, int, int, int]:
        return 0, 0, 0, 0

    def budgets_get(self) -> dict[str, Any] | None:
        return None  # budgets over many runs live in a store

    def rate_acquire(self, key: str, *, amount: int, limit: int, per: float) -> float:
        return 0.0

    def cache_get(self, key: str) -> dict[str, Any] | None:
        hit = self._cache.get(key)
        if hit is not None:
            hit["hits"] += 1
        return hit

    def cache_put(self, key: str, *, tenant: str | None, model: str, response: Any) -> None:
        self._cache[key] = {
            "tenant": tenant,
            "model": model,
            "response": response,
            "created_at": time.time(),
            "hits": 0,
        }

    def spend_totals(self, bound: dict[str, str], since: float) -> dict[str, float]:
        return dict.fromkeys(("usd", "tokens", "llm_calls", "tool_calls", "tool_usd"), 0.0)
