"""The store's side of ceilings and rate limits, on both implementations: a reservation is
refused by the first ceiling it would pass, nothing written; "*" scopes keep values apart;
a sliding-window rate limit admits `limit` hits and says how long until the next."""

from __future__ import annotations

import math

import pytest

from runner.spec.budgets import CallScope, CeilingReached, load_budgets_text, to_json
from runner.store import Store, open_store

ACME = CallScope(tenant="acme", workflow="w", kind="llm")
BETA = CallScope(tenant="beta", workflow="w", kind="llm")


def _reserve(store: Store, run_id: str, call: CallScope, usd: float = 0.4) -> int | None:
    row, _ = store.spend_reserve(run_id, caps={}, node_id="n", at="n", model="m", usd=usd,
                                 input_tokens=10, output_tokens=5, call=call)  # fmt: skip
    return row


def test_ceilings_refuse_atomically_and_keep_scopes_apart(store_target: str) -> None:
    store = open_store(store_target)
    try:
        text = ("apiVersion: flowrun/v1\nkind: Budgets\nceilings:\n"
                "  per-tenant: {scope: {tenant: '*'}, window: day, max_usd: 1.0}\n"
                "  calls: {scope: {workflow: w}, max_llm_calls: 5}\n")  # fmt: skip
        f = load_budgets_text(text)
        assert store.budgets_set(to_json(f), text=text, source="b.yaml", by="t") == 1
        assert _reserve(store, "r1", ACME) is not None
        assert _reserve(store, "r2", ACME) is not None
        with pytest.raises(CeilingReached) as e:
            _reserve(store, "r3", ACME)  # 0.8 + 0.4 > 1.0
        assert e.value.ceiling.id == "per-tenant" and e.value.dim == "usd"
        assert e.value.used == pytest.approx(0.8)
        assert store.spend_rows("r3") == []  # refused: nothing written
        assert _reserve(store, "r4", BETA) is not None  # beta's own dollar
        assert _reserve(store, "r5", BETA) is not None
        assert _reserve(store, "r6", BETA, usd=0.0) is not None  # the workflow's 5th call
        with pytest.raises(CeilingReached) as e:
            _reserve(store, "r7", BETA, usd=0.0)
        assert e.value.ceiling.id == "calls" and e.value.dim == "llm_calls"
        assert "ceiling 'calls' (workflow w, all time) reached" in e.value.message
        totals = store.spend_totals({"tenant": "acme"}, 0.0)
        assert totals["usd"] == pytest.approx(0.8) and totals["llm_calls"] == 2
    finally:
        store.close()


def test_a_sliding_window_rate_limit(store_target: str) -> None:
    store = open_store(store_target)
    try:
        assert store.rate_acquire("k", amount=1, limit=2, per=10.0) == 0.0
        assert store.rate_acquire("k", amount=1, limit=2, per=10.0) == 0.0
        wait = store.rate_acquire("k", amount=1, limit=2, per=10.0)
        assert 9.0 < wait <= 10.0 + 0.1 + 0.01  # the window plus its guard
        assert store.rate_acquire("other", amount=1, limit=2, per=10.0) == 0.0  # keys apart
        assert store.rate_acquire("t", amount=3, limit=2, per=10.0) == math.inf
        assert store.rate_acquire("t", amount=2, limit=2, per=10.0) == 0.0
    finally:
        store.close()
