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


def rpc(site: dict[str, Any], who: str, body: bytes) -> dict[str, Any]:
    """One raw JSON-RPC request in a session of client `who` (initialized first)."""
    headers = {**HEADERS, "authorization": f"Bearer {site['tokens'][who]}"}
    with httpx.Client(headers=headers, timeout=60) as c:
        init = c.post(site["url"], json=INIT)
        assert init.status_code == 200, init.text
        c.headers["mcp-session-id"] = init.headers["mcp-session-id"]
        c.headers["mcp-protocol-version"] = INIT["params"]["protocolVersion"]  # type: ignore[index]
        c.post(site["url"], json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        r = c.post(site["url"], content=body)
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer


@pytest.mark.parametrize(
    ("tool", "arguments", "where"),
    [
        ("doubler", '{"n": NaN}', "/n"),
        ("refunder", '{"text": "x", "amount": Infinity}', "/amount"),
        ("refunder", '{"text": "x", "amount": -Infinity}', "/amount"),
        ("flowrun.approve", '{"run_id": "r", "node": "a", "decision": {"x": [1, NaN]}}',
         "/decision/x/1"),
    ],
    ids=["nan", "infinity", "minus-infinity", "nested"],
)  # fmt: skip
def test_numbers_that_are_not_json_are_refused(
    site: dict[str, Any], tool: str, arguments: str, where: str
) -> None:
    before = runs(site)
    body = (
        '{"jsonrpc": "2.0", "id": 2, "method": "tools/call", '
        f'"params": {{"name": "{tool}", "arguments": {arguments}}}}}'
    )
    answer = rpc(site, "writer", body.encode())
    result = answer["result"]
    assert result["isError"] is True, result
    assert f"{where} is not a finite number" in result["content"][0]["text"]
    assert runs(site) == before
