"""Tracer setup: one TracerProvider per process; OTLP/HTTP and console exporters; warn once."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Tracer

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_PROJECT = "flowrun"
FLUSH_TIMEOUT_MS = 5_000
_QUIET_LOGGERS = ("opentelemetry.exporter.otlp", "opentelemetry.sdk.trace.export", "urllib3")


class WarnOnce(SpanExporter):
    """Passes spans on; the first failed export prints one warning, the run never notices."""

    def __init__(self, inner: SpanExporter, endpoint: str, timeout_s: float) -> None:
        self.inner = inner
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.warned = False
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            with self._lock:
                if not self.warned:
                    self.warned = True
                    print(
                        f"warning: spans could not be sent to {self.endpoint} (no OTLP receiver "
                        f"accepted them within {self.timeout_s:g}s); the run is unaffected and "
                        "its transcript is kept next to the store",
                        file=sys.stderr,
                        flush=True,
                    )
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


@dataclass
class Tracing:
    """A configured provider and its tracer; `flush` is called at the end of every run."""

    provider: TracerProvider
    tracer: Tracer
    endpoint: str | None

    def flush(self) -> None:
        self.provider.force_flush(FLUSH_TIMEOUT_MS)


def traces_endpoint(explicit: str | None) -> str | None:
    """The OTLP/HTTP traces URL: --otlp-endpoint, else the standard OTEL_EXPORTER_OTLP_* vars."""
    env = os.environ
    if explicit is None and env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    base = explicit or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not base:
        return None
    if urlparse(base).path.rstrip("/").endswith("/v1/traces"):
        return base
    return base.rstrip("/") + "/v1/traces"


def _timeout() -> float:
    for name in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        raw = os.environ.get(name)
        if raw:
            try:
                return float(raw) / 1000 if float(raw) > 100 else float(raw)
            except ValueError:
                pass
    return DEFAULT_TIMEOUT_S


def _resource() -> Resource:
    attrs: dict[str, Any] = {"service.name": os.environ.get("OTEL_SERVICE_NAME", "flowrun")}
    if "openinference.project.name" not in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        attrs["openinference.project.name"] = os.environ.get(
            "FLOWRUN_TRACE_PROJECT", DEFAULT_PROJECT
        )
    return Resource.create(attrs)


_CACHE: dict[tuple[str | None, bool], Tracing] = {}


def setup_tracing(
    endpoint: str | None = None,
    *,
    console: bool = False,
    exporter: SpanExporter | None = None,
) -> Tracing | None:
    """The process's tracing for this configuration, or None when no exporter is configured."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    url = traces_endpoint(endpoint)
    if url is None and not console and exporter is None:
        return None
    key = (url, console)
    if exporter is None and key in _CACHE:
        return _CACHE[key]
    provider = TracerProvider(resource=_resource())
    if url is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        timeout = _timeout()
        otlp = OTLPSpanExporter(endpoint=url, timeout=timeout)
        provider.add_span_processor(
            BatchSpanProcessor(
                WarnOnce(otlp, url, timeout), export_timeout_millis=int(timeout * 1000)
            )
        )
    if console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    tracing = Tracing(provider=provider, tracer=provider.get_tracer("flowrun"), endpoint=url)
    if exporter is None:
        _CACHE[key] = tracing
    return tracing
