"""Backends execute a run's plan: here (asyncio + the store) or as a Temporal workflow.

Only `runner.runs` picks a backend for a run (from its store row); entry points never do.
A backend is a small plug behind `Backend`: start a recorded run, continue it, tell it a
decision was recorded, cancel it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from runner.engine.hooks import Hooks
    from runner.engine.results import RunResult
    from runner.plan.model import Plan
    from runner.store import RunRow, Store

TERMINAL = frozenset({"succeeded", "failed", "escalated", "budget_exceeded", "denied", "killed"})
RESUMABLE = frozenset({"running", "waiting"})
BACKENDS = ("local", "temporal")


class Backend(Protocol):
    """What `runner.runs` asks of a backend; every method acts on a run already in the store."""

    name: str

    def placement(self, run_id: str) -> dict[str, Any]:
        """Options recorded with a new run so that later operations find it on this backend."""
        ...

    async def check(self) -> None:
        """Fail before anything is recorded when the backend cannot take runs (exit 2)."""
        ...

    async def start(
        self,
        store: Store,
        row: RunRow,
        plan: Plan,
        *,
        responses: Any,
        hooks: Hooks | None,
        telemetry: Any,
    ) -> RunResult:
        """Run a freshly recorded run until it ends or parks for an approval."""
        ...

    def claim(self, store: Store, row: RunRow) -> RunRow:
        """Take a run over to continue it here; refuse (UsageError) when it cannot be."""
        ...

    def release(self, store: Store, row: RunRow) -> None:
        """Undo `claim` when the run could not be continued after all."""
        ...

    async def resume(
        self,
        store: Store,
        row: RunRow,
        plan: Plan,
        *,
        responses: Any,
        hooks: Hooks | None,
        telemetry: Any,
    ) -> RunResult:
        """Continue a claimed run from its checkpoints (`flowrun resume`)."""
        ...

    async def decided(
        self, store: Store, row: RunRow, node_id: str, *, follow: bool
    ) -> RunResult | None:
        """The store holds a decision for `node_id`: wake the run; its result if `follow`."""
        ...

    async def cancel(self, store: Store, row: RunRow, *, by: str | None) -> str:
        """Stop the run; `killed` or `kill requested`."""
        ...

    def busy(self, row: RunRow) -> bool:
        """Whether the run may be executing right now (undo waits until it is not)."""
        ...


def backend_name(row: RunRow) -> str:
    """The backend a run was started on, as recorded in its store row."""
    return str((row.options or {}).get("backend") or "local")
