"""What the engine needs from durable state: ledger, approvals, switches, kill requests.

`MemoryServices` keeps them in the process (benchmarks, library use); `runner.store.services`
keeps them in the SQLite store so that they survive crashes and are shared by processes.
"""

from __future__ import annotations

import time
from typing import Any, Protocol


class Services(Protocol):
    def ledger_get(self, key: str, *, run_id: str | None = None) -> dict[str, Any] | None: ...

    def ledger_intent(self, key: str, *, defer: bool = False, **row: Any) -> None: ...

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


class MemoryServices:
    """Process-local services: same semantics as the store, nothing survives the process."""

    durable = False  # live writes need a run recorded in the store

    def __init__(self) -> None:
        self.ledger: dict[str, dict[str, Any]] = {}
        self.approvals: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes = True
        self.kills: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self._seq = 0

    def ledger_get(self, key: str, *, run_id: str | None = None) -> dict[str, Any] | None:
        return self.ledger.get(key)

    def ledger_intent(self, key: str, *, defer: bool = False, **row: Any) -> None:
        self.ledger[key] = {"key": key, **row, "status": "intent", "result": None, "undone": 0}

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
