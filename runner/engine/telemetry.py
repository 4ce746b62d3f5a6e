"""The seam calls.py wraps around every model and tool call; the no-op default costs nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.engine.context import NodeContext
    from runner.models.client import LLMRequest, LLMResponse


class CallRecord:
    """What a wrapped call reports back: the response or result it got."""

    def response(self, resp: LLMResponse) -> None:
        """The model's answer (content, usage, model, finish reason)."""

    def result(self, value: Any) -> None:
        """The tool's result, before contract checks."""

    def billed(self, usd: float) -> None:
        """A priced tool call's bill."""


_NOOP = CallRecord()


class Telemetry:
    """No tracing, no recording: the engine's default, so the call path stays unconditional."""

    @contextmanager
    def llm_call(self, ctx: NodeContext, req: LLMRequest) -> Iterator[CallRecord]:
        yield _NOOP

    @contextmanager
    def tool_call(self, ctx: NodeContext, tool: str, args: Any) -> Iterator[CallRecord]:
        yield _NOOP

    def trace_id(self, ctx: NodeContext) -> str | None:
        """The id of the trace a call of this run is recorded in; None: it is recorded nowhere,
        and a live write is refused (runner/engine/wrappers.py TraceRequired)."""
        return None
