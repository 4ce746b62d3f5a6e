"""The HMAC-SHA256 scheme of webhooks in and out (Stripe's and GitHub's shape).

A sender signs the string `<timestamp>.<raw body>` with a shared secret and sends

    X-Flowrun-Timestamp: 1767225600
    X-Flowrun-Signature: v1=<hex HMAC-SHA256>[,v1=<hex>...]

The receiver recomputes the HMAC over the exact bytes it received, compares in constant time
against every secret it holds for the hook (two during a rotation), and refuses a timestamp
farther than the tolerance from its clock (a captured request cannot be replayed later).
docs/intake.md has a curl + openssl recipe.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

TIMESTAMP_HEADER = "X-Flowrun-Timestamp"
SIGNATURE_HEADER = "X-Flowrun-Signature"
DELIVERY_HEADER = "X-Flowrun-Delivery"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300
MAX_SIGNATURES = 8  # a header with more candidates than this is refused (no HMAC per guess)


def signature(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The headers that sign `body` now (what flowrun sends, and what a test sender sends)."""
    ts = int(time.time() if now is None else now)
    return {
        TIMESTAMP_HEADER: str(ts),
        SIGNATURE_HEADER: f"{SCHEME}={signature(secret, ts, body)}",
    }


class BadSignature(Exception):
    """Why a request's signature is refused (said to the sender without any secret)."""


def verify(
    secrets: Sequence[str],
    body: bytes,
    timestamp: str | None,
    signature_header: str | None,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Raise BadSignature unless one `v1` signature of the header is the HMAC of the body under
    one of `secrets`, with a timestamp within `tolerance_s` of now."""
    if not timestamp or not signature_header:
        raise BadSignature(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise BadSignature(f"{TIMESTAMP_HEADER} must be a Unix time in seconds")
    ts = int(timestamp)
    clock = time.time() if now is None else now
    if abs(clock - ts) > tolerance_s:
        raise BadSignature(
            f"{TIMESTAMP_HEADER} is {int(abs(clock - ts))} s from this server's clock "
            f"(tolerance {int(tolerance_s)} s)"
        )
    given = [
        part.strip()[len(SCHEME) + 1 :]
        for part in signature_header.split(",")
        if part.strip().startswith(SCHEME + "=")
    ]
    if not given or len(given) > MAX_SIGNATURES:
        raise BadSignature(f"{SIGNATURE_HEADER} holds no '{SCHEME}=<hex>' signature")
    ok = False
    for secret in secrets:
        expected = signature(secret, ts, body).encode()
        for candidate in given:
            # every pair is compared (no early exit): the time taken says nothing
            ok |= hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
    if not ok:
        raise BadSignature("signature does not match")
