"""One observer per run: run/node/call spans, the JSONL transcript, and call records for replay."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, SpanKind, Status, StatusCode

from runner.engine.hooks import Hooks
from runner.engine.results import NodeResult, RunResult, Usage
from runner.engine.telemetry import CallRecord, Telemetry
from runner.jsontext import compact_encoder, json_copy
from runner.redact import redacted_view
from runner.store.seal import private_dir

if TYPE_CHECKING:
    from runner.engine.context import NodeContext
    from runner.models.client import LLMRequest, LLMResponse
    from runner.plan.model import Plan
    from runner.store import Store
    from runner.trace.otel import Tracing
    from runner.trace.vault import VaultWriter

Capture = Literal["off", "default", "full"]
CAPTURES: tuple[str, ...] = ("default", "full", "off")
ERROR_KINDS = {"rate_limit", "internal_server_error", "context_window", "timeout", "bad_request"}


def transcript_path(store_path: Path, run_id: str) -> Path:
    """Where a run's transcript lives: always inside the store's transcripts folder."""
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith(".") or "\0" in run_id:
        raise ValueError(f"run id {run_id!r} cannot name a transcript file")
    return store_path.parent / "transcripts" / f"{run_id}.jsonl"


# perf (issue 11): json.dumps with options builds a new encoder on every call: that set-up was a
# third of a transcript line. Everything written is redacted (a view) or built here.
# perf (issue 19): compact separators, so that lines are written through orjson (jsontext.py);
# strict JSON (NaN and the infinities as null), which every JSON Lines reader can read
_json: Callable[[Any], str] = compact_encoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, finite=True
)


def _round6(t: float) -> float:
    """`t` to the microsecond (perf, issue 19: `round(t, 6)` rounds through decimal digits, 4×
    as long; this one can differ from it in the last digit)."""
    return round(t * 1e6) / 1e6


def _provider(model: str) -> str:
    provider, sep, _ = model.partition("/")
    return provider if sep else "openai"


def _split_cost(model: str, prompt_tokens: int, total: float) -> tuple[float, float]:
    from runner.models.pricing import price_of

    price = price_of(model)
    prompt = min(price.input_per_token * prompt_tokens, total) if price is not None else 0.0
    return prompt, max(total - prompt, 0.0)


class _Call(CallRecord):
    def __init__(self) -> None:
        self.resp: LLMResponse | None = None
        self.value: Any = None
        self.has_value = False
        self.usd: float | None = None

    def billed(self, usd: float) -> None:
        self.usd = usd

    def response(self, resp: LLMResponse) -> None:
        self.resp = resp

    def result(self, value: Any) -> None:
        # what a JSON round trip makes of the value (perf, issue 19: through orjson, faster than
        # testing whether the value is plain JSON was); what JSON cannot hold, as its repr
        try:
            self.value = json_copy(value)
        except (TypeError, ValueError):
            self.value = repr(value)
        self.has_value = True


class RunObserver(Hooks, Telemetry):
    """Hooks for run and node spans plus the call seam; everything it writes is redacted."""

    def __init__(
        self,
        *,
        store: Store | None,
        tracing: Tracing | None,
        capture: Capture = "default",
        tenant: str | None = None,
        actor: str | None = None,
        attempt: int = 1,
        transcript: Path | None = None,
    ) -> None:
        self.store = store
        self.tracing = tracing
        self.capture = capture
        self.tenant = tenant
        self.actor = actor
        self.attempt = attempt
        self.transcript_file = transcript
        self._out: io.FileIO | None = None  # the transcript, unbuffered, while the run goes on
        self._pending: list[bytes] = []
        self._run_span: Span | None = None
        self._node_spans: dict[str, Span] = {}
        self._plan: Plan | None = None
        self._run_id = ""
        self._spent = Usage()
        self._tool_calls: dict[tuple[str, int | None], int] = {}
        self._vault: VaultWriter | None = None  # the full transcript, when a key is configured
        self._trace_id: tuple[Span | None, str] = (None, "")  # the run span's, formatted

    # -- transcript --------------------------------------------------------------------------
    def _content(self, value: Any) -> Any:
        """Content as the transcript keeps it: none, PII-redacted, or full (secrets always go)."""
        if self.capture == "off":
            return None
        return redacted_view(value, pii=self.capture == "default")

    # perf (issue 11): lines are buffered and reach the file in one write() when a node finishes
    # (or parks: that is a node_finished too) and when the run starts and finishes, instead of a
    # write and flush per line; a crash loses at most the lines of the nodes in flight. Callers
    # check `self._out` first so that no line is built (or redacted) when there is no transcript.
    def _write(self, event: str, **data: Any) -> None:
        if self._out is None:
            return
        line = {"ts": _round6(time.time()), "event": event, "run_id": self._run_id, **data}
        self._pending.append((_json(line) + "\n").encode("utf-8"))

    def _vline(self, event: str, **data: Any) -> None:
        """A line of the full transcript (runner/trace/vault.py): the content as it was."""
        if self._vault is not None:
            line = {"ts": _round6(time.time()), "event": event, "run_id": self._run_id, **data}
            self._vault.line(line)

    def _open_vault(self) -> None:
        from runner.trace.vault import VaultWriter, configured_keys, vault_path

        keys = configured_keys() if self.transcript_file is not None else None
        if keys is not None and self.transcript_file is not None:
            self._vault = VaultWriter(keys, vault_path(self.transcript_file), self._run_id)

    def _close_vault(self) -> None:
        if self._vault is not None:
            self._vault.close()
            self._vault = None

    def _flush(self) -> None:
        if self._vault is not None:
            self._vault.flush()
        if self._out is None or not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        view = memoryview(data)
        while view:
            written = self._out.write(view)
            if not written:
                raise OSError(f"could not write the transcript {self.transcript_file}")
            view = view[written:]

    def _open_transcript(self, path: Path) -> io.FileIO:
        # every transcript is private (a redacted one still says what a run did): 0600 in 0700
        private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        return io.FileIO(fd, "a")

    # -- hooks: run and node spans -------------------------------------------------------------
    async def run_started(
        self, *, run_id: str, plan: Plan, inputs: dict[str, Any], **_: Any
    ) -> None:
        self._plan, self._run_id = plan, run_id
        if self.transcript_file is not None:
            # perf (issue 11): creating a file costs ~0.7 ms on some disks; in a worker thread
            # it overlaps with the other runs of this loop instead of stopping them all
            loop = asyncio.get_running_loop()
            self._out = await loop.run_in_executor(
                None, self._open_transcript, self.transcript_file
            )
            self._open_vault()
        self._started_line(plan, inputs)
        if self.tracing is None:
            return
        self._start_run_span(plan, inputs, span_context=None, started_ns=None)

    def _started_line(self, plan: Plan, inputs: dict[str, Any]) -> None:
        self._vline(
            "run_started",
            workflow=plan.name,
            profile=plan.profile,
            tenant=self.tenant,
            actor=self.actor,
            attempt=self.attempt,
            inputs=inputs,
        )
        if self._out is not None:
            self._write(
                "run_started",
                workflow=plan.name,
                profile=plan.profile,
                tenant=self.tenant,
                actor=self.actor,
                attempt=self.attempt,
                capture=self.capture,
                inputs=self._content(inputs),
            )
            self._flush()

    def _start_run_span(
        self,
        plan: Plan,
        inputs: dict[str, Any],
        *,
        span_context: SpanContext | None,
        started_ns: int | None,
    ) -> None:
        assert self.tracing is not None
        name = f"invoke_workflow {plan.name}"
        if span_context is not None and started_ns is not None:
            span = self.tracing.start_pinned_span(
                name, span_context, start_time=started_ns, kind=SpanKind.INTERNAL
            )
        else:
            span = self.tracing.tracer.start_span(name, kind=SpanKind.INTERNAL)
        run_id = self._run_id
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_workflow",
            "openinference.span.kind": "CHAIN",
            "flowrun.run_id": run_id,
            "flowrun.workflow": plan.name,
            "flowrun.attempt": self.attempt,
            "session.id": run_id,
        }
        for key, value in (
            ("flowrun.tenant", self.tenant),
            ("flowrun.actor", self.actor),
            ("user.id", self.actor),
            ("flowrun.profile", plan.profile),
        ):
            if value is not None:
                attrs[key] = value
        if self.capture == "full":
            attrs["input.value"] = _json(redacted_view(inputs, pii=False))
        span.set_attributes(attrs)
        self._run_span = span

    # -- a part of a run observed in another process (the activities of a Temporal run) ------
    def join(
        self, *, run_id: str, plan: Plan, inputs: dict[str, Any], opens: bool, spent: Usage
    ) -> None:
        """Observe some nodes of a run attempt whose run span is made where the attempt ends.

        Node and call spans go under the attempt's run span (its ids from `run_span_context`),
        transcript lines are appended to the run's transcript, and `opens` writes the attempt's
        run_started line first. `leave` (or `finish_part`) ends the part.
        """
        from runner.trace.otel import run_span_context

        self._plan, self._run_id, self._spent = plan, run_id, spent
        if self.transcript_file is not None:
            self._out = self._open_transcript(self.transcript_file)
            self._open_vault()
            if opens:
                self._started_line(plan, inputs)
        if self.tracing is not None:
            self._run_span = trace.NonRecordingSpan(run_span_context(run_id, self.attempt))

    def leave(self) -> None:
        """End a part joined with `join`: its lines written, its spans exported."""
        try:
            self._flush()
        finally:
            self._close_vault()
            if self._out is not None:
                self._out.close()
                self._out = None
            self._pending.clear()
        if self.tracing is not None:
            for cut in self._node_spans.values():
                cut.end()
            self._node_spans.clear()
            self._run_span = None
            self.tracing.flush()

    async def finish_part(
        self, *, plan: Plan, inputs: dict[str, Any], result: RunResult, started_at: float
    ) -> None:
        """The attempt's end, in the joined process: the run span (from the attempt's start,
        with the ids its nodes' spans point to) and the run_finished line."""
        from runner.trace.otel import run_span_context

        self._spent = result.usage
        if self.tracing is not None:
            for cut in self._node_spans.values():
                cut.end()
            self._node_spans.clear()
            self._start_run_span(
                plan,
                inputs,
                span_context=run_span_context(self._run_id, self.attempt),
                started_ns=int(started_at * 1e9),
            )
        await self.run_finished(result=result)

    async def node_started(self, *, run_id: str, node_id: str, **_: Any) -> None:
        self._vline("node_started", node_id=node_id)
        if self._out is not None:
            self._write("node_started", node_id=node_id)
        if self.tracing is None or self._plan is None:
            return
        span = self._start_node_span(node_id)
        # node_started runs inside the node's task: its call spans become this span's children
        otel_context.attach(trace.set_span_in_context(span))

    def _start_node_span(self, node_id: str) -> Span:
        assert self.tracing is not None and self._plan is not None
        node = self._plan.nodes[node_id]
        span = self.tracing.start_span(node_id, parent=self._run_span)
        kind = "LLM" if node.kind == "llm" else "TOOL" if node.kind == "tool" else "CHAIN"
        span.set_attributes(
            {
                "openinference.span.kind": "CHAIN" if kind != "CHAIN" else kind,
                "flowrun.run_id": self._run_id,
                "flowrun.node.id": node_id,
                "flowrun.node.kind": node.kind,
            }
        )
        self._node_spans[node_id] = span
        return span

    def _remaining(self) -> dict[str, float]:
        assert self._plan is not None
        caps = self._plan.budget
        out: dict[str, float] = {}
        if caps.max_usd is not None:
            out["flowrun.budget.remaining_usd"] = round(caps.max_usd - self._spent.cost_usd, 9)
        if caps.max_tokens is not None:
            out["flowrun.budget.remaining_tokens"] = caps.max_tokens - self._spent.tokens
        return out

    async def node_finished(self, *, run_id: str, result: NodeResult, **_: Any) -> None:
        self._spent += result.usage
        u = result.usage
        # perf (issue 19): the detail as JSON, made once for the copies below that are kept
        kept = self._vault is not None or self._out is not None or self.tracing is not None
        facts = result.detail.to_json() if kept else {}
        detail: Any = None  # the transcript's copy of result.detail, when it has one
        if self._vault is not None:
            self._vline(
                "node_finished",
                node_id=result.node_id,
                kind=result.kind,
                status=result.status,
                attempts=result.attempts,
                model=result.model,
                duration_s=_round6(result.duration_s),
                usage=u.to_json(),
                error=result.error,
                detail=facts,
                output=result.output,
            )
            if self._out is None:
                self._vault.flush()
        if self._out is not None:
            if self.capture == "off":
                error, detail, output = redacted_view(result.error, pii=True), None, None
            else:  # perf (issue 11): one redacted_view() (one environment check) for the three
                error, detail, output = redacted_view(
                    [result.error, facts, result.output],
                    pii=self.capture == "default",
                )
            self._write(
                "node_finished",
                node_id=result.node_id,
                kind=result.kind,
                status=result.status,
                attempts=result.attempts,
                model=result.model,
                duration_s=_round6(result.duration_s),
                usage=u.to_json(),
                error=error,
                detail=detail,
                output=output,
            )
            self._flush()
        if self.tracing is None or self._plan is None:
            return
        span = self._node_spans.pop(result.node_id, None) or self._start_node_span(result.node_id)
        self._node_spans.pop(result.node_id, None)
        attrs: dict[str, Any] = {
            "flowrun.node.status": result.status,
            "flowrun.node.attempts": result.attempts,
            "flowrun.usage.cost_usd": u.cost_usd,
            "flowrun.usage.input_tokens": u.input_tokens,
            "flowrun.usage.output_tokens": u.output_tokens,
            **self._remaining(),
        }
        if result.model:
            attrs["flowrun.node.model"] = result.model
        # the span's copy is PII-redacted: the default transcript's copy already is
        redacted = detail if self.capture == "default" and isinstance(detail, dict) else None
        for key in ("policy", "ledger", "reason", "retried", "rejected", "provider_errors"):
            if key in facts:
                attrs[f"flowrun.{key}"] = _json(
                    redacted[key] if redacted is not None else redacted_view(facts[key], pii=True)
                )
        if result.status not in ("succeeded", "skipped"):
            attrs["error.type"] = result.status
            span.set_status(Status(StatusCode.ERROR, redacted_view(result.error or "", pii=True)))
        if self.capture == "full" and result.output is not None:
            attrs["output.value"] = _json(redacted_view(result.output, pii=False))
        span.set_attributes(attrs)
        span.end()

    async def run_finished(self, *, result: RunResult, **_: Any) -> None:
        u = result.usage
        if self._vault is not None:
            self._vline(
                "run_finished",
                status=result.status,
                reason=result.reason,
                duration_s=_round6(result.duration_s),
                usage={"input_tokens": u.input_tokens, "output_tokens": u.output_tokens},
                cost_usd=u.cost_usd,
                outputs=result.outputs,
            )
            self._close_vault()
        if self._out is not None:
            try:
                self._write(
                    "run_finished",
                    status=result.status,
                    reason=redacted_view(result.reason, pii=self.capture != "full"),
                    duration_s=_round6(result.duration_s),
                    usage={"input_tokens": u.input_tokens, "output_tokens": u.output_tokens},
                    cost_usd=u.cost_usd,
                    outputs=self._content(result.outputs),
                )
                self._flush()
            finally:
                self._out.close()
                self._out = None
                self._pending.clear()
        if self.tracing is None:
            return
        for cut in self._node_spans.values():
            cut.end()  # nodes cut short by a stop or the run's deadline
        self._node_spans.clear()
        span = self._run_span
        if span is not None:
            attrs: dict[str, Any] = {
                "flowrun.status": result.status,
                "flowrun.usage.cost_usd": u.cost_usd,
                "flowrun.usage.input_tokens": u.input_tokens,
                "flowrun.usage.output_tokens": u.output_tokens,
                "flowrun.usage.llm_calls": u.llm_calls,
                "flowrun.usage.tool_calls": u.tool_calls,
                **self._remaining(),
            }
            if result.status != "succeeded":
                attrs["error.type"] = result.status
                span.set_status(
                    Status(StatusCode.ERROR, redacted_view(result.reason or "", pii=True))
                )
            if self.capture == "full":
                attrs["output.value"] = _json(redacted_view(result.outputs, pii=False))
            span.set_attributes(attrs)
            span.end()
            self._run_span = None
        self.tracing.flush()

    # -- telemetry: call spans and records ---------------------------------------------------
    def trace_id(self, ctx: NodeContext) -> str | None:
        """The run span's OTel trace id when spans are made; else, when call records are kept,
        the id a run span of this attempt would carry (runner/trace/otel.py run_span_context):
        what the call records and the transcript of the attempt are found under."""
        span = self._run_span
        if span is not None:
            if self._trace_id[0] is span:  # perf (issue 19): asked for every call record
                return self._trace_id[1]
            tid = span.get_span_context().trace_id
            if tid:
                self._trace_id = (span, format(tid, "032x"))
                return self._trace_id[1]
        if self.store is None:
            return None
        digest = hashlib.sha256(f"flowrun-run-span:{ctx.run.run_id}:{self.attempt}".encode())
        return digest.hexdigest()[:32]

    def _record(self, ctx: NodeContext, **row: Any) -> None:
        if self.store is None:
            return
        self.store.record_call(
            run_id=ctx.run.run_id,
            node_id=ctx.node_id,
            idx=ctx.index,
            trace_id=self.trace_id(ctx),
            **row,
        )

    @contextmanager
    def llm_call(self, ctx: NodeContext, req: LLMRequest) -> Iterator[CallRecord]:
        call = _Call()
        attempt = ctx.run.calls.get((ctx.node_id, ctx.index), 1)
        started, t0 = time.time(), time.perf_counter()
        span = None
        if self.tracing is not None:
            span = self.tracing.start_span(f"chat {req.model}", kind=SpanKind.CLIENT)
            attrs: dict[str, Any] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": _provider(req.model),
                "gen_ai.request.model": req.model,
                "gen_ai.request.max_tokens": req.max_tokens,
                "openinference.span.kind": "LLM",
                "llm.model_name": req.model,
                "llm.provider": _provider(req.model),
                "flowrun.node.id": ctx.node_id,
                "flowrun.call.attempt": attempt,
            }
            if req.temperature is not None:
                attrs["gen_ai.request.temperature"] = req.temperature
            if ctx.index is not None:
                attrs["flowrun.map.index"] = ctx.index
            if self.capture == "full":
                for i, m in enumerate(redacted_view(req.messages, pii=False)):
                    attrs[f"llm.input_messages.{i}.message.role"] = m.get("role", "")
                    attrs[f"llm.input_messages.{i}.message.content"] = m.get("content", "")
            span.set_attributes(attrs)
        error: str | None = None
        token = otel_context.attach(trace.set_span_in_context(span)) if span else None
        try:
            yield call
        except BaseException as e:
            error = getattr(e, "kind", None) or type(e).__name__
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
            self._finish_llm(ctx, req, call, span, error, attempt, started, t0)

    def _finish_llm(
        self,
        ctx: NodeContext,
        req: LLMRequest,
        call: _Call,
        span: Span | None,
        error: str | None,
        attempt: int,
        started: float,
        t0: float,
    ) -> None:
        resp = call.resp
        duration = time.perf_counter() - t0
        data: dict[str, Any] = {"model": req.model, "max_tokens": req.max_tokens}
        if resp is not None:
            data.update(
                response_model=resp.model,
                usage={
                    "prompt_tokens": resp.prompt_tokens,
                    "completion_tokens": resp.completion_tokens,
                },
                cost_usd=resp.cost_usd,
                finish_reason=resp.finish_reason,
            )
            if resp.waited_s:  # waited on the provider's 429 / 5xx answers first
                data["waited_s"] = round(resp.waited_s, 3)
            if resp.limited:
                data["limited"] = resp.limited
        captured = self.capture != "off"
        data["captured"] = captured
        if self.store is not None:
            if captured:
                data["messages"] = redacted_view(req.messages, pii=False)
                if resp is not None:
                    data["content"] = redacted_view(resp.content, pii=False)
            self._record(
                ctx,
                attempt=attempt,
                kind="llm",
                name=req.model,
                data=data,
                error=error,
                started_at=started,
                duration_s=duration,
            )
        self._vline(
            "llm_call",
            node_id=ctx.node_id,
            index=ctx.index,
            attempt=attempt,
            model=req.model,
            response_model=data.get("response_model"),
            usage=data.get("usage"),
            cost_usd=data.get("cost_usd"),
            error=error,
            duration_s=_round6(duration),
            messages=req.messages,
            content=resp.content if resp is not None else None,
        )
        if self._out is not None:
            self._write(
                "llm_call",
                node_id=ctx.node_id,
                index=ctx.index,
                attempt=attempt,
                model=req.model,
                response_model=data.get("response_model"),
                usage=data.get("usage"),
                cost_usd=data.get("cost_usd"),
                error=error,
                duration_s=_round6(duration),
                messages=self._content(req.messages),
                content=self._content(resp.content) if resp is not None else None,
            )
        if span is None:
            return
        attrs: dict[str, Any] = {}
        if resp is not None:
            prompt_usd, completion_usd = _split_cost(req.model, resp.prompt_tokens, resp.cost_usd)
            attrs.update(
                {
                    "gen_ai.response.model": resp.model,
                    "gen_ai.usage.input_tokens": resp.prompt_tokens,
                    "gen_ai.usage.output_tokens": resp.completion_tokens,
                    "gen_ai.response.finish_reasons": [resp.finish_reason or "stop"],
                    "llm.token_count.prompt": resp.prompt_tokens,
                    "llm.token_count.completion": resp.completion_tokens,
                    "llm.token_count.total": resp.prompt_tokens + resp.completion_tokens,
                    "llm.cost.prompt": prompt_usd,
                    "llm.cost.completion": completion_usd,
                    "llm.cost.total": resp.cost_usd,
                }
            )
            if resp.waited_s:
                attrs["flowrun.provider.waited_s"] = resp.waited_s
            if self.capture == "full":
                attrs["llm.output_messages.0.message.role"] = "assistant"
                attrs["llm.output_messages.0.message.content"] = redacted_view(
                    resp.content, pii=False
                )
        if error is not None:
            attrs["error.type"] = error
            span.set_status(Status(StatusCode.ERROR, error))
        span.set_attributes(attrs)
        span.end()

    @contextmanager
    def tool_call(self, ctx: NodeContext, tool: str, args: Any) -> Iterator[CallRecord]:
        call = _Call()
        key = (ctx.node_id, ctx.index)
        attempt = self._tool_calls.get(key, 0) + 1
        self._tool_calls[key] = attempt
        started, t0 = time.time(), time.perf_counter()
        span = None
        if self.tracing is not None:
            span = self.tracing.start_span(f"execute_tool {tool}", kind=SpanKind.INTERNAL)
            attrs: dict[str, Any] = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": tool,
                "openinference.span.kind": "TOOL",
                "tool.name": tool,
                "flowrun.node.id": ctx.node_id,
                "flowrun.call.attempt": attempt,
            }
            if ctx.index is not None:
                attrs["flowrun.map.index"] = ctx.index
            if self.capture == "full":
                attrs["tool.parameters"] = _json(redacted_view(args, pii=False))
                attrs["input.value"] = attrs["tool.parameters"]
            span.set_attributes(attrs)
        error: str | None = None
        try:
            yield call
        except BaseException as e:
            error = type(e).__name__
            raise
        finally:
            duration = time.perf_counter() - t0
            # what the record (secrets gone) and the transcript (secrets gone, and personal data
            # under the default capture) keep of the arguments and the result
            captured = self.capture != "off"
            pair = [args, call.value] if call.has_value else [args]
            kept = shown = None
            if captured and (self.store is not None or self._out is not None):
                pii = self.capture == "default"
                shown = redacted_view(pair, pii=pii)
                # perf (issue 19): personal data is found by more detectors, never fewer; with
                # none of those findings, the record's copy is the same
                kept = shown if not pii or shown is pair else redacted_view(pair, pii=False)
            if self.store is not None:
                data: dict[str, Any] = {"captured": captured, "has_result": call.has_value}
                if call.usd is not None:
                    data["cost_usd"] = call.usd
                if kept is not None:
                    data["args"] = kept[0]
                    if call.has_value:
                        data["result"] = kept[1]
                self._record(
                    ctx,
                    attempt=attempt,
                    kind="tool",
                    name=tool,
                    data=data,
                    error=error,
                    started_at=started,
                    duration_s=duration,
                )
            self._vline(
                "tool_call",
                node_id=ctx.node_id,
                index=ctx.index,
                attempt=attempt,
                tool=tool,
                error=error,
                duration_s=_round6(duration),
                args=args,
                has_result=call.has_value,
                result=call.value if call.has_value else None,
            )
            if self._out is not None:
                args_c = result_c = None
                if shown is not None:
                    args_c = shown[0]
                    if call.has_value:
                        result_c = shown[1]
                self._write(
                    "tool_call",
                    node_id=ctx.node_id,
                    index=ctx.index,
                    attempt=attempt,
                    tool=tool,
                    error=error,
                    duration_s=_round6(duration),
                    args=args_c,
                    result=result_c,
                    **({} if call.usd is None else {"cost_usd": call.usd}),
                )
            if span is not None:
                if error is not None:
                    span.set_attribute("error.type", error)
                    span.set_status(Status(StatusCode.ERROR, error))
                elif self.capture == "full" and call.has_value:
                    span.set_attribute("output.value", _json(redacted_view(call.value, pii=False)))
                if call.usd is not None:
                    span.set_attribute("flowrun.tool.cost_usd", call.usd)
                span.end()


def observer_for(
    store: Store,
    run_id: str,
    *,
    otlp_endpoint: str | None = None,
    console: bool = False,
    capture: Capture = "default",
    tenant: str | None = None,
    actor: str | None = None,
    attempt: int = 1,
) -> RunObserver:
    """The observer `flowrun execute` attaches: spans if configured, always a transcript."""
    from runner.trace.otel import setup_tracing

    return RunObserver(
        store=store,
        tracing=setup_tracing(otlp_endpoint, console=console),
        capture=capture,
        tenant=tenant,
        actor=actor,
        attempt=attempt,
        transcript=transcript_path(store.path, run_id),
    )
