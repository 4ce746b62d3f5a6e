"""Provider limits: how long a model call waits when the provider answers 429 or 5xx, and who
hears about it.

A real call (not a recorded answer) that the provider refuses with a rate limit (429) is sent
again after the time the provider asks for (`retry-after-ms`, else `Retry-After` in seconds or
as an HTTP date), or after an exponential backoff with jitter when it names none; a server error
(5xx) likewise, at most `SERVER_ERROR_TRIES` times, and a connection that failed (refused, or
an idle kept-alive connection the provider closed as the call went out) at most
`CONNECTION_TRIES` times. All the waiting of one call is bounded by
its route's `max_wait` (default `DEFAULT_MAX_WAIT_S`): a call the provider would keep waiting
longer fails as the provider error it got (the route's fallbacks and the node's retry policy
then apply as for any provider error).

Every answer of a real call is also a `Signal` to the listeners of this process
(`subscribe`): a batch listens to adapt how many runs it has in flight (runner/runs/batch.py).
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

DEFAULT_MAX_WAIT_S = 300.0
SERVER_ERROR_TRIES = 3  # a 5xx answer is tried again at most this many times per call
CONNECTION_TRIES = 1  # a dropped connection (an idle kept-alive one the provider closed) too
BACKOFF_BASE_S = 0.5  # the first wait when the provider names none; doubled each time
BACKOFF_CAP_S = 20.0

SignalKind = Literal["ok", "limited", "server_error"]


@dataclass(frozen=True, slots=True)
class Signal:
    """One answer of a provider to a real call."""

    kind: SignalKind
    model: str
    endpoint: str  # the route's api_base, else the provider's name
    retry_after_s: float | None = None  # what the provider asked for, if it did
    refused: int = 0  # the 429 answers this call has had so far, this one included


_listeners: list[Callable[[Signal], None]] = []
_lock = threading.Lock()


def subscribe(listener: Callable[[Signal], None]) -> Callable[[], None]:
    """Hear every provider answer of this process until the returned function is called."""
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


def emit(signal: Signal) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(signal)
        except Exception:  # a listener's bug must not fail the model call
            continue


def _headers_of(exc: BaseException) -> Mapping[str, str] | None:
    for name in ("litellm_response_headers", "headers"):
        headers = getattr(exc, name, None)
        if headers:
            return headers  # type: ignore[no-any-return]
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return headers if headers else None


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait as the headers ask: `retry-after-ms`, else `Retry-After` (seconds or an
    HTTP date); None when they name nothing usable."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
            if value >= 0:
                return value
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
        return value if value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after(chain: Iterable[BaseException]) -> float | None:
    """What the provider's answer asked for, from the first exception in `chain` with headers."""
    for exc in chain:
        headers = _headers_of(exc)
        if headers is not None:
            return parse_retry_after(headers)
    return None


def delay(kind: str, tries: int, asked: float | None) -> float:
    """How long to wait before try number `tries + 1`: what the provider asked for plus up to
    10% (so that the calls it refused together do not all come back at the same instant), else
    an exponential backoff with jitter."""
    if asked is not None:
        return asked + random.uniform(0.0, 0.1 * asked + 0.01)
    top = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(tries - 1, 0))
    return random.uniform(top / 2, top)


@dataclass(slots=True)
class Waits:
    """The waiting one call has done so far, and whether it may wait again."""

    max_wait_s: float
    waited_s: float = 0.0
    limited: int = 0  # 429 answers
    server_errors: int = 0  # 5xx answers
    dropped: int = 0  # connections dropped
    asked_s: float | None = None  # what the provider asked for last

    def next(self, kind: str, asked: float | None) -> float | None:
        """The wait before trying again after an answer of `kind`, or None to give up."""
        self.asked_s = asked
        if kind == "rate_limit":
            self.limited += 1
            tries = self.limited
        elif kind == "internal_server_error":
            self.server_errors += 1
            if self.server_errors > SERVER_ERROR_TRIES:
                return None
            tries = self.server_errors
        elif kind == "connection":
            self.dropped += 1
            if self.dropped > CONNECTION_TRIES:
                return None
            tries = self.dropped
        else:
            return None
        wait = delay(kind, tries, asked)
        if self.waited_s + wait > self.max_wait_s:
            return None
        self.waited_s += wait
        return wait

    def describe(self) -> str:
        """Why the call stopped waiting, for its error message."""
        parts = []
        if self.limited:
            parts.append(f"{self.limited} rate-limit (429)")
        if self.server_errors:
            parts.append(f"{self.server_errors} server-error (5xx)")
        if self.dropped:
            parts.append(f"{self.dropped} dropped-connection")
        why = f"{' and '.join(parts)} answers, {self.waited_s:.1f}s waited"
        if self.server_errors > SERVER_ERROR_TRIES:
            return f"{why}; server errors are tried {SERVER_ERROR_TRIES} more times at most"
        if self.dropped > CONNECTION_TRIES:
            return f"{why}; a dropped connection is tried {CONNECTION_TRIES} more time at most"
        if self.asked_s is not None:
            return (
                f"{why}; the provider asked for {self.asked_s:.1f}s more, past the route's "
                f"max_wait {self.max_wait_s:g}s"
            )
        return f"{why}; waiting again would pass the route's max_wait {self.max_wait_s:g}s"
