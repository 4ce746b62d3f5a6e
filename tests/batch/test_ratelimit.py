"""Provider limits (issue 24): 429 and 5xx answers waited out as the provider asks, within a
bound, and a batch's window adapting to them (AIMD), against a real rate-limited
OpenAI-compatible server on 127.0.0.1 (tests/bench/provider_server.py) through litellm."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.models import limits
from runner.models.client import LLMRequest, ProviderError, complete
from runner.runs.batch import Window
from runner.store import open_store
from tests.batch.test_batch import data, flowrun, results
from tests.bench.bench_ratelimit import Provider, provider, provider_spec
from tests.durable.conftest import process_env

# -- the rules, without a server ---------------------------------------------------------------


def test_retry_after_headers_are_read_as_providers_send_them() -> None:
    parse = limits.parse_retry_after
    assert parse({"retry-after-ms": "250", "retry-after": "3"}) == 0.25  # the exact one first
    assert parse({"retry-after": "3"}) == 3.0
    assert parse({"retry-after": "1.5"}) == 1.5
    when = "Wed, 21 Oct 2026 07:28:10 GMT"
    now = 1792567680.0  # 10 s earlier
    assert parse({"retry-after": when}, now=now) == pytest.approx(10.0)
    assert parse({"retry-after": when}, now=now + 60) == 0.0  # a date gone by: at once
    assert parse({"retry-after": "soon"}) is None
    assert parse({"retry-after-ms": "x", "retry-after": "2"}) == 2.0
    assert parse({"retry-after": "-1"}) is None
    assert parse({}) is None


def test_a_call_waits_what_it_is_asked_within_its_bound() -> None:
    waits = limits.Waits(max_wait_s=10.0)
    first = waits.next("rate_limit", 4.0)
    assert first is not None and 4.0 <= first <= 4.0 * 1.1 + 0.01  # asked, plus jitter
    assert waits.next("rate_limit", 9.0) is None  # 4 + 9 would pass the bound: give up now
    assert waits.limited == 2 and waits.waited_s == first
    assert "asked for 9.0s more, past the route's max_wait 10s" in waits.describe()
    assert waits.next("bad_request", None) is None  # only 429 and 5xx are waited out
    # server errors: at most SERVER_ERROR_TRIES tries again, with a backoff when none is named
    errors = limits.Waits(max_wait_s=1000.0)
    tries = [errors.next("internal_server_error", None) for _ in range(limits.SERVER_ERROR_TRIES)]
    assert all(t is not None and 0 < t <= limits.BACKOFF_CAP_S for t in tries)
    assert errors.next("internal_server_error", None) is None
    assert "server errors are tried 3 more times at most" in errors.describe()
    dropped = limits.Waits(max_wait_s=1000.0)  # a connection that failed: once more
    assert dropped.next("connection", None) is not None
    assert dropped.next("connection", None) is None


def test_the_window_halves_when_calls_wait_twice_and_grows_by_one_per_window() -> None:
    def sig(kind: limits.SignalKind, refused: int = 0) -> limits.Signal:
        return limits.Signal(kind, "openai/m", "http://127.0.0.1:1/v1", 0.1, refused)

    async def scenario() -> None:
        w = Window(16)
        assert w.limit == 16  # without 429s a batch runs --concurrency lines at once
        for _ in range(16):
            await w.acquire()
        w.signal(sig("limited", refused=1))  # a first 429: the call waits, the window holds
        assert (w.limit, w.limited) == (16, 1)
        w.signal(sig("limited", refused=2))  # refused after waiting: too many lines
        assert w.limit == 8
        w.signal(sig("limited", refused=3))  # 16 in flight > 8: the decrease answers it already
        assert (w.limit, w.limited, w.decreases) == (8, 3, 1)
        for _ in range(9):
            w.release()
        assert w.inflight == 7
        w.signal(sig("limited", refused=2))  # within the window and still refused: halve again
        assert w.limit == 4
        started = asyncio.ensure_future(w.acquire())
        await asyncio.sleep(0)
        assert not started.done()  # 7 in flight, window 4: no start
        for _ in range(4):
            w.release()
        await asyncio.wait_for(started, 5)
        assert w.inflight == 4
        for _ in range(3):
            w.signal(sig("ok"))
        assert w.limit == 4
        w.signal(sig("ok"))  # a window's worth of answers: one more line
        assert w.limit == 5
        w.signal(sig("server_error"))  # 5xx are waited out, not a reason to slow down
        assert w.limit == 5
        for _ in range(200):
            w.signal(sig("ok"))
        assert w.limit == 16  # never above --concurrency
        for _ in range(4):
            w.release()
        for _ in range(10):
            w.signal(sig("limited", refused=2))
        assert w.limit == 1 and w.low == 1  # never below one line

    asyncio.run(scenario())


# -- through litellm, against the rate-limited server ------------------------------------------


@pytest.fixture
def signals() -> Iterator[list[limits.Signal]]:
    heard: list[limits.Signal] = []
    unsubscribe = limits.subscribe(heard.append)
    yield heard
    unsubscribe()


def request(p: Provider, **kw: object) -> LLMRequest:
    return LLMRequest(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Classify: my lamp arrived broken"}],
        output_schema={"type": "object", "properties": {"category": {"type": "string"}}},
        schema_name="classify_output",
        max_tokens=50,
        params={"api_base": f"{p.url}/v1", "api_key": "dummy"},
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.slow
def test_a_call_waits_out_429_and_503_answers(signals: list[limits.Signal]) -> None:
    # one request a second, a bucket of one; every 3rd accepted request is a 503
    with provider(rpm=60, latency=0.05, error_every=3) as p:

        async def three() -> list[object]:
            return await asyncio.gather(*(complete(request(p)) for _ in range(3)))

        got = asyncio.run(three())
        stats = p.stats()
    assert [json.loads(r.content) for r in got] == [{"category": "refund", "confidence": 0.94}] * 3
    assert stats["by_node"] == {"classify": 3} and stats["limited"] >= 2 and stats["errors"] == 1
    assert max(r.waited_s for r in got) >= 1.0  # the later calls waited for the bucket
    kinds = [s.kind for s in signals]
    assert kinds.count("ok") == 3 and kinds.count("server_error") == 1
    assert kinds.count("limited") == stats["limited"]
    asked = [s.retry_after_s for s in signals if s.kind == "limited"]
    assert all(a is not None and 0 < a <= 1.0 for a in asked)  # retry-after-ms, not whole s


@pytest.mark.slow
def test_a_call_gives_up_when_the_provider_asks_for_more_than_its_bound() -> None:
    with provider(rpm=2, latency=0.05) as p:  # one token, then 30 s until the next
        asyncio.run(complete(request(p)))
        started = time.monotonic()
        with pytest.raises(ProviderError) as caught:
            asyncio.run(complete(request(p, max_wait_s=5.0)))
    assert time.monotonic() - started < 5  # it did not wait for what it could not have
    assert caught.value.kind == "rate_limit" and caught.value.retryable
    assert re.search(r"the provider asked for (29|30)\.\ds more", caught.value.message)
    assert "past the route's max_wait 5s" in caught.value.message


# -- a batch ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_batch_at_the_rate_limit_finishes_every_line(tmp_path: Path) -> None:
    lines = 16
    env = process_env(tmp_path)
    tickets = data(tmp_path, [json.dumps({"ticket_id": "T-1001"})] * lines)
    # 4 requests a second and a 503 every 7th: --concurrency 8 is more than the provider takes
    with provider(rpm=240, latency=0.1, error_every=7) as p:
        spec = provider_spec(tmp_path / "spec", p.url)
        proc = flowrun(
            env, "batch", str(spec), "--profile", "provider", "--data", tickets,
            "--scopes", "refunds:write", "--concurrency", "8", "--output", "json",
        )  # fmt: skip
        stats = p.stats()
    assert proc.returncode == 0, proc.stderr
    got = results(proc)
    assert [r["status"] for r in got] == ["succeeded"] * lines  # no line lost to a 429
    assert stats["by_node"] == {"classify": lines, "propose": lines}  # each answered once
    assert stats["limited"] > 0 and stats["errors"] > 0  # the limits were met
    assert "provider answered 429" in proc.stderr  # the progress line shows the window
    store = open_store(env["FLOWRUN_STORE"])
    waited = [
        c["data"].get("waited_s", 0.0)
        for r in got
        for c in store.calls(r["run_id"])
        if c["kind"] == "llm"
    ]
    store.close()
    assert len(waited) == 2 * lines and any(w > 0 for w in waited)  # call records show waits


@pytest.mark.slow
def test_a_line_fails_alone_when_its_wait_would_pass_the_bound(tmp_path: Path) -> None:
    env = process_env(tmp_path)
    tickets = data(tmp_path, [json.dumps({"ticket_id": "T-1001"})] * 2)
    with provider(rpm=2, latency=0.05) as p:  # one call, then 30 s until the next
        spec = provider_spec(tmp_path / "spec", p.url, max_wait="2s")
        proc = flowrun(
            env, "batch", str(spec), "--profile", "provider", "--data", tickets,
            "--scopes", "refunds:write", "--concurrency", "1", "--output", "json",
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    got = results(proc)
    assert [r["status"] for r in got] == ["failed", "failed"]
    assert all("rate_limit" in r["reason"] and "max_wait 2s" in r["reason"] for r in got)
    assert "Traceback" not in proc.stderr
