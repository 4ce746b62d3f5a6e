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

# what flowrun reads of a price entry, in this order (None where the entry lacks it); the rest
# of litellm's ~3.5 MB file is not kept
_FIELDS = ("litellm_provider", "input_cost_per_token", "output_cost_per_token", "max_output_tokens")
_Entry = tuple[object, object, object, object]
_Table = dict[str, _Entry]
_CACHE_FORMAT = 2


@lru_cache(maxsize=1)
def _table() -> _Table:
    """Loaded once: the file is ~3.5 MB and never changes while flowrun runs."""
    spec = importlib.util.find_spec("litellm")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / PRICE_FILE
        if path.is_file():
            return _cached_table(path, Path(__file__).parent / "__pycache__")
    return {}


def _compact(data: object) -> _Table:
    if not isinstance(data, dict):
        return {}
    return {
        k: (v.get(_FIELDS[0]), v.get(_FIELDS[1]), v.get(_FIELDS[2]), v.get(_FIELDS[3]))
        for k, v in data.items()
        if isinstance(v, dict) and k != "sample_spec"
    }


def _cached_table(path: Path, folder: Path) -> _Table:
    """The price entries of `path`, through a compact marshal copy in `folder`, this package's
    __pycache__ (perf, issue 26: parsing the JSON cost ~35 ms of every `flowrun validate`; the
    copy loads in ~3 ms). Like a .pyc it is keyed by the file's path, size and mtime, written
    atomically, skipped when bytecode writing is off, and any problem with it falls back to
    the JSON."""
    import hashlib
    import marshal
    import os
    import sys

    try:
        st = path.stat()
        key = f"{_CACHE_FORMAT}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        cache = folder / f"prices.{digest}.marshal"
        if cache.is_file():
            data = marshal.loads(cache.read_bytes())
            if isinstance(data, dict):
                return data
    except (OSError, ValueError, EOFError, TypeError):
        cache = None
    table = _compact(json.loads(path.read_text(encoding="utf-8")))
    if cache is not None and not sys.dont_write_bytecode:
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        try:
            cache.parent.mkdir(exist_ok=True)
            tmp.write_bytes(marshal.dumps(table))
            os.replace(tmp, cache)
            for old in cache.parent.glob("prices.*.marshal"):
                if old != cache:
                    old.unlink(missing_ok=True)
        except (OSError, ValueError):  # a read-only install: the JSON every time
            tmp.unlink(missing_ok=True)
    return table


@lru_cache(maxsize=1)
def _by_bare_name() -> dict[str, list[str]]:
    """Keys of the `provider/model` form, indexed by `model`, for bare-name lookups."""
    index: dict[str, list[str]] = {}
    for key, entry in _table().items():
        provider, sep, rest = key.partition("/")
        if sep and _provider_matches(entry, provider):
            index.setdefault(rest, []).append(key)
    return index


def _provider_matches(entry: _Entry, provider: str) -> bool:
    """True when a price entry belongs to `provider` (e.g. `text-completion-openai` to `openai`)."""
    listed = entry[0]
    return isinstance(listed, str) and (listed == provider or provider in listed.split("-"))


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _price(entry: _Entry) -> Price | None:
    cost_in, cost_out = _number(entry[1]), _number(entry[2])
    if cost_in is None and cost_out is None:
        return None  # priced per image, per second, ...: not a token price
    max_out = entry[3]
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
