"""Hostile requests to a real `flowrun serve` over HTTP: open redirects through `/login?next=`,
every route without a session, cross-site and tampered-cookie POSTs, odd ids and verbs, and
reflected markup. Each is refused with its status and changes nothing."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from starlette.routing import Route

from runner.plan.compile import compile_plan
from runner.runs import Runs
from runner.runs import batch as b
from runner.spec import load_spec
from runner.store import open_store
from runner.web import ConsoleConfig, create_app
from tests.web.conftest import REFERENCE, XSS, rows
from tests.web.test_identities_http import REVIEW as REFERENCE_REVIEW
from tests.web.test_identities_http import approval, session, site

pytestmark = pytest.mark.slow  # a console process and a few flowrun processes

__all__ = ["site"]  # the module's console (tests/web/test_identities_http.py)

NEXTS = [
    "//evil.example",
    "/\\evil.example",
    "https://evil.example/",
    "javascript:alert(1)",
    "/\tevil.example",
    "/\r\nSet-Cookie: x=1",
    "/" + "a" * 5000,
    "/login?next=//evil.example",
]


@pytest.fixture
def browser(site: dict[str, Any]) -> Iterator[Callable[[str | None], tuple[httpx.Client, str]]]:
    """Clients of the console, logged in as a person (None: not logged in); closed after."""
    made: list[httpx.Client] = []

    def open_(name: str | None) -> tuple[httpx.Client, str]:
        if name is None:
            made.append(httpx.Client(base_url=site["base"], timeout=60))
            return made[-1], ""
        c, csrf = session(site, name)
        made.append(c)
        return c, csrf

    yield open_
    for c in made:
        c.close()


def add_ann(site: dict[str, Any]) -> None:
    """ann: an approver for tenant acme only (once per module)."""
    if "ann" not in site["tokens"]:
        added = site["flowrun"]("users", "add", "ann", "--role", "approver", "--tenant", "acme")
        assert added.returncode == 0, added.stderr
        site["tokens"]["ann"] = added.stdout.strip()


def writes_state(site: dict[str, Any]) -> str:
    out = site["flowrun"]("writes")
    assert out.returncode == 0, out.stderr
    return str(out.stdout)


@pytest.mark.parametrize(
    "nxt", [*NEXTS, "/%2F%2Fevil.example", "/%5Cevil.example", "/.//evil.example", "/inbox"]
)
def test_login_goes_back_only_to_a_page_of_this_console(
    site: dict[str, Any], browser: Any, nxt: str
) -> None:
    c, _ = browser(None)
    page = c.get("/login", params={"next": nxt})
    assert page.status_code == 200
    r = c.post("/login", data={"token": site["tokens"]["frank"], "next": nxt})
    assert r.status_code == 303
    where = r.headers["location"]
    target = urlsplit(urljoin(site["base"] + "/login", where))
    assert (target.scheme, target.netloc) == ("http", urlsplit(site["base"]).netloc), where
    if nxt in NEXTS:
        assert where == "/"
        assert 'name="next"' not in page.text
    assert "\n" not in where and "\t" not in where
    assert [h.split("=")[0] for h in r.headers.get_list("set-cookie")] == ["flowrun_session"]


def _routes(site: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (method, path) the console serves, its parameters filled in."""
    app = create_app(ConsoleConfig(store_path=Path(site["env"]["FLOWRUN_STORE"]), token=None))
    out = []
    for route in app.routes:
        assert isinstance(route, Route)
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        out += [(m, path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return out


def test_every_route_needs_a_session(site: dict[str, Any], browser: Any) -> None:
    before = writes_state(site), approval(site, "later")
    c, _ = browser(None)
    public = {"/login", "/static/x", "/oidc/login", "/oidc/callback"}
    for method, path in _routes(site):
        r = c.request(method, path, data={"state": "off", "reason": "r", "confirm": "later"})
        assert r.status_code < 500 and "Traceback" not in r.text, (method, path, r.text)
        if path in public:
            continue
        if method == "GET":
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
        else:
            assert r.status_code == 403 and "log in first" in r.text, (method, path)
    assert (writes_state(site), approval(site, "later")) == before


def test_cross_site_and_tampered_posts_change_nothing(site: dict[str, Any], browser: Any) -> None:
    lead, csrf = browser("lead")
    _, frank_csrf = browser("frank")
    cookie = lead.cookies["flowrun_session"]
    sid, issued, who, sig = cookie.split(".")
    other = base64.urlsafe_b64encode(b"id:frank").decode().rstrip("=")
    before = writes_state(site), approval(site, "later")
    form = {"state": "off", "d_amount_usd": "5", "d_channel": "card"}
    for path in ("/writes", "/approvals/later/approve/approve", "/runs/later/kill"):
        for headers, data in (
            ({"Origin": "https://evil.example"}, {**form, "csrf": csrf}),
            ({"Origin": "null"}, {**form, "csrf": csrf}),
            ({}, form),
            ({}, {**form, "csrf": frank_csrf}),  # another user's token
            ({}, {**form, "csrf": csrf.upper()}),
        ):
            r = lead.post(path, data=data, headers=headers)
            assert r.status_code == 403, (path, headers, r.text)
        assert lead.post(path, json={**form, "csrf": csrf}).status_code == 403
        for tampered in (
            f"{sid}.{issued}.{other}.{sig}",  # another user's name under lead's signature
            f"{sid}.{issued}.{who}.{'0' * len(sig)}",
            f"{sid}.1.{who}.{sig}",
            cookie + ".x",
        ):
            r = httpx.post(
                site["base"] + path,
                data={**form, "csrf": csrf},
                headers={"Cookie": f"flowrun_session={tampered}"},
            )
            assert r.status_code == 403 and "log in first" in r.text, tampered
    # logged out: the cookie (and its CSRF token) no longer act
    assert lead.post("/logout", data={"csrf": csrf}).status_code == 303
    r = httpx.post(
        site["base"] + "/writes",
        data={**form, "csrf": csrf},
        headers={"Cookie": f"flowrun_session={cookie}"},
    )
    assert r.status_code == 403
    assert (writes_state(site), approval(site, "later")) == before


def test_odd_verbs_and_ids_are_404_and_say_no_more(site: dict[str, Any], browser: Any) -> None:
    c, csrf = browser("lead")
    store = site["env"]["FLOWRUN_STORE"]
    before = approval(site, "later")
    for verb in ("delete", "approve%2F..", "Approve"):
        r = c.post(f"/approvals/later/approve/{verb}", data={"csrf": csrf, "reason": "r"})
        assert r.status_code == 404, (verb, r.status_code)
    assert approval(site, "later") == before
    for path in ("/runs/nope", "/runs/nope/trace", "/batches/nope", "/runs/" + "a" * 3000):
        r = c.get(path)
        assert r.status_code == 404, path
        assert store not in r.text and "Traceback" not in r.text, path
    r = c.post("/runs/nope/kill", data={"csrf": csrf})
    assert r.status_code == 404 and store not in r.text


@pytest.mark.parametrize(
    "path",
    [
        "/runs/{xss}",
        "/runs?tenant={xss}&workflow={xss}&status={xss}",
        "/batches/{xss}",
        "/login?next=/%22%3E{xss}",
    ],
)
def test_reflected_markup_stays_text(site: dict[str, Any], browser: Any, path: str) -> None:
    c, _ = browser("lead")
    r = c.get(path.format(xss=XSS))
    assert r.status_code in (200, 404)
    assert "<script>" not in r.text and "<img src=x" not in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]


def test_another_tenants_batch_is_not_listed_and_its_page_is_403(
    site: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    add_ann(site)
    data = tmp_path / "t.jsonl"
    data.write_text('{"ticket_id": "T-1002"}\n')
    plan = compile_plan(load_spec(REFERENCE), None)
    runs = Runs.open(site["env"]["FLOWRUN_STORE"])
    try:
        for batch_id, tenant in (("b-globex", "globex"), ("b-acme", "acme")):
            lines = b.read_data(str(data), {}, plan)
            b.create_batch(runs, plan, lines, data_path=str(data), options={"tenant": tenant},
                           batch_id=batch_id)  # fmt: skip
    finally:
        runs.close()
    ann, _ = browser("ann")
    listed = ann.get("/batches").text
    assert "b-acme" in listed and "b-globex" not in listed
    assert ann.get("/batches/b-acme").status_code == 200
    refused = ann.get("/batches/b-globex")
    assert refused.status_code == 403 and "does not act for this batch&#39;s tenant" in refused.text
    audit = rows(
        site["env"]["FLOWRUN_STORE"],
        "SELECT data FROM events WHERE type = 'access_refused' AND data LIKE '%b-globex%'",
    )
    assert len(audit) == 1 and json.loads(str(audit[0][0]))["identity"] == "ann"
    lead, _ = browser("lead")  # every tenant
    assert "b-globex" in lead.get("/batches").text


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_oversized_form_is_413_before_it_is_read(site: dict[str, Any], chunked: bool) -> None:
    token = site["tokens"]["lead"]
    body = f"token={token}&pad=".encode() + b"x" * (2 << 20)
    content: Any = body
    if chunked:
        content = (body[i : i + 65536] for i in range(0, len(body), 65536))
    r = httpx.post(
        site["base"] + "/login",
        content=content,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=60,
    )
    assert r.status_code == 413 and "request too large" in r.text
    assert "flowrun_session" not in r.headers.get("set-cookie", "")


def test_the_overview_lists_only_running_runs_of_ones_tenants(
    site: dict[str, Any], browser: Any
) -> None:
    done = site["flowrun"](
        "execute", str(REFERENCE_REVIEW), "--input-json", '{"ticket_id": "T-1005"}',
        "--run-id", "globex-run", "--tenant", "globex",
    )  # fmt: skip
    assert done.returncode == 6, done.stderr  # waits for approval
    store = open_store(site["env"]["FLOWRUN_STORE"])
    try:
        store.update_run("globex-run", status="running")  # as if its process were at work
    finally:
        store.close()
    add_ann(site)
    ann, _ = browser("ann")
    lead, _ = browser("lead")
    assert "globex-run" in lead.get("/").text
    assert "globex-run" not in ann.get("/").text
    assert ann.get("/runs/globex-run").status_code == 403


def test_another_tenants_readiness_is_403(site: dict[str, Any], browser: Any) -> None:
    add_ann(site)
    ann, _ = browser("ann")
    assert ann.get("/readiness", params={"tenant": "acme"}).status_code == 200
    refused = ann.get("/readiness", params={"tenant": "globex"})
    assert refused.status_code == 403 and "does not act for tenant" in refused.text
    lead, _ = browser("lead")
    assert lead.get("/readiness", params={"tenant": "globex"}).status_code == 200


def test_a_refused_login_is_audited_without_its_token(site: dict[str, Any]) -> None:
    def refused() -> list[dict[str, Any]]:
        found = rows(
            site["env"]["FLOWRUN_STORE"],
            "SELECT data FROM events WHERE type = 'access_refused' ORDER BY id",
        )
        return [e for (d,) in found if (e := json.loads(str(d)))["action"] == "log in"]

    before = len(refused())
    guess = "fr_guessed-token-0123456789"
    r = httpx.post(site["base"] + "/login", data={"token": guess})
    assert r.status_code == 401
    assert httpx.get(site["base"] + "/login", params={"token": guess}).status_code == 401
    after = refused()
    assert len(after) == before + 2
    assert after[-1]["identity"] == "(unknown token)" and after[-1]["via"] == "console"
    assert guess not in json.dumps(after)


def test_the_waiting_count_is_of_ones_tenants(site: dict[str, Any], browser: Any) -> None:
    done = site["flowrun"](
        "execute", str(REFERENCE_REVIEW), "--input-json", '{"ticket_id": "T-1005"}',
        "--run-id", "globex-wait", "--tenant", "globex",
    )  # fmt: skip
    assert done.returncode == 6, done.stderr
    add_ann(site)

    def count(who: str) -> int:
        c, _ = browser(who)
        m = re.search(r'id="nav-inbox">Inbox <span class="count">(\d+)<', c.get("/runs").text)
        assert m
        return int(m.group(1))

    (globex,) = rows(
        site["env"]["FLOWRUN_STORE"],
        "SELECT COUNT(*) FROM approvals a JOIN runs r ON r.run_id = a.run_id "
        "WHERE a.status = 'waiting' AND r.tenant = 'globex'",
    )[0]
    assert int(str(globex)) >= 1
    assert count("ann") == count("lead") - int(str(globex))


@pytest.mark.parametrize("amount", ["nan", "NaN", "inf", "-Infinity", "1e999"])
def test_a_decision_number_must_be_finite(site: dict[str, Any], browser: Any, amount: str) -> None:
    c, csrf = browser("lead")
    before = approval(site, "later")
    r = c.post(
        "/approvals/later/approve/approve",
        data={"csrf": csrf, "d_amount_usd": amount, "d_channel": "card"},
    )
    assert r.status_code == 400 and "decision field &#39;amount_usd&#39;" in r.text, r.text[-500:]
    assert approval(site, "later") == before == [("waiting", None)]


def test_logged_out_sessions_are_forgotten_once_they_would_have_expired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from runner.web import security

    now = [1_000_000.0]
    monkeypatch.setattr(security.time, "time", lambda: now[0])
    sessions = security.Sessions(None)
    cookies = [sessions.issue(f"id:u{n}") for n in range(50)]
    for cookie in cookies:
        sid, _ = sessions.session(cookie) or ("", "")
        sessions.revoke(sid)
        assert sessions.session(cookie) is None  # out at once
    assert len(sessions.revoked) == 50
    # past the longest a session lives, a logout forgets the ids no cookie can use any more
    now[0] += security.SESSION_MAX_AGE_S + 1
    late = sessions.issue("id:late")
    sessions.revoke((sessions.session(late) or ("", ""))[0])
    assert len(sessions.revoked) == 1
    assert all(sessions.session(c) is None for c in cookies)  # expired: still refused
    assert sessions.session(late) is None
