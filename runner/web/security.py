"""Sessions signed with a per-process secret, CSRF tokens derived from them, strict headers."""

from __future__ import annotations

import base64
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
    """Stateless signed sessions: `sid.issued.subject.signature`, the subject (who logged in)
    base64url-encoded; the CSRF token is an HMAC of the sid. Whether the subject may still act
    is asked of the identities on every request (runner/runs/identity.py), not of the cookie."""

    def __init__(self, token: str | None, secret: bytes | None = None) -> None:
        self.token = token  # the shared console token (loopback only), if any
        self.secret = secret or secrets.token_bytes(32)
        # logged-out session ids, each kept until its cookie would have expired anyway
        self.revoked: dict[str, float] = {}

    def _sign(self, text: str) -> str:
        return hmac.new(self.secret, text.encode(), hashlib.sha256).hexdigest()

    def check_token(self, given: str) -> bool:
        """Constant-time comparison with the shared console token (False when there is none)."""
        if self.token is None:
            return False
        return hmac.compare_digest(given.encode(), self.token.encode())

    def issue(self, subject: str) -> str:
        who = base64.urlsafe_b64encode(subject.encode()).decode().rstrip("=")
        body = f"{secrets.token_urlsafe(24)}.{int(time.time())}.{who}"
        return f"{body}.{self._sign('session|' + body)}"

    def session(self, cookie: str | None) -> tuple[str, str] | None:
        """(session id, subject) of a valid, unexpired, unrevoked cookie; None otherwise."""
        if not cookie or cookie.count(".") != 3:
            return None
        sid, issued, who, sig = cookie.split(".")
        if not hmac.compare_digest(sig, self._sign(f"session|{sid}.{issued}.{who}")):
            return None
        if not issued.isdigit() or time.time() - int(issued) > SESSION_MAX_AGE_S:
            return None
        if sid in self.revoked:
            return None
        try:
            subject = base64.urlsafe_b64decode(who + "=" * (-len(who) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return sid, subject

    def csrf(self, sid: str) -> str:
        return self._sign("csrf|" + sid)

    def csrf_ok(self, sid: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf(sid), str(given))

    def revoke(self, sid: str) -> None:
        """Log a session out. An id is forgotten once no cookie of it can be valid (a session
        lives SESSION_MAX_AGE_S from its issue, before its logout): the set stays bounded."""
        now = time.time()
        self.revoked = {k: until for k, until in self.revoked.items() if until > now}
        self.revoked[sid] = now + SESSION_MAX_AGE_S
