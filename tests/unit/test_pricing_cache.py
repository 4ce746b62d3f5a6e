"""The price table's compact copy (runner/models/pricing.py): same prices, never stale."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from runner.models import pricing

ENTRIES = {
    "sample_spec": {"input_cost_per_token": 1},
    "gpt-x": {"litellm_provider": "openai", "input_cost_per_token": 1e-6, "max_output_tokens": 9},
    "acme/y": {"litellm_provider": "acme", "output_cost_per_token": 2e-6, "mode": "chat"},
}


@pytest.fixture(autouse=True)
def bytecode_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """As installed: a shell (or this sandbox) may turn bytecode writing off for itself."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


def _write(path: Path, entries: dict[str, object]) -> None:
    path.write_text(json.dumps(entries, indent=4))


def test_the_copy_gives_what_the_json_gives(tmp_path: Path) -> None:
    src, cache = tmp_path / "prices.json", tmp_path / "cache"
    _write(src, ENTRIES)
    first = pricing._cached_table(src, cache)
    assert first == {
        "gpt-x": ("openai", 1e-6, None, 9),
        "acme/y": ("acme", None, 2e-6, None),
    }
    (copy,) = cache.glob("prices.*.marshal")
    assert pricing._cached_table(src, cache) == first
    assert list(cache.glob("prices.*.marshal")) == [copy]
    # a changed price file is read again, and the old copy goes
    _write(src, {**ENTRIES, "gpt-x": {"litellm_provider": "openai", "input_cost_per_token": 3}})
    os.utime(src, ns=(1, 1))
    assert pricing._cached_table(src, cache)["gpt-x"] == ("openai", 3, None, None)
    assert len(list(cache.glob("prices.*.marshal"))) == 1
    assert list(cache.glob("*.tmp")) == []


def test_a_broken_copy_falls_back_to_the_json(tmp_path: Path) -> None:
    src, cache = tmp_path / "prices.json", tmp_path / "cache"
    _write(src, ENTRIES)
    pricing._cached_table(src, cache)
    (copy,) = cache.glob("prices.*.marshal")
    copy.write_bytes(b"\x00garbage")
    assert pricing._cached_table(src, cache)["gpt-x"][1] == 1e-6


def test_no_copy_when_bytecode_writing_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    src, cache = tmp_path / "prices.json", tmp_path / "cache"
    _write(src, ENTRIES)
    assert "acme/y" in pricing._cached_table(src, cache)
    assert not cache.exists()


def test_prices_of_the_installed_table() -> None:
    price = pricing.price_of("openai/gpt-4o-mini")
    assert price is not None and price.input_per_token > 0 and price.max_output_tokens
    assert pricing.price_of("gpt-4o-mini") == price
    assert pricing.price_of("local/gemma-3-270m") == pricing.FREE
    assert pricing.price_of("nobody/nothing") is None
