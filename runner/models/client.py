"""The one place flowrun calls a model: every call, recorded or real, goes through litellm."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Literal, cast

from runner.models import bounds, limits, pricing
from runner.models.responses import Recorded

ProviderErrorKind = Literal[
    "rate_limit",
    "timeout",
    "internal_server_error",
    "context_window",
    "bad_request",
    "auth",
    "connection",
    "config",  # the model cannot run here (e.g. `local/` without flowrun[local]); not retried
    "unknown",
]
RETRYABLE: frozenset[str] = frozenset(
    {"rate_limit", "timeout", "internal_server_error", "connection"}
)
_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")


@dataclass(frozen=True, kw_only=True)
class LLMRequest:
    """Everything one model call needs, so a call can be replayed from the request alone."""

    model: str  # litellm model id, e.g. "openai/gpt-4o-mini"
    messages: list[dict[str, str]]
    output_schema: dict[str, object] | None  # JSON Schema for structured output
    schema_name: str = "output"
    max_tokens: int
    temperature: float | None = None
    timeout_s: float | None = None
    params: dict[str, object] = field(default_factory=dict)  # extra litellm kwargs (api_base, ...)
    # the longest this call waits in total on 429 and 5xx answers (runner/models/limits.py)
    max_wait_s: float = limits.DEFAULT_MAX_WAIT_S


@dataclass(frozen=True, kw_only=True)
class LLMResponse:
    """What a call returned and what it cost, as litellm reported it."""

    content: str
    model: str  # the model id actually used / reported
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float  # 0.0 when neither litellm nor the price file knows the model
    finish_reason: str | None
    latency_s: float  # from the first try to the answer, waits on 429 and 5xx included
    cost_known: bool = True  # False when cost_usd is 0.0 only because no price was found
    waited_s: float = 0.0  # of latency_s, the time spent waiting on 429 and 5xx answers
    limited: int = 0  # the 429 answers before this one


class ProviderError(Exception):
    """A provider-side failure; the engine may retry it or fall back to another model."""

    def __init__(
        self, kind: ProviderErrorKind, message: str, *, model: str, waited_s: float = 0.0
    ) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind: ProviderErrorKind = kind
        self.retryable: bool = kind in RETRYABLE
        self.message = message
        self.model = model
        self.waited_s = waited_s  # spent waiting on 429 and 5xx answers before giving up


_litellm: ModuleType | None = None


def ensure_litellm() -> ModuleType:
    """Import litellm on first use only (it takes seconds), offline and quiet."""
    global _litellm
    if _litellm is not None:
        return _litellm
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.disable_hf_tokenizer_download = True  # token counts must never touch the network
    if "LITELLM_LOG" not in os.environ:
        for name in _LITELLM_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
    from runner.models import local  # registers `local/...` ids; llama_cpp loads at first call

    local.register(litellm)
    _litellm = litellm
    return litellm


def count_prompt_tokens(model: str, messages: list[dict[str, str]]) -> int:
    """Prompt tokens as litellm counts them; a conservative estimate if it cannot."""
    litellm = ensure_litellm()
    try:
        return int(litellm.token_counter(model=model, messages=messages))
    except Exception:
        return sum(pricing.estimate_tokens(m.get("content", "")) + 4 for m in messages)


def _count_text_tokens(model: str, text: str) -> int:
    litellm = ensure_litellm()
    try:
        return int(litellm.token_counter(model=model, text=text))
    except Exception:
        return pricing.estimate_tokens(text)


def _provider_of(model: str) -> str:
    provider, sep, _ = model.partition("/")
    return provider if sep else "openai"


def _mock_response(litellm: ModuleType, req: LLMRequest, rec: Recorded) -> object:
    """What litellm's `mock_response` needs to answer or fail exactly as recorded."""
    provider = _provider_of(req.model)
    text = f"recorded {rec.error} error (line {rec.line})"
    match rec.error:
        case "rate_limit":
            return "litellm.RateLimitError"
        case "internal_server_error":
            return "litellm.InternalServerError"
        case "context_window":
            return "litellm.ContextWindowExceededError"
        case "timeout":
            return litellm.Timeout(message=text, model=req.model, llm_provider=provider)
        case "bad_request":
            return litellm.BadRequestError(message=text, model=req.model, llm_provider=provider)
        case "auth":
            return litellm.AuthenticationError(message=text, model=req.model, llm_provider=provider)
        case None:
            pass
        case other:
            raise ValueError(f"unknown recorded error kind {other!r}")
    content = rec.content or ""
    details: dict[str, object] = {}
    if rec.usage is not None:
        u = rec.usage
        prompt, completion = u.prompt_tokens, u.completion_tokens
        if u.cached_tokens or u.cache_creation_tokens or u.reasoning_tokens:
            # as providers report them, so litellm prices each part as billed: cache reads and
            # writes are parts of prompt_tokens, reasoning a part of completion_tokens
            from litellm.types.utils import (
                CompletionTokensDetailsWrapper,
                PromptTokensDetailsWrapper,
            )

            details = {
                "prompt_tokens_details": PromptTokensDetailsWrapper(cached_tokens=u.cached_tokens),
                "completion_tokens_details": CompletionTokensDetailsWrapper(
                    reasoning_tokens=u.reasoning_tokens
                ),
                "cache_read_input_tokens": u.cached_tokens,
                "cache_creation_input_tokens": u.cache_creation_tokens,
            }
    else:
        prompt = count_prompt_tokens(req.model, req.messages)
        completion = _count_text_tokens(req.model, content)
    return litellm.ModelResponse(
        model=rec.model or req.model,
        choices=[
            litellm.Choices(
                index=0,
                finish_reason=rec.finish_reason,
                message=litellm.Message(role="assistant", content=content),
            )
        ],
        usage=litellm.Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            **details,
        ),
    )


def _call_kwargs(req: LLMRequest) -> dict[str, object]:
    # Retries belong to the engine (it sees ProviderError.retryable and the budget), so the
    # provider SDK must not retry behind its back unless the spec asks for it in params.
    kwargs: dict[str, object] = {"max_retries": 0, **req.params}
    kwargs.update(model=req.model, messages=req.messages, max_tokens=req.max_tokens)
    # `structured_output: json_object` is for OpenAI-compatible servers that take the schema
    # inside a json_object response_format (llama-cpp-python's server), not as json_schema
    style = kwargs.pop("structured_output", "json_schema")
    if req.output_schema is not None and style == "json_object":
        # such a server compiles the schema to a sampling grammar: bound it so answers close
        schema = bounds.bound_schema(req.output_schema, req.max_tokens)
        kwargs["response_format"] = {"type": "json_object", "schema": schema}
    elif req.output_schema is not None:
        kwargs["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": req.schema_name, "schema": req.output_schema, "strict": False},
        }
    if req.temperature is not None:
        kwargs["temperature"] = req.temperature
    if req.timeout_s is not None:
        kwargs["timeout"] = req.timeout_s
    return kwargs


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _kind(litellm: ModuleType, exc: Exception) -> ProviderErrorKind:
    """Classify a litellm failure; the cause chain tells a refused connection from a 500."""
    import httpx
    import openai

    chain = _chain(exc)

    def anywhere(*types: type[BaseException]) -> bool:
        return any(isinstance(e, types) for e in chain)

    if isinstance(exc, litellm.ContextWindowExceededError):
        return "context_window"
    if isinstance(exc, litellm.Timeout) or anywhere(
        openai.APITimeoutError, httpx.TimeoutException, TimeoutError
    ):
        return "timeout"
    if isinstance(exc, litellm.RateLimitError):
        return "rate_limit"
    if isinstance(exc, litellm.AuthenticationError | litellm.PermissionDeniedError):
        return "auth"
    if isinstance(exc, litellm.APIConnectionError) or anywhere(
        openai.APIConnectionError, httpx.NetworkError, ConnectionError
    ):
        return "connection"
    if isinstance(exc, litellm.InternalServerError | litellm.ServiceUnavailableError):
        return "internal_server_error"
    if isinstance(exc, litellm.BadRequestError | litellm.NotFoundError):
        return "bad_request"
    if isinstance(exc, litellm.UnprocessableEntityError):
        return "bad_request"
    status = getattr(exc, "status_code", None)
    if isinstance(exc, litellm.APIError) and isinstance(status, int) and status >= 500:
        return "internal_server_error"
    return "unknown"


def _to_provider_error(litellm: ModuleType, exc: Exception, model: str) -> ProviderError:
    from runner.models.local import LocalModelError

    for cause in _chain(exc):
        if isinstance(cause, LocalModelError):  # litellm wraps it; its own text is the fix
            return ProviderError("config", str(cause), model=model)
    message = getattr(exc, "message", None)
    return ProviderError(
        _kind(litellm, exc),
        message if isinstance(message, str) and message else str(exc) or type(exc).__name__,
        model=model,
    )


def _cost(
    litellm: ModuleType, resp: object, model: str, prompt: int, completion: int
) -> float | None:
    """What the call was billed: priced by the model that answered (a provider may answer with
    another model or version than was asked for; litellm prices by the one asked for), else by
    the model asked for."""
    reported = getattr(resp, "model", None)
    if isinstance(reported, str) and reported and reported != model:
        with contextlib.suppress(Exception):
            return float(litellm.completion_cost(completion_response=resp, model=reported))
    try:
        return float(litellm.completion_cost(completion_response=resp))
    except Exception:
        return pricing.cost_usd(model, prompt, completion)


async def complete(req: LLMRequest, recorded: Recorded | None = None) -> LLMResponse:
    """Call the model, or replay `recorded` via litellm's mock path; raise only ProviderError."""
    litellm = ensure_litellm()
    kwargs = _call_kwargs(req)
    started = time.monotonic()
    if recorded is not None:
        kwargs["mock_response"] = _mock_response(litellm, req, recorded)
        if recorded.latency_s > 0:
            await asyncio.sleep(recorded.latency_s)
    waits = limits.Waits(max_wait_s=req.max_wait_s)
    endpoint = str(req.params.get("api_base") or _provider_of(req.model))
    while True:
        try:
            resp = await litellm.acompletion(**kwargs)
            break
        except Exception as e:
            err = _to_provider_error(litellm, e, req.model)
            if recorded is not None:  # a recorded failure is the engine's to handle, as it was
                raise err from e
            asked = limits.retry_after(_chain(e))
            wait = waits.next(err.kind, asked)
            signal = {"rate_limit": "limited", "internal_server_error": "server_error"}
            if err.kind in signal:
                kind = cast("limits.SignalKind", signal[err.kind])
                limits.emit(limits.Signal(kind, req.model, endpoint, asked, waits.limited))
            if wait is None:
                if err.kind in (*signal, "connection"):
                    err.message = f"{err.message} ({waits.describe()})"
                    err.args = (f"{err.kind}: {err.message}",)
                err.waited_s = waits.waited_s
                raise err from e
        await asyncio.sleep(wait)
    if recorded is None:
        limits.emit(limits.Signal("ok", req.model, endpoint))
    latency = time.monotonic() - started

    choice = resp.choices[0] if resp.choices else None
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None)
    finish_reason = getattr(choice, "finish_reason", None)
    usage = getattr(resp, "usage", None)
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    reported = getattr(resp, "model", None)
    cost = _cost(litellm, resp, req.model, prompt, completion)
    return LLMResponse(
        content=content if isinstance(content, str) else "",
        model=reported if isinstance(reported, str) and reported else req.model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=cost if cost is not None else 0.0,
        finish_reason=cast("str | None", finish_reason),
        latency_s=latency,
        cost_known=cost is not None,
        waited_s=waits.waited_s,
        limited=waits.limited,
    )
