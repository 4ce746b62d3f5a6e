"""The one observer every start and continuation of a run goes through.

`flowrun execute`, `resume`, `approve`/`reject` (which continue the run), the console, the MCP
server and `sweep` all build it here, so a resumed run records call rows, transcript lines and
spans exactly as a run executed straight through does. What the run was started with (capture
mode, OTLP endpoint) is kept in its options and applies again when it continues elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.trace.observe import CAPTURES, Capture, RunObserver, transcript_path

if TYPE_CHECKING:
    from runner.store import RunRow, Store


@dataclass(frozen=True)
class Observe:
    """How a run is observed; None means "as the run was started" (its recorded options)."""

    otlp_endpoint: str | None = None
    console: bool = False
    capture: Capture | None = None
    exporter: Any = None  # an OTel SpanExporter of the caller's (library use, tests)

    def options(self) -> dict[str, Any]:
        """What a new run records so that every later continuation observes it the same way."""
        out: dict[str, Any] = {}
        if self.capture is not None and self.capture != "default":
            out["capture"] = self.capture
        if self.otlp_endpoint:
            out["otlp_endpoint"] = self.otlp_endpoint
        return {"observe": out} if out else {}


# where runner.trace.otel.traces_endpoint looks when no endpoint is given
_OTLP_ENV = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def observer(store: Store, row: RunRow, how: Observe, *, attempt: int = 1) -> RunObserver:
    """Spans if an endpoint (or the console) is configured, always call records and a transcript."""
    recorded = (row.options or {}).get("observe") or {}
    capture = how.capture or recorded.get("capture") or "default"
    if capture not in CAPTURES:
        capture = "default"
    endpoint = how.otlp_endpoint or recorded.get("otlp_endpoint")
    tracing = None
    # perf (issue 26): the OTel SDK (~40 ms to import) only when spans can go somewhere
    if endpoint or how.console or how.exporter is not None or any(map(os.environ.get, _OTLP_ENV)):
        from runner.trace.otel import setup_tracing

        tracing = setup_tracing(endpoint, console=how.console, exporter=how.exporter)
    return RunObserver(
        store=store,
        tracing=tracing,
        capture=capture,
        tenant=row.tenant,
        actor=row.actor,
        attempt=attempt,
        transcript=transcript_path(store.path, row.run_id),
    )
