"""Console sign-in through a local OpenID Connect provider (oidc-provider-mock, real HTTP): the
provider says who someone is, flowrun's users say what they may do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from runner.web import ConsoleConfig, create_app
from runner.web.oidc import OidcConfig
from tests.web.conftest import SPECS, Flowrun, add_lead, rows

REVIEW = str(SPECS / "ticket_review.yaml")


@pytest.fixture
def provider() -> Iterator[str]:
    oidc_provider_mock = pytest.importorskip("oidc_provider_mock")
    with oidc_provider_mock.run_server_in_thread() as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def console(env: dict[str, str], flowrun: Flowrun, provider: str) -> Iterator[TestClient]:
    assert flowrun("writes", "on").returncode == 0
    add_lead(env["FLOWRUN_STORE"], "alice@example.com", "unused-token")
    config = ConsoleConfig(
        store_path=Path(env["FLOWRUN_STORE"]),
        token=None,
        env=env,
        resume_wait_s=30,
        oidc=OidcConfig(issuer=provider, client_id="flowrun-console", client_secret="s3cret"),
    )
    with TestClient(create_app(config), base_url="http://127.0.0.1:8765") as c:
        yield c


def sign_in(c: TestClient, who: str) -> httpx.Response:
    """The browser's round trip: to the provider, the person picks who they are, back here."""
    start = c.get("/oidc/login", follow_redirects=False)
    assert start.status_code == 303, start.text
    assert "flowrun_oidc" in start.headers["set-cookie"]
    at_provider = httpx.post(start.headers["location"], data={"sub": who}, timeout=30)
    assert at_provider.status_code == 302, at_provider.text
    back = urlsplit(at_provider.headers["location"])
    assert back.path == "/oidc/callback"
    return c.get(f"{back.path}?{back.query}", follow_redirects=False)


def test_a_flowrun_user_signs_in_through_the_provider_and_decides_as_itself(
    console: TestClient, flowrun: Flowrun, env: dict[str, str]
) -> None:
    proc = flowrun("execute", REVIEW, "--input-json", json.dumps({"ticket_id": "T-1005"}),
                   "--run-id", "o1", "--live")  # fmt: skip
    assert proc.returncode == 6, proc.stderr
    assert "/oidc/login" in console.get("/login").text
    done = sign_in(console, "alice@example.com")
    assert done.status_code == 200 and "Signed in as alice@example.com" in done.text
    inbox = console.get("/inbox", follow_redirects=False)
    assert inbox.status_code == 200
    csrf = inbox.text.split('name="csrf" value="')[1].split('"')[0]
    r = console.post("/approvals/o1/approve/reject", data={"csrf": csrf, "reason": "no"})
    assert r.status_code == 200
    assert rows(env["FLOWRUN_STORE"], "SELECT decided_by FROM approvals") == [
        ("alice@example.com",)
    ]
    logins = rows(env["FLOWRUN_STORE"], "SELECT data FROM events WHERE type = 'access_allowed'")
    assert json.loads(str(logins[0][0]))["via"] == "console-oidc"


def test_the_provider_alone_admits_nobody(console: TestClient) -> None:
    refused = sign_in(console, "mallory@example.com")
    assert refused.status_code == 403 and "is not a flowrun user" in refused.text
    assert console.get("/inbox", follow_redirects=False).status_code == 303


def test_a_callback_that_was_not_started_here_is_refused(console: TestClient) -> None:
    forged = console.get("/oidc/callback?code=abc&state=xyz", follow_redirects=False)
    assert forged.status_code == 401 and "was not started here" in forged.text
    start = console.get("/oidc/login", follow_redirects=False)
    other = httpx.post(start.headers["location"], data={"sub": "alice@example.com"}, timeout=30)
    back = urlsplit(other.headers["location"])
    query = back.query.replace("state=", "state=x")
    wrong = console.get(f"{back.path}?{query}", follow_redirects=False)
    assert wrong.status_code == 401 and "state does not match" in wrong.text
    assert console.get("/inbox", follow_redirects=False).status_code == 303
