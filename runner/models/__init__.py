"""Model calls, prices and recorded responses; importing this package never imports litellm.

The names below load on first use (PEP 562): `runner.models.pricing`, which `flowrun validate`
needs for cost bounds, then stays clear of the client's asyncio and logging set-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.models.client import (
        LLMRequest,
        LLMResponse,
        ProviderError,
        complete,
        count_prompt_tokens,
        ensure_litellm,
    )
    from runner.models.pricing import Price, cost_usd, estimate_tokens, price_of
    from runner.models.responses import Recorded, RecordedResponses, RecordedUsage

_WHERE = {
    "LLMRequest": "client",
    "LLMResponse": "client",
    "ProviderError": "client",
    "complete": "client",
    "count_prompt_tokens": "client",
    "ensure_litellm": "client",
    "Price": "pricing",
    "cost_usd": "pricing",
    "estimate_tokens": "pricing",
    "price_of": "pricing",
    "Recorded": "responses",
    "RecordedResponses": "responses",
    "RecordedUsage": "responses",
}

__all__ = [
    "LLMRequest",
    "LLMResponse",
    "Price",
    "ProviderError",
    "Recorded",
    "RecordedResponses",
    "RecordedUsage",
    "complete",
    "cost_usd",
    "count_prompt_tokens",
    "ensure_litellm",
    "estimate_tokens",
    "price_of",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'runner.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"runner.models.{module}"), name)
