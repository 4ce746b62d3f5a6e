"""Model calls, prices and recorded responses; importing this package never imports litellm."""

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
