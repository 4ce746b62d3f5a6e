"""Recorded model responses (JSONL) that tests and the demo replay instead of calling a provider."""

from __future__ import annotations

import dataclasses
import difflib
import json
from pathlib import Path

from runner import files
from runner.errors import UsageError

MAX_RESPONSES_BYTES = 64 * 1024 * 1024

ERROR_KINDS = (
    "rate_limit",
    "internal_server_error",
    "context_window",
    "timeout",
    "bad_request",
    "auth",
)
FIELDS = (
    "node",
    "index",
    "attempt",
    "content",
    "usage",
    "model",
    "finish_reason",
    "error",
    "latency_s",
)
USAGE_FIELDS = ("prompt_tokens", "completion_tokens")
# the parts of prompt_tokens and completion_tokens a provider bills at other prices (issue 23):
# read from the prompt cache, written to it, spent reasoning (litellm prices each, docs/budgets.md)
USAGE_DETAILS = ("cached_tokens", "cache_creation_tokens", "reasoning_tokens")


@dataclasses.dataclass(frozen=True)
class RecordedUsage:
    """Token counts to charge for a recorded call, so replayed runs cost what real ones did."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # of prompt_tokens, read from the provider's prompt cache
    cache_creation_tokens: int = 0  # of prompt_tokens, written to it
    reasoning_tokens: int = 0  # of completion_tokens, spent reasoning


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recorded:
    """One recorded answer (or provider failure) for one attempt of one node (or map item)."""

    node: str
    index: int | None
    attempt: int
    content: str | None
    usage: RecordedUsage | None
    model: str | None
    finish_reason: str
    error: str | None
    latency_s: float
    line: int


_Key = tuple[str, int | None, int]


class _LineError(Exception):
    """A problem on the line being parsed; turned into a `path:line:` UsageError by `load`."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def _did_you_mean(word: str, choices: tuple[str, ...]) -> str:
    near = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {near[0]!r}?" if near else ""


def _int(obj: dict[str, object], key: str, minimum: int) -> int | None:
    if key not in obj:
        return None
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _LineError(f"{key!r} must be an integer, got {json.dumps(value)}")
    if value < minimum:
        raise _LineError(f"{key!r} must be >= {minimum}, got {value}")
    return value


def _str(obj: dict[str, object], key: str) -> str | None:
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise _LineError(f"{key!r} must be a non-empty string, got {json.dumps(value)}")
    return value


def _usage(obj: dict[str, object]) -> RecordedUsage | None:
    if "usage" not in obj:
        return None
    usage = obj["usage"]
    if not isinstance(usage, dict):
        raise _LineError(f"'usage' must be an object with {', '.join(USAGE_FIELDS)}")
    for key in usage:
        if key not in USAGE_FIELDS + USAGE_DETAILS:
            allowed = USAGE_FIELDS + USAGE_DETAILS
            raise _LineError(
                f"unknown field 'usage.{key}'{_did_you_mean(key, allowed)}",
                hint=f"allowed fields of 'usage': {', '.join(allowed)}",
            )
    counts: list[int] = []
    for key in USAGE_FIELDS:
        if key not in usage:
            raise _LineError(f"'usage' is missing {key!r}")
        value = usage[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _LineError(f"'usage.{key}' must be an integer >= 0, got {json.dumps(value)}")
        counts.append(value)
    details: dict[str, int] = {}
    for key in USAGE_DETAILS:
        value = usage.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _LineError(f"'usage.{key}' must be an integer >= 0, got {json.dumps(value)}")
        details[key] = value
    if details["cached_tokens"] + details["cache_creation_tokens"] > counts[0]:
        raise _LineError("'usage.cached_tokens' and 'cache_creation_tokens' are parts of "
                         "'prompt_tokens': together they cannot be more")  # fmt: skip
    if details["reasoning_tokens"] > counts[1]:
        raise _LineError("'usage.reasoning_tokens' is a part of 'completion_tokens': it cannot "
                         "be more")  # fmt: skip
    return RecordedUsage(prompt_tokens=counts[0], completion_tokens=counts[1], **details)


def _content(obj: dict[str, object]) -> str | None:
    if "content" not in obj:
        return None
    value = obj["content"]
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _latency(obj: dict[str, object]) -> float:
    value = obj.get("latency_s", 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _LineError(f"'latency_s' must be a number >= 0, got {json.dumps(value)}")
    return float(value)


def _parse(obj: dict[str, object], line: int) -> tuple[Recorded, int | None]:
    """Check one object; returns the entry (attempt 0 when absent) and the explicit attempt."""
    for key in obj:
        if key not in FIELDS:
            raise _LineError(
                f"unknown field {key!r}{_did_you_mean(key, FIELDS)}",
                hint=f"allowed fields: {', '.join(FIELDS)}",
            )
    if "node" not in obj:
        raise _LineError("missing required field 'node'")
    node = _str(obj, "node")
    assert node is not None
    error = _str(obj, "error")
    if error is not None and error not in ERROR_KINDS:
        raise _LineError(
            f"unknown error kind {error!r}{_did_you_mean(error, ERROR_KINDS)}",
            hint=f"error kinds: {', '.join(ERROR_KINDS)}",
        )
    if error is not None and "content" in obj:
        raise _LineError(
            "'error' and 'content' are both present; a recorded call either fails or answers"
        )
    if error is None and "content" not in obj:
        raise _LineError("neither 'content' nor 'error' is present; give one of them")
    attempt = _int(obj, "attempt", 1)
    recorded = Recorded(
        node=node,
        index=_int(obj, "index", 0),
        attempt=attempt or 0,
        content=_content(obj),
        usage=_usage(obj),
        model=_str(obj, "model"),
        finish_reason=_str(obj, "finish_reason") or "stop",
        error=error,
        latency_s=_latency(obj),
        line=line,
    )
    return recorded, attempt


class RecordedResponses:
    """Responses by (node, map index, attempt), checked up front so a replay never guesses."""

    def __init__(self, path: Path, entries: tuple[Recorded, ...]) -> None:
        self.path = path
        self._entries = entries
        self._by_key: dict[_Key, Recorded] = {(e.node, e.index, e.attempt): e for e in entries}

    @classmethod
    def load(cls, path: Path) -> RecordedResponses:
        """Read and check a JSONL file; every problem names `path:line`."""
        try:
            text = files.read_text(path, limit=MAX_RESPONSES_BYTES)
        except FileNotFoundError:
            raise UsageError(f"{path}: recorded responses file not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"{path}: cannot read recorded responses: {e}") from None
        entries: list[Recorded] = []
        seen: dict[_Key, int] = {}
        last_attempt: dict[tuple[str, int | None], int] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            try:
                entry = cls._line(stripped, number, seen, last_attempt)
            except _LineError as e:
                raise UsageError(f"{path}:{number}: {e.message}", hint=e.hint) from None
            entries.append(entry)
        return cls(path, tuple(entries))

    @staticmethod
    def _line(
        text: str,
        number: int,
        seen: dict[_Key, int],
        last_attempt: dict[tuple[str, int | None], int],
    ) -> Recorded:
        try:
            obj = files.loads(text)
        except json.JSONDecodeError as e:
            raise _LineError(f"not valid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(obj, dict):
            raise _LineError(f"expected a JSON object, got {type(obj).__name__}")
        entry, explicit = _parse(obj, number)
        slot = (entry.node, entry.index)
        attempt = explicit if explicit is not None else last_attempt.get(slot, 0) + 1
        key = (entry.node, entry.index, attempt)
        if key in seen:
            where = f"node {entry.node!r}" + (
                f" index {entry.index}" if entry.index is not None else ""
            )
            raise _LineError(
                f"duplicate response for {where} attempt {attempt}; "
                f"previously defined at line {seen[key]}"
            )
        seen[key] = number
        last_attempt[slot] = attempt
        return dataclasses.replace(entry, attempt=attempt)

    def get(self, node: str, index: int | None, attempt: int) -> Recorded | None:
        """The recorded answer for this attempt, or None when the recording has run out."""
        return self._by_key.get((node, index, attempt))

    def serves(self, node: str) -> bool:
        """Whether calls of `node` must come from here (a replay lets changed nodes call out)."""
        return True

    def nodes(self) -> frozenset[str]:
        return frozenset(e.node for e in self._entries)

    def entries(self) -> tuple[Recorded, ...]:
        return self._entries

    def lines_for(self, node: str) -> list[int]:
        """Lines that mention `node`, to point at when the spec has no such node."""
        return [e.line for e in self._entries if e.node == node]
