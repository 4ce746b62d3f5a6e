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


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
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
    for pattern in _SECRETS:
        text = pattern.sub("[REDACTED:secret]", text)
    return text


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "[REDACTED:card]" if _luhn(digits) else m.group(0)


def redact_pii(text: str) -> str:
    text = _EMAIL.sub("[REDACTED:email]", text)
    text = _CARD.sub(_card, text)
    return _PHONE.sub("[REDACTED:phone]", text)


def redact(value: Any, *, pii: bool) -> Any:
    """A copy of a JSON value with secrets (and, if `pii`, emails, cards, phones) replaced."""
    if isinstance(value, str):
        text = redact_secrets(value)
        return redact_pii(text) if pii else text
    if isinstance(value, dict):
        return {
            k: "[REDACTED:secret]"
            if isinstance(k, str) and SECRET_KEYS.search(k) and v is not None
            else redact(v, pii=pii)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, pii=pii) for v in value]
    return value
