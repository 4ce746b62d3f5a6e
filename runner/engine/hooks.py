"""Lifecycle hooks: progress display, store, tracing attach here without leaking into the engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.engine.results import NodeResult, RunResult
    from runner.plan.model import Plan


class Hooks:
    """Base hook set; every method is optional and keyword-only, with room for future arguments."""

    async def run_started(
        self, *, run_id: str, plan: Plan, inputs: dict[str, Any], **future: Any
    ) -> None:
        return None

    async def node_started(self, *, run_id: str, node_id: str, **future: Any) -> None:
        return None

    async def node_finished(self, *, run_id: str, result: NodeResult, **future: Any) -> None:
        return None

    async def run_finished(self, *, result: RunResult, **future: Any) -> None:
        return None


class HookSet(Hooks):
    """Fans every call out to several hook sets, in order."""

    def __init__(self, hooks: Sequence[Hooks]) -> None:
        self.hooks = list(hooks)

    async def run_started(self, **kw: Any) -> None:
        for h in self.hooks:
            await h.run_started(**kw)

    async def node_started(self, **kw: Any) -> None:
        for h in self.hooks:
            await h.node_started(**kw)

    async def node_finished(self, **kw: Any) -> None:
        for h in self.hooks:
            await h.node_finished(**kw)

    async def run_finished(self, **kw: Any) -> None:
        for h in self.hooks:
            await h.run_finished(**kw)
