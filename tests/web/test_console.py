"""The console over a real store: auth, CSRF, escaping, approvals, operations (TestClient)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from runner.runs.identity import token_hash
from runner.web import ConsoleConfig, create_app
from tests.web.conftest import (
    LEAD_TOKEN,
    SPECS,
    TOKEN,
    XSS,
    Flowrun,
    csrf_of,
    login,
    rows,
    set_ticket_body,
)

REVIEW = str(SPECS / "ticket_review.yaml")


def review(flowrun: Flowrun, run_id: str, ticket: str = "T-1005", live: bool = True) -> None:
    proc = flowrun(
        "execute",
        REVIEW,
        "--input-json",
        json.dumps({"ticket_id": ticket}),
        "--run-id",
        run_id,
        *(["--live"] if live else []),
    )
    assert proc.returncode == 6, proc.stderr


def test_every_page_needs_the_token(client: TestClient, flowrun: Flowrun) -> None:
    review(flowrun, "r1")
    for path in ("/", "/inbox", "/runs", "/runs/r1", "/runs/r1/trace", "/runs/r1/undo"):
        r = client.get(path, follow_redirects=False)
        login = "/login" if path == "/" else "/login?" + urlencode({"next": path})
        assert r.status_code == 303 and r.headers["location"] == login, path
        assert "Refund on" not in r.text
    for path in ("/writes", "/runs/r1/kill", "/approvals/r1/approve/approve", "/runs/r1/undo"):
        r = client.post(path, data={"state": "off", "by": "x"}, follow_redirects=False)
        assert r.status_code == 403, path
    assert client.get("/login?token=wrong").status_code == 401
    assert client.post("/login", data={"token": "wrong"}).status_code == 401
    client.cookies.set("flowrun_session", "forged.123.abc")
    assert client.get("/inbox", follow_redirects=False).status_code == 303
    assert rows(
        client.app.state.console.config.store_path.as_posix(),  # type: ignore[attr-defined]
        "SELECT status FROM approvals",
    ) == [("waiting",)]


def test_login_returns_to_the_page_that_asked_for_it(client: TestClient, flowrun: Flowrun) -> None:
    review(flowrun, "r1")
    asked = client.get("/runs/r1?note=x", follow_redirects=False)
    assert asked.headers["location"] == "/login?" + urlencode({"next": "/runs/r1?note=x"})
    page = client.get(asked.headers["location"])
    assert 'name="next" value="/runs/r1?note=x"' in page.text
    r = client.post(
        "/login", data={"token": LEAD_TOKEN, "next": "/runs/r1?note=x"}, follow_redirects=False
    )
    assert (r.status_code, r.headers["location"]) == (303, "/runs/r1?note=x")
    assert "Refund on" in client.get("/runs/r1").text
    # never to another site, nor back to the login
    for away in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "/login", ""):
        client.cookies.clear()
        r = client.post("/login", data={"token": LEAD_TOKEN, "next": away}, follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (303, "/"), away


def test_login_sets_a_strict_httponly_session_and_strict_headers(client: TestClient) -> None:
    r = client.post("/login", data={"token": "console-test-token"}, follow_redirects=False)
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    for page in (
        client.get("/"),
        client.get("/login"),
        client.get("/runs/nope"),
        client.get("/static/console.css"),
    ):
        csp = page.headers["content-security-policy"]
        assert (
            "script-src 'self'" in csp
            and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        )
        assert page.headers["x-frame-options"] == "DENY"
    assert client.get("/runs/nope").status_code == 404
    # logging out revokes the session even if the cookie is replayed
    old = client.cookies.get("flowrun_session")
    csrf = csrf_of(client.get("/").text)
    client.post("/logout", data={"csrf": csrf})
    client.cookies.set("flowrun_session", old or "")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_post_without_the_csrf_token_changes_nothing(
    client: TestClient, env: dict[str, str]
) -> None:
    csrf = login(client)
    store = env["FLOWRUN_STORE"]
    assert client.post("/writes", data={"state": "off", "by": "eve"}).status_code == 403
    assert (
        client.post("/writes", data={"state": "off", "by": "eve", "csrf": "x" * 64}).status_code
        == 403
    )
    cross = client.post(
        "/writes",
        data={"state": "off", "by": "eve", "csrf": csrf},
        headers={"origin": "http://evil.example"},
    )
    assert cross.status_code == 403
    assert rows(store, "SELECT COUNT(*) FROM switches WHERE value = 'off'") == [(0,)]
    ok = client.post("/writes", data={"state": "off", "by": "ops@example.com", "csrf": csrf})
    assert ok.status_code == 200 and "writes OFF" in ok.text
    assert rows(store, "SELECT value, changed_by FROM switches") == [("off", "lead")]
    # a typed name is not who acted: the logged-in identity is recorded
    missing = client.post("/writes", data={"csrf": csrf})
    assert missing.status_code == 400 and "state must be on or off" in missing.text


def test_untrusted_text_is_escaped_everywhere(
    client: TestClient, flowrun: Flowrun, env: dict[str, str]
) -> None:
    set_ticket_body(env, "T-1005", XSS)
    review(flowrun, "xss")
    login(client)
    for page in ("/inbox", "/runs/xss", "/runs/xss/trace", "/runs"):
        text = client.get(page).text
        assert "<script>alert" not in text and "<img src=x" not in text, page
    assert html.escape(XSS, quote=False) in client.get("/inbox").text
    assert html.escape(XSS) in client.get("/runs/xss").text


def test_approve_in_the_inbox_resumes_the_run_once(
    client: TestClient, flowrun: Flowrun, env: dict[str, str]
) -> None:
    review(flowrun, "a1")
    csrf = login(client)
    inbox = client.get("/inbox").text
    assert "Refund on O-5005 for T-1005" in inbox and 'name="d_amount_usd"' in inbox
    assert "support-leads" in inbox and "times out in 23h" in inbox
    url = "/approvals/a1/approve/approve"
    bad = client.post(
        url, data={"csrf": csrf, "by": "lead", "d_amount_usd": "0", "d_channel": "card"}
    )
    assert bad.status_code == 400 and "decision schema" in bad.text
    assert rows(env["FLOWRUN_STORE"], "SELECT status FROM approvals") == [("waiting",)]
    done = client.post(
        url,
        data={
            "csrf": csrf,
            "by": "lead@example.com",
            "d_amount_usd": "12.5",
            "d_channel": "card",
            "d_note": "",
        },
    )
    assert done.status_code == 200, done.text
    assert "Approved; the run continues." in done.text
    assert 'id="run-status"><span class="status" style="background: #2e7d32">succeeded' in done.text
    assert rows(env["FLOWRUN_SUPPORT_DB"], "SELECT order_id, amount_usd FROM refunds") == [
        ("O-5005", 12.5)
    ]
    assert rows(env["FLOWRUN_STORE"], "SELECT decided_by, decision FROM approvals") == [
        ("lead", '{"amount_usd":12.5,"channel":"card"}')
    ]
    again = client.post(
        url, data={"csrf": csrf, "by": "other", "d_amount_usd": "20", "d_channel": "card"}
    )
    # an error message is redacted like every shown value (the email is personal data)
    assert again.status_code == 409 and "already approved by lead" in again.text
    assert rows(env["FLOWRUN_SUPPORT_DB"], "SELECT COUNT(*) FROM refunds") == [(1,)]
    assert "Nothing waits for approval." in client.get("/inbox").text


def test_reject_needs_a_reason_and_ends_the_run_denied(
    client: TestClient, flowrun: Flowrun, env: dict[str, str]
) -> None:
    review(flowrun, "j1")
    csrf = login(client)
    url = "/approvals/j1/approve/reject"
    assert client.post(url, data={"csrf": csrf, "by": "lead"}).status_code == 400
    r = client.post(url, data={"csrf": csrf, "by": "lead", "reason": "needs photos"})
    assert r.status_code == 200
    assert "rejected by lead: needs photos" in r.text and ">denied<" in r.text
    assert rows(env["FLOWRUN_SUPPORT_DB"], "SELECT COUNT(*) FROM refunds") == [(0,)]
    events = rows(env["FLOWRUN_STORE"], "SELECT data FROM events WHERE type = 'approval_rejected'")
    assert json.loads(str(events[0][0])) == {"by": "lead", "reason": "needs photos"}


def test_kill_a_waiting_run_and_undo_a_finished_one_with_confirmation(
    client: TestClient, flowrun: Flowrun, env: dict[str, str]
) -> None:
    review(flowrun, "k1")
    review(flowrun, "u1", ticket="T-1001")
    csrf = login(client)
    r = client.post("/runs/k1/kill", data={"csrf": csrf, "by": "ops"})
    assert r.status_code == 200 and "The run was killed." in r.text and ">killed<" in r.text
    assert client.post("/runs/k1/kill", data={"csrf": csrf, "by": "ops"}).status_code == 409

    client.post(
        "/approvals/u1/approve/approve",
        data={"csrf": csrf, "by": "lead", "d_amount_usd": "5", "d_channel": "voucher"},
    )
    page = client.get("/runs/u1").text
    assert "undo 1 write(s)" in page
    confirm = client.get("/runs/u1/undo").text
    assert "tools.payments:void_refund" in confirm
    refused = client.post("/runs/u1/undo", data={"csrf": csrf, "by": "ops", "confirm": "nope"})
    assert refused.status_code == 400 and "undo not confirmed" in refused.text
    assert rows(env["FLOWRUN_SUPPORT_DB"], "SELECT status FROM refunds") == [("issued",)]
    done = client.post("/runs/u1/undo", data={"csrf": csrf, "by": "ops", "confirm": "u1"})
    assert done.status_code == 200 and "undone" in done.text
    assert rows(env["FLOWRUN_SUPPORT_DB"], "SELECT status FROM refunds") == [("voided",)]


def test_runs_filter_overview_figures_and_trace(client: TestClient, flowrun: Flowrun) -> None:
    review(flowrun, "f1")
    assert (
        flowrun(
            "execute",
            REVIEW,
            "--input-json",
            '{"ticket_id": "T-1003"}',
            "--run-id",
            "f2",
            "--tenant",
            "acme",
        ).returncode
        == 6
    )
    csrf = login(client)
    client.post(
        "/approvals/f2/approve/reject", data={"csrf": csrf, "by": "x", "reason": "no order"}
    )
    listed = client.get("/runs?status=waiting").text
    assert 'data-run="f1"' in listed and 'data-run="f2"' not in listed
    tenant = client.get("/runs?tenant=acme").text
    assert 'data-run="f2"' in tenant and 'data-run="f1"' not in tenant
    overview = client.get("/").text
    assert 'id="tile-waiting">1<' in overview and "runs by status" in overview
    assert "<svg" in overview
    trace = client.get("/runs/f2/trace").text
    assert "approval_rejected" in trace or "denied" in trace
    page = client.get("/runs/f1").text
    assert "flowchart TD" in page and "class n_intake st_succeeded" in page
    assert 'id="trace-link"' in page


def test_mermaid_is_served_only_when_configured(client: TestClient) -> None:
    login(client)
    assert client.get("/mermaid/mermaid.esm.min.mjs").status_code == 404
    assert client.get("/static/../app.py").status_code == 404


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "/nonexistent/flowrun.db"], "no run store"),
        (["--mermaid", "/nonexistent/mermaid.mjs"], "is not a mermaid ESM file"),
        (["--token", "short"], "at least 8 characters"),
    ],
)
def test_serve_refuses_bad_options(flowrun: Flowrun, args: list[str], message: str) -> None:
    flowrun("writes", "on")
    proc = flowrun("serve", *args, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_a_decision_s_values_are_shown_redacted(
    client: TestClient, flowrun: Flowrun, env: dict[str, str]
) -> None:
    review(flowrun, "a3")
    csrf = login(client)
    key = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
    done = client.post(
        "/approvals/a3/approve/approve",
        data={
            "csrf": csrf,
            "by": "lead",
            "d_amount_usd": "12.5",
            "d_channel": "card",
            "d_note": f"charged with {key} for ann@example.com",
        },
    )
    assert done.status_code == 200, done.text
    page = client.get("/runs/a3").text
    assert "&#34;amount_usd&#34;: 12.5" in page or '"amount_usd": 12.5' in page
    assert key not in page and "ann@example.com" not in page
    assert "[REDACTED:" in page


def test_a_dry_run_shows_its_planned_change_and_policy_decisions(
    client: TestClient, flowrun: Flowrun, env: dict[str, str]
) -> None:
    review(flowrun, "d1", live=False)
    csrf = login(client)
    r = client.post(
        "/approvals/d1/approve/approve",
        data={"csrf": csrf, "by": "lead", "d_amount_usd": "7", "d_channel": "card"},
    )
    assert r.status_code == 200
    assert rows(env["FLOWRUN_SUPPORT_DB"], "SELECT COUNT(*) FROM refunds") == [(0,)]
    page = client.get("/runs/d1").text
    assert "Planned changes" in page and "planned change at <code>act</code>" in page
    assert "O-5005" in page.split("Planned changes")[1]
    assert "Policy decisions" in page


def test_an_identities_file_logs_people_in_and_a_removed_entry_is_out_at_once(
    flowrun: Flowrun, env: dict[str, str], tmp_path: Path
) -> None:
    review(flowrun, "f1")
    review(flowrun, "f2")
    ids = tmp_path / "identities.yaml"
    entry = (
        "identities:\n"
        "  - name: carol\n"
        "    roles: [support-leads]\n"
        f"    token_sha256: {token_hash('carol-token')}\n"
    )
    ids.write_text(entry)
    config = ConsoleConfig(
        store_path=Path(env["FLOWRUN_STORE"]), token=None, identities=ids, env=env
    )
    with TestClient(create_app(config), base_url="http://127.0.0.1:8765") as c:
        assert c.post("/login", data={"token": TOKEN}).status_code == 401  # no shared token
        csrf = login(c, "carol-token")
        r = c.post("/approvals/f1/approve/reject", data={"csrf": csrf, "reason": "no"})
        assert r.status_code == 200 and "rejected by carol" in r.text
        allowed = rows(env["FLOWRUN_STORE"], "SELECT data FROM events WHERE run_id = 'f1' "
                       "AND type = 'access_allowed'")  # fmt: skip
        assert json.loads(str(allowed[0][0]))["source"] == str(ids)
        ids.write_text("identities: []\n")
        assert c.get("/inbox", follow_redirects=False).status_code == 303
        assert c.post("/login", data={"token": "carol-token"}).status_code == 401
    assert rows(env["FLOWRUN_STORE"], "SELECT status FROM approvals WHERE run_id = 'f2'") == [
        ("waiting",)
    ]


def test_the_shared_token_acts_as_itself_and_cannot_decide_assigned_approvals(
    client: TestClient, flowrun: Flowrun, env: dict[str, str]
) -> None:
    review(flowrun, "s1")
    csrf = login(client, TOKEN)
    assert "shared token" in client.get("/").text
    r = client.post(
        "/approvals/s1/approve/approve",
        data={"csrf": csrf, "d_amount_usd": "1", "d_channel": "card"},
    )
    assert r.status_code == 403 and "assigned approvals need a personal login" in r.text
    assert rows(env["FLOWRUN_STORE"], "SELECT status FROM approvals WHERE run_id = 's1'") == [
        ("waiting",)
    ]
    assert client.post("/writes", data={"csrf": csrf, "state": "off"}).status_code == 200
    assert rows(env["FLOWRUN_STORE"], "SELECT changed_by FROM switches") == [
        ("shared-console-token",)
    ]


def test_a_personal_token_is_not_taken_from_a_url(client: TestClient) -> None:

    assert client.get(f"/login?token={LEAD_TOKEN}", follow_redirects=False).status_code == 401
    assert client.get(f"/login?token={TOKEN}", follow_redirects=False).status_code == 303
