"""Model prices read from litellm's bundled price file, without paying for importing litellm."""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PRICE_FILE = "model_prices_and_context_window_backup.json"
LOCAL_PROVIDER = "local"


@dataclass(frozen=True)
class Price:
    """What one token costs in USD, so budgets can be reserved before a call."""

    input_per_token: float
    output_per_token: float
    max_output_tokens: int | None


FREE = Price(0.0, 0.0, None)

_Table = dict[str, dict[str, object]]


@lru_cache(maxsize=1)
def _table() -> _Table:
    """Loaded once: the file is ~3 MB and never changes while flowrun runs."""
    spec = importlib.util.find_spec("litellm")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / PRICE_FILE
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return {k: v for k, v in data.items() if isinstance(v, dict) and k != "sample_spec"}
    return {}


@lru_cache(maxsize=1)
def _by_bare_name() -> dict[str, list[str]]:
    """Keys of the `provider/model` form, indexed by `model`, for bare-name lookups."""
    index: dict[str, list[str]] = {}
    for key, entry in _table().items():
        provider, sep, rest = key.partition("/")
        if sep and _provider_matches(entry, provider):
            index.setdefault(rest, []).append(key)
    return index


def _provider_matches(entry: dict[str, object], provider: str) -> bool:
    """True when a price entry belongs to `provider` (e.g. `text-completion-openai` to `openai`)."""
    listed = entry.get("litellm_provider")
    return isinstance(listed, str) and (listed == provider or provider in listed.split("-"))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _price(entry: dict[str, object]) -> Price | None:
    cost_in, cost_out = (
        _number(entry.get("input_cost_per_token")),
        _number(entry.get("output_cost_per_token")),
    )
    if cost_in is None and cost_out is None:
        return None  # priced per image, per second, ...: not a token price
    max_out = entry.get("max_output_tokens")
    return Price(
        input_per_token=cost_in or 0.0,
        output_per_token=cost_out or 0.0,
        max_output_tokens=max_out
        if isinstance(max_out, int) and not isinstance(max_out, bool)
        else None,
    )


def price_of(model: str) -> Price | None:
    """Price a litellm model id the way litellm looks it up; `local/` models are free."""
    provider, sep, rest = model.partition("/")
    if sep and provider == LOCAL_PROVIDER:
        return FREE
    table = _table()
    if model in table:
        return _price(table[model])
    if sep:
        entry = table.get(rest)
        if entry is not None and _provider_matches(entry, provider):
            return _price(entry)
        return None
    prices = {_price(table[key]) for key in _by_bare_name().get(model, [])}
    return prices.pop() if len(prices) == 1 else None


def cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Cost of a call from token counts; None when the model has no known price."""
    price = price_of(model)
    if price is None:
        return None
    return prompt_tokens * price.input_per_token + completion_tokens * price.output_per_token


def costliest(models: Iterable[str], prompt_tokens: int, completion_tokens: int) -> float:
    """The most a call of these token counts can cost on any of `models` (a route's model and
    its fallbacks: the one it may be billed at); models without a known price count as free."""
    worst = 0.0
    for model in models:
        price = price_of(model)
        if price is not None:
            worst = max(
                worst,
                price.input_per_token * prompt_tokens + price.output_per_token * completion_tokens,
            )
    return worst


def estimate_tokens(text: str) -> int:
    """An upper-bound-ish token count for worst-case estimates where no tokenizer is at hand."""
    return math.ceil(len(text.encode("utf-8")) / 3)
