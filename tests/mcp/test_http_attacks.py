"""Hostile requests to `flowrun mcp serve --http` with client tokens, over real HTTP: each gets
its status (400/401/405/413/415) and a short reason, never a 500, and starts nothing; arguments
cannot widen what a client was granted."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.mcp.test_serve_auth import HEADERS, INIT, calls, flowrun, rows, site

pytestmark = pytest.mark.slow  # a server process and a few flowrun processes

__all__ = ["site"]  # the module's server (tests/mcp/test_serve_auth.py)


def runs(site: dict[str, Any]) -> int:
    return int(rows(site, "SELECT COUNT(*) FROM runs")[0][0])


@pytest.mark.parametrize(
    ("auth", "status"),
    [
        ([], 401),
        (["Bearer"], 401),
        (["Basic {reader}"], 401),
        (["Token {reader}"], 401),
        (["Bearer fr_{reader}"], 401),
        (["Bearer {gone}"], 401),
        (["Bearer {reader}", "Bearer fr_nope"], 400),
        (["Bearer fr_nope", "Bearer {reader}"], 400),
        (["Bearer {reader}", "Bearer {reader}"], 400),
        (["bearer {reader}"], 200),  # the scheme is case-insensitive (RFC 7235)
    ],
    ids=[
        "none",
        "no-token",
        "basic",
        "other-scheme",
        "altered",
        "revoked",
        "two-first-good",
        "two-second-good",
        "two-same",
        "lowercase-scheme",
    ],
)
def test_authorization_headers(site: dict[str, Any], auth: list[str], status: int) -> None:
    if "gone" not in site["tokens"]:
        added = flowrun(site["env"], "users", "add", "gone", "--client", "--tenant", "acme")
        assert added.returncode == 0, added.stderr
        site["tokens"]["gone"] = added.stdout.strip()
        assert flowrun(site["env"], "users", "revoke", "gone").returncode == 0
    headers = list(HEADERS.items()) + [("authorization", a.format(**site["tokens"])) for a in auth]
    r = httpx.post(site["url"], json=INIT, headers=headers, timeout=30)
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json()["error"] == "invalid_request"
        assert r.headers["www-authenticate"].startswith('Bearer error="invalid_request"')
    elif status == 401:
        assert r.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


@pytest.mark.parametrize(
    ("method", "content_type", "body", "status"),
    [
        ("POST", "text/plain", json.dumps(INIT).encode(), 415),
        ("POST", None, json.dumps(INIT).encode(), 415),
        ("POST", "application/x-www-form-urlencoded", b"a=b", 415),
        ("POST", "application/json", b"not json", 400),
        ("POST", "application/json", b"[" * 100_000 + b"]" * 100_000, 400),
        ("POST", "application/json", b'{"x": "' + b"a" * (5 * 1024 * 1024) + b'"}', 413),
        ("PUT", "application/json", json.dumps(INIT).encode(), 405),
        ("OPTIONS", None, b"", 405),
    ],
    ids=["text", "no-type", "form", "not-json", "deep", "oversized", "put", "options"],
)
def test_malformed_requests(
    site: dict[str, Any], method: str, content_type: str | None, body: bytes, status: int
) -> None:
    before = runs(site)
    headers = {"accept": HEADERS["accept"], "authorization": f"Bearer {site['tokens']['reader']}"}
    if content_type is not None:
        headers["content-type"] = content_type
    r = httpx.request(method, site["url"], content=body, headers=headers, timeout=60)
    assert r.status_code == status, r.text[:300]
    assert "Traceback" not in r.text
    assert runs(site) == before


def test_arguments_cannot_widen_a_grant_and_an_unknown_run_reveals_nothing(
    site: dict[str, Any],
) -> None:
    before = runs(site)
    widened, killed, unknown = calls(
        site,
        "reader",
        ("doubler", {"n": 3, "live": True, "scopes": ["refunds:write"], "tenant": "globex"}),
        ("flowrun.kill", {"run_id": "r-any", "by": "lead"}),
        ("flowrun.approve", {"run_id": "r-any", "node": "approve"}),
    )
    assert isinstance(killed, str) and "'operator' role" in killed, killed
    assert isinstance(unknown, str) and "no run 'r-any'" in unknown
    assert str(site["store"]) not in unknown + killed
    assert runs(site) == before + 1
    tenant, actor, options = rows(
        site, f"SELECT tenant, actor, options FROM runs WHERE run_id = '{widened['run_id']}'"
    )[0]
    opts = json.loads(options)
    assert (tenant, actor, opts["live"], opts["scopes"]) == ("acme", "reader", False,
                                                             ["refunds:read"])  # fmt: skip
