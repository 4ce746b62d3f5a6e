"""Redaction: secrets never leave the process; personal data stays out of default transcripts."""

from __future__ import annotations

import os
import re
from typing import Any

SECRET_KEYS = re.compile(
    r"(api[_-]?key|authorization|auth[_-]?token|access[_-]?token|secret|password|bearer)", re.I
)
_SECRETS = [
    re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=-]{8,}", re.I),
    re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
]
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}(?![\w-])"
    r"|(?<![\w+])\+\d{10,15}\b"
)
_ENV_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET")
_NON_DIGIT = re.compile(r"\D")
_DIGITS = "0123456789"
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # a Luhn digit doubled, less 9 when over 9


def _luhn(digits: str) -> bool:
    rev = digits[::-1]
    total = sum(map(int, rev[0::2])) + sum([_DOUBLED[int(ch)] for ch in rev[1::2]])
    return total % 10 == 0


# perf (issue 11): scanning os.environ decodes every variable, and redact() runs for every
# string of every node; the scan was a third of a traced run. The list is recomputed whenever
# the environment differs from the snapshot it was taken from (one C-level dict compare).
_ENV_CACHE: tuple[dict[Any, Any], list[str]] | None = None


def _env_secrets() -> list[str]:
    """Values of key-like environment variables: a key echoed anywhere is still a key."""
    global _ENV_CACHE
    raw = getattr(os.environ, "_data", None)
    if raw is not None and _ENV_CACHE is not None and _ENV_CACHE[0] == raw:
        return _ENV_CACHE[1]
    values = [
        v
        for k, v in os.environ.items()
        if k.upper().endswith(_ENV_SUFFIXES) and len(v) >= 8 and not v.isdigit()
    ]
    if raw is not None:
        _ENV_CACHE = (dict(raw), values)
    return values


def redact_secrets(text: str) -> str:
    for value in _env_secrets():
        text = text.replace(value, "[REDACTED:secret]")
    return _secret_patterns(text)


def _secret_patterns(text: str) -> str:
    # perf (issue 11): every pattern needs a literal (sk-, AKIA, gh+_, xox, AIza, or "bearer"
    # in any case: no other character matches those letters under re.I); a text with none of
    # them cannot match, and substring tests are far cheaper than six regex scans
    if (
        "sk-" not in text
        and "AKIA" not in text
        and ("gh" not in text or "_" not in text)
        and "xox" not in text
        and "AIza" not in text
        and "bearer" not in text.lower()
    ):
        return text
    for pattern in _SECRETS:
        text = pattern.sub("[REDACTED:secret]", text)
    return text


def _card(m: re.Match[str]) -> str:
    digits = _NON_DIGIT.sub("", m.group(0))
    return "[REDACTED:card]" if _luhn(digits) else m.group(0)


def redact_pii(text: str) -> str:
    if text.isascii():
        # perf (issue 11): an email needs an @, a card 13 digits, a phone number 8 (and none
        # of the replacements adds any): skip the scans that cannot match
        digits = sum(map(text.count, _DIGITS))
        at = "@" in text
        if at:
            text = _EMAIL.sub("[REDACTED:email]", text)
        if digits >= 13:
            text = _CARD.sub(_card, text)
        if digits >= 8:
            text = _PHONE.sub("[REDACTED:phone]", text)
        return text
    text = _EMAIL.sub("[REDACTED:email]", text)
    text = _CARD.sub(_card, text)
    return _PHONE.sub("[REDACTED:phone]", text)


# perf (issue 11): the same short strings (tool names, policy reasons, statuses, dict keys) are
# redacted over and over; their redacted forms are memoised per environment-secrets snapshot.
# Only exact `str` values up to _MEMO_LEN characters are memoised, and a full memo is emptied.
_MEMO_LEN = 512
_MEMO_SIZE = 4096
_memo_env: list[str] | None = None
_memo: tuple[dict[str, str], dict[str, str]] = ({}, {})  # pii=False, pii=True
_secret_keys: dict[str, bool] = {}


def _patterns(text: str, pii: bool) -> str:
    text = _secret_patterns(text)
    return redact_pii(text) if pii else text


# perf (issue 11): ids like idempotency keys ("<run id>:<node id>") are new on every node, but
# their parts repeat. No pattern can match a ":", and every boundary test they make (\b and the
# digit/word look-arounds) sees a ":" as it sees the start or end of a string; so a short text
# redacts as its ":"-separated parts do, each looked up in (or added to) a memo.
_SPLIT_LEN = 256
_parts_memo: tuple[dict[str, str], dict[str, str]] = ({}, {})


def _text(text: str, pii: bool, env: list[str]) -> str:
    for value in env:
        text = text.replace(value, "[REDACTED:secret]")
    if ":" not in text or len(text) > _SPLIT_LEN:
        return _patterns(text, pii)
    memo = _parts_memo[pii]
    out = []
    for part in text.split(":"):
        done = memo.get(part)
        if done is None:
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            done = memo[part] = _patterns(part, pii)
        out.append(done)
    return ":".join(out)


def _walk(value: Any, pii: bool, env: list[str], memo: dict[str, str]) -> Any:
    cls = type(value)
    if cls is str:
        out = memo.get(value)
        if out is None:
            out = _text(value, pii, env)
            if len(value) <= _MEMO_LEN:
                if len(memo) >= _MEMO_SIZE:
                    memo.clear()
                memo[value] = out
        return out
    if cls is int or cls is float or cls is bool or value is None:
        return value
    if isinstance(value, str):  # a str subclass: not memoised
        return _text(value, pii, env)
    if isinstance(value, dict):
        out_d = {}
        for k, v in value.items():
            if type(k) is str:
                secret = _secret_keys.get(k)
                if secret is None:
                    if len(_secret_keys) >= _MEMO_SIZE:
                        _secret_keys.clear()
                    secret = _secret_keys[k] = SECRET_KEYS.search(k) is not None
            else:
                secret = isinstance(k, str) and SECRET_KEYS.search(k) is not None
            out_d[k] = "[REDACTED:secret]" if secret and v is not None else _walk(v, pii, env, memo)
        return out_d
    if isinstance(value, list | tuple):
        return [_walk(v, pii, env, memo) for v in value]
    return value


def redact(value: Any, *, pii: bool) -> Any:
    """A copy of a JSON value with secrets (and, if `pii`, emails, cards, phones) replaced."""
    global _memo_env
    env = _env_secrets()
    if env is not _memo_env:  # the environment changed: memoised results may be stale
        _memo_env = env
        for memo in (*_memo, *_parts_memo):
            memo.clear()
    return _walk(value, pii, env, _memo[1] if pii else _memo[0])
