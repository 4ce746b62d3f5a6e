"""Sessions signed with a per-process secret, CSRF tokens derived from them, strict headers."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SESSION_COOKIE = "flowrun_session"
SESSION_MAX_AGE_S = 12 * 3600

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        # mermaid's SVG carries its own <style> element and style attributes
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers send `Origin: null`
    "Cache-Control": "no-store",
}


class Sessions:
    """Stateless signed sessions: `sid.issued.signature`; the CSRF token is an HMAC of the sid."""

    def __init__(self, token: str, secret: bytes | None = None) -> None:
        self.token = token
        self.secret = secret or secrets.token_bytes(32)
        self.revoked: set[str] = set()

    def _sign(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    def check_token(self, given: str) -> bool:
        """Constant-time comparison with the console token."""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def issue(self) -> str:
        body = f"{secrets.token_urlsafe(24)}.{int(time.time())}"
        return f"{body}.{self._sign('session|' + body)}"

    def sid(self, cookie: str | None) -> str | None:
        """The session id of a valid, unexpired, unrevoked cookie; None otherwise."""
        if not cookie or cookie.count(".") != 2:
            return None
        sid, issued, sig = cookie.split(".")
        if not hmac.compare_digest(sig, self._sign(f"session|{sid}.{issued}")):
            return None
        if not issued.isdigit() or time.time() - int(issued) > SESSION_MAX_AGE_S:
            return None
        return None if sid in self.revoked else sid

    def csrf(self, sid: str) -> str:
        return self._sign("csrf|" + sid)

    def csrf_ok(self, sid: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf(sid), str(given))

    def revoke(self, sid: str) -> None:
        self.revoked.add(sid)
