"""Tracer setup: one TracerProvider per process; OTLP/HTTP and console exporters; warn once."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from time import time_ns
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import get_current as _current_context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanLimits,
    SynchronousMultiSpanProcessor,
    TracerProvider,
    sampling,
)
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Span, SpanContext, SpanKind, TraceFlags, Tracer
from opentelemetry.trace.propagation import _SPAN_KEY
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util import types

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_PROJECT = "flowrun"
FLUSH_TIMEOUT_MS = 5_000
_QUIET_LOGGERS = ("opentelemetry.exporter.otlp", "opentelemetry.sdk.trace.export", "urllib3")
_logger = logging.getLogger("opentelemetry.sdk.trace")  # the SDK's warnings, same loggers
_attributes_logger = logging.getLogger("opentelemetry.attributes")


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
    _lean: _Lean | None = field(default=None, init=False, repr=False, compare=False)
    _lean_checked: bool = field(default=False, init=False, repr=False, compare=False)

    def flush(self) -> None:
        self.provider.force_flush(FLUSH_TIMEOUT_MS)

    def start_span(
        self, name: str, *, kind: SpanKind = SpanKind.INTERNAL, parent: Span | None = None
    ) -> Span:
        """`tracer.start_span(name, kind=kind)` under `parent` (else under the current span).

        perf (issue 11): the SDK's start_span/Span/end cost ~35 µs a span (sampler, context
        lookups, two rounds of attribute cleaning, three locks); a run makes two spans per node.
        A span whose parent is a local, sampled span of this process is made by `_LeanSpan`
        instead, when the tracer is configured the way it can be reproduced exactly (default
        sampler, random ids, span processors that ignore on_start): same ids, parent, flags,
        trace state, attribute cleaning and limits, and the same ReadableSpan handed to the same
        span processors at end(). Anything else goes through the SDK as before.
        """
        parent_span = parent if parent is not None else _current_span()
        parent_ctx = parent_span.get_span_context()
        if parent_ctx.is_valid and not parent_ctx.is_remote and parent_ctx.trace_flags.sampled:
            lean = self._lean_for_span()
            if lean is not None:
                return _LeanSpan(lean, name, parent_ctx, kind)
        context = trace_api.set_span_in_context(parent) if parent is not None else None
        return self.tracer.start_span(name, context=context, kind=kind)

    def start_pinned_span(
        self, name: str, context: SpanContext, *, start_time: int, kind: SpanKind
    ) -> Span:
        """A root span with ids decided beforehand (`run_span_context`), started at `start_time`.

        A Temporal run's nodes run as activities in other processes, each making its node spans
        under the run's span before that span exists anywhere; the process that ends the run
        makes the run span itself with the ids they used, so the spans form one tree.
        """
        tracer = self.tracer
        if type(tracer) is not SdkTracer:  # not the SDK's tracer: a span of its own ids
            return tracer.start_span(name, kind=kind, start_time=start_time)
        from opentelemetry.sdk.trace import _Span

        own = SpanContext(
            context.trace_id, context.span_id, is_remote=False, trace_flags=context.trace_flags
        )
        span = _Span(
            name=name,
            context=own,
            parent=None,
            sampler=tracer.sampler,
            resource=tracer.resource,
            span_processor=tracer.span_processor,
            kind=kind,
            instrumentation_info=tracer.instrumentation_info,
            limits=tracer._span_limits,
            instrumentation_scope=tracer._instrumentation_scope,
        )
        span.start(start_time=start_time)
        return span

    def _lean_for_span(self) -> _Lean | None:
        lean = self._lean
        if lean is not None and lean.still_valid():
            return lean
        if lean is None and self._lean_checked:
            return None
        self._lean = _Lean.of(self.tracer)
        self._lean_checked = True
        return self._lean


def _current_span() -> Span:
    """`trace_api.get_current_span()`, two calls shorter (perf, issue 19: once a span)."""
    span = _current_context().get(_SPAN_KEY)
    return span if isinstance(span, Span) else trace_api.INVALID_SPAN


def run_span_context(run_id: str, attempt: int) -> SpanContext:
    """The ids of one attempt's run span, the same in every process that works on the attempt."""
    digest = hashlib.sha256(f"flowrun-run-span:{run_id}:{attempt}".encode()).digest()
    return SpanContext(
        int.from_bytes(digest[:16], "big") or 1,
        int.from_bytes(digest[16:24], "big") or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


_PLAIN_PROCESSORS = (BatchSpanProcessor, SimpleSpanProcessor)  # on_start/_on_ending: no-ops
_UNSET = Status(StatusCode.UNSET)
_SIMPLE_VALUES = (str, bool, int, float)


class _Lean:
    """What a `_LeanSpan` takes from an SDK tracer, and whether it still may."""

    def __init__(self, tracer: SdkTracer, processor: SynchronousMultiSpanProcessor) -> None:
        self.tracer = tracer
        self.processor = processor
        self.processors = processor._span_processors
        self.plain = all(type(p) in _PLAIN_PROCESSORS for p in self.processors)
        limits: SpanLimits = tracer._span_limits
        self.limits = limits
        cap = limits.max_span_attributes
        self.max_attributes: int = cap if cap is not None else sys.maxsize
        self.id_generator = tracer.id_generator

    @classmethod
    def of(cls, tracer: Tracer) -> _Lean | None:
        try:
            if type(tracer) is not SdkTracer:
                return None
            if (
                tracer.sampler is not sampling.DEFAULT_ON
                and tracer.sampler is not sampling.ALWAYS_ON
            ):
                return None
            if type(tracer.id_generator) is not RandomIdGenerator:
                return None
            if (
                os.environ.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "").strip().lower()
                == "true"
            ):
                return None  # the SDK would count the spans it starts and ends
            processor = tracer.span_processor
            if type(processor) is not SynchronousMultiSpanProcessor:
                return None
            lean = cls(tracer, processor)
            if not isinstance(lean.limits, SpanLimits):
                return None
            # what end() reads from the tracer, and the ReadableSpan it builds: an SDK release
            # laid out differently shows here, once, and gets the SDK path instead
            ReadableSpan(
                name="probe",
                resource=tracer.resource,
                instrumentation_info=tracer.instrumentation_info,
                instrumentation_scope=tracer._instrumentation_scope,
                status=_UNSET,
                start_time=0,
                end_time=0,
            )
            BoundedList.from_seq(lean.limits.max_events, ())
        except (AttributeError, TypeError):  # an SDK version laid out differently: the SDK path
            return None
        return lean if lean.still_valid() else None

    def still_valid(self) -> bool:
        procs = self.processor._span_processors
        if procs is not self.processors:  # a processor was added since
            self.processors = procs
            self.plain = all(type(p) in _PLAIN_PROCESSORS for p in procs)
        if not self.plain:
            return False
        enabled = getattr(self.tracer, "_is_enabled", None)
        return enabled is None or bool(enabled())


def _valid_link(context: SpanContext, attributes: types.Attributes) -> bool:
    return bool(context and (context.is_valid or (attributes or context.trace_state)))


class _LeanSpan(Span):
    """An SDK span's behaviour without its start-up cost; see `Tracing.start_span`.

    Attributes of the JSON-ish kinds are kept as given and cleaned once, at end(), by the same
    BoundedAttributes (limits, truncation, dropping) that the SDK span would have used; any other
    value is cleaned when it is set, as the SDK does, so later mutation of it cannot show.
    """

    def __init__(self, lean: _Lean, name: str, parent: SpanContext, kind: SpanKind) -> None:
        self._lean = lean
        self._name = name
        self._parent = parent
        self._kind = kind
        # what the default sampler decides for a local sampled parent: sampled, the parent's
        # trace state; the trace flags (sampled, random trace id) are the parent's
        self._context = SpanContext(
            parent.trace_id,
            lean.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=parent.trace_flags,
            trace_state=parent.trace_state,
        )
        self._attrs: dict[str, Any] = {}
        self._dropped = 0
        self._events: list[Event] = []
        self._links: list[trace_api.Link] = []
        self._status: Status = _UNSET
        self._start = time_ns()
        self._end: int | None = None

    def __repr__(self) -> str:
        return f'_Span(name="{self._name}", context={self._context})'

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._end is not None:
            _logger.warning("Setting attribute on ended span.")
            return
        attrs = self._attrs
        cap = self._lean.max_attributes
        for key, value in attributes.items():
            if type(value) in _SIMPLE_VALUES and type(key) is str and key and len(attrs) < cap:
                if key in attrs:
                    del attrs[key]  # the SDK moves a key set again to the end
                attrs[key] = value
            else:
                self._set_cleaned({key: value})

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        self.set_attributes({key: value})

    def _set_cleaned(self, attributes: Mapping[str, types.AnyValue]) -> None:
        """Set as the SDK's BoundedAttributes does: cleaned (or dropped), oldest out when full."""
        cap = self._lean.max_attributes
        if cap == 0:
            self._dropped += len(attributes)
            return
        cleaned = BoundedAttributes(
            None,
            attributes,
            immutable=False,
            max_value_len=self._lean.limits.max_span_attribute_length,
        )
        self._dropped += cleaned.dropped
        attrs = self._attrs
        for key in cleaned:
            attrs.pop(key, None)
            if len(attrs) >= cap:
                _attributes_logger.warning(
                    "Attributes dict is full. Dropping the oldest key-value pair from attributes "
                    "to make space for the new key-value pair.",
                )
                del attrs[next(iter(attrs))]
                self._dropped += 1
            attrs[key] = cleaned[key]

    def _bounded(self, most: int | None, attributes: types.Attributes) -> BoundedAttributes:
        """An event's or link's attributes, cleaned and limited as the SDK does."""
        return BoundedAttributes(
            most, attributes, max_value_len=self._lean.limits.max_attribute_length, immutable=True
        )

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        bounded = self._bounded(self._lean.limits.max_event_attributes, attributes)
        if self._end is not None:
            _logger.warning("Tried calling %s on an ended span.", "_add_event")
            return
        self._events.append(Event(name=name, attributes=bounded, timestamp=timestamp))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not _valid_link(context, attributes):
            return
        bounded = self._bounded(self._lean.limits.max_link_attributes, attributes)
        if self._end is not None:
            _logger.warning("Tried calling %s on an ended span.", "_add_link")
            return
        self._links.append(trace_api.Link(context=context, attributes=bounded))

    def update_name(self, name: str) -> None:
        if self._end is not None:
            _logger.warning("Tried calling %s on an ended span.", "update_name")
            return
        self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end is not None:
            _logger.warning("Tried calling %s on an ended span.", "set_status")
            return
        current = self._status
        if isinstance(status, Status):
            if (
                current and current.status_code is StatusCode.OK
            ) or status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                _logger.warning(
                    "Description %s ignored. Use either `Status` or `(StatusCode, Description)`",
                    description,
                )
            self._status = status
        elif isinstance(status, StatusCode):
            if (current and current.status_code is StatusCode.OK) or status is StatusCode.UNSET:
                return
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        stacktrace = "".join(traceback.format_exception(exception))
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        exception_type = f"{module}.{qualname}" if module and module != "builtins" else qualname
        attrs: dict[str, types.AnyValue] = {
            "exception.type": exception_type,
            "exception.message": str(exception),
            "exception.stacktrace": stacktrace,
            "exception.escaped": str(escaped),
        }
        if attributes:
            attrs.update(attributes)
        self.add_event(name="exception", attributes=attrs, timestamp=timestamp)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is not None and self.is_recording():
            self.record_exception(exception=exc_val, escaped=True)
            self.set_status(
                Status(
                    status_code=StatusCode.ERROR,
                    description=f"{type(exc_val).__name__}: {exc_val}",
                )
            )
        super().__exit__(exc_type, exc_val, exc_tb)

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            _logger.warning("Calling end() on an ended span.")
            return
        self._end = end_time if end_time is not None else time_ns()
        events, links = self._events, self._links
        lean = self._lean
        limits = lean.limits
        attributes: Mapping[str, types.AnyValue]
        if self._dropped or limits.max_span_attribute_length is not None:
            bounded = BoundedAttributes(
                limits.max_span_attributes,
                self._attrs,
                immutable=True,
                max_value_len=limits.max_span_attribute_length,
            )
            bounded.dropped += self._dropped
            attributes = bounded
        else:
            # every value is final already (a str/bool/int/float, or cleaned when it was set),
            # there are no more than the limit and none was dropped: cleaning them once more
            # would give back the same mapping. The span is ended: nothing changes it any more.
            attributes = self._attrs
        tracer = lean.tracer
        lean.processor.on_end(
            ReadableSpan(
                name=self._name,
                context=self._context,
                parent=self._parent,
                resource=tracer.resource,
                attributes=attributes,
                events=BoundedList.from_seq(limits.max_events, events) if events else (),
                links=BoundedList.from_seq(limits.max_links, links) if links else (),
                kind=self._kind,
                instrumentation_info=tracer.instrumentation_info,
                status=self._status,
                start_time=self._start,
                end_time=self._end,
                instrumentation_scope=tracer._instrumentation_scope,
            )
        )


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
