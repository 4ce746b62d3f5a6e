"""Who may act at the console, over real HTTP against `flowrun serve`: personal logins,
assignees, separation of duties, the operator role, revocation at once, the audit trail."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.conftest import ROOT, SPECS, Flowrun, csrf_of, make_env, make_flowrun, rows

pytestmark = pytest.mark.slow  # a console process and a few flowrun processes

REVIEW = str(SPECS / "ticket_review.yaml")
DECISION = {"d_amount_usd": "12.5", "d_channel": "card"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("who")
    env = make_env(tmp)
    flowrun = make_flowrun(env)
    tokens: dict[str, str] = {}
    for name, roles in (
        ("lead", "support-leads,operator"),
        ("erin", "support-leads"),
        ("frank", "approver"),
    ):
        added = flowrun("users", "add", name, "--role", roles, "--tenant", "*")
        assert added.returncode == 0, added.stderr
        tokens[name] = added.stdout.strip()
    for run_id, actor in (("mine", "erin"), ("theirs", "dave"), ("later", "dave")):
        proc = flowrun(
            "execute", REVIEW, "--input-json", json.dumps({"ticket_id": "T-1005"}),
            "--run-id", run_id, "--live", "--actor", actor,
        )  # fmt: skip
        assert proc.returncode == 6, proc.stderr
    port = _port()
    server = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env={k: v for k, v in env.items() if k != "FLOWRUN_CONSOLE_TOKEN"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(base + "/login", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert server.poll() is None, server.communicate()
        assert time.monotonic() < deadline, "the console did not start"
        time.sleep(0.1)
    try:
        yield {"base": base, "env": env, "flowrun": flowrun, "tokens": tokens}
    finally:
        server.terminate()
        _, err = server.communicate(timeout=20)
        # no shared token was made: the store has users
        assert "?token=" not in err, err


def session(site: dict[str, Any], name: str) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=site["base"], timeout=60)
    r = c.post("/login", data={"token": site["tokens"][name]})
    assert r.status_code == 303, r.text
    return c, csrf_of(c.get("/").text)


def approval(site: dict[str, Any], run_id: str) -> list[tuple[object, ...]]:
    return rows(
        site["env"]["FLOWRUN_STORE"],
        f"SELECT status, decided_by FROM approvals WHERE run_id = '{run_id}'",
    )


def events(site: dict[str, Any], run_id: str, type_: str) -> list[dict[str, Any]]:
    found = rows(
        site["env"]["FLOWRUN_STORE"],
        f"SELECT data FROM events WHERE run_id = '{run_id}' AND type = '{type_}' ORDER BY id",
    )
    return [json.loads(str(d)) for (d,) in found]


def test_an_approver_outside_the_assignees_gets_403_and_nothing_changes(
    site: dict[str, Any],
) -> None:
    frank, csrf = session(site, "frank")
    inbox = frank.get("/inbox").text
    assert "You cannot decide this one" in inbox and "not among the assignees" in inbox
    r = frank.post("/approvals/theirs/approve/approve", data={"csrf": csrf, **DECISION})
    assert r.status_code == 403 and "not among the assignees" in r.text
    # a name typed into the form changes nothing either
    r = frank.post(
        "/approvals/theirs/approve/approve", data={"csrf": csrf, "by": "lead", **DECISION}
    )
    assert r.status_code == 403
    assert approval(site, "theirs") == [("waiting", None)]
    assert rows(site["env"]["FLOWRUN_SUPPORT_DB"], "SELECT COUNT(*) FROM refunds") == [(0,)]
    refused = events(site, "theirs", "access_refused")
    assert [(e["identity"], e["action"], e["via"]) for e in refused] == [
        ("frank", "approve", "console"),
        ("frank", "approve", "console"),
    ]
    # kill and the writes switch need the operator role
    assert frank.post("/runs/theirs/kill", data={"csrf": csrf}).status_code == 403
    assert frank.post("/writes", data={"csrf": csrf, "state": "off"}).status_code == 403
    assert rows(site["env"]["FLOWRUN_STORE"], "SELECT kill_requested FROM runs WHERE "
                "run_id = 'theirs'") == [(0,)]  # fmt: skip
    assert rows(site["env"]["FLOWRUN_STORE"], "SELECT COUNT(*) FROM switches "
                "WHERE value = 'off'") == [(0,)]  # fmt: skip
    assert 'id="kill-form"' not in frank.get("/runs/theirs").text


def test_the_runs_own_requester_cannot_approve_it(site: dict[str, Any]) -> None:
    erin, csrf = session(site, "erin")
    r = erin.post("/approvals/mine/approve/approve", data={"csrf": csrf, **DECISION})
    assert r.status_code == 403 and "separation of duties" in r.text
    r = erin.post("/approvals/mine/approve/reject", data={"csrf": csrf, "reason": "mine"})
    assert r.status_code == 403
    assert approval(site, "mine") == [("waiting", None)]
    assert [e["identity"] for e in events(site, "mine", "access_refused")] == ["erin", "erin"]


def test_an_assignee_decides_as_itself_and_the_trail_names_it(site: dict[str, Any]) -> None:
    lead, csrf = session(site, "lead")
    r = lead.post(
        "/approvals/theirs/approve/approve", data={"csrf": csrf, "by": "mallory", **DECISION}
    )
    assert r.status_code == 303, r.text
    assert approval(site, "theirs") == [("approved", "lead")]
    assert events(site, "theirs", "approval_approved") == [{"by": "lead", "reason": None}]
    allowed = events(site, "theirs", "access_allowed")
    assert [(e["identity"], e["kind"], e["action"]) for e in allowed] == [
        ("lead", "user", "approve")
    ]
    # the operator kills another run, as itself
    assert lead.post("/runs/later/kill", data={"csrf": csrf}).status_code == 303
    assert events(site, "later", "kill_requested")[0]["by"] == "lead"


def test_a_revoked_user_is_out_at_once(site: dict[str, Any]) -> None:
    erin, csrf = session(site, "erin")
    assert erin.get("/inbox").status_code == 200
    revoked = site["flowrun"]("users", "revoke", "erin")
    assert revoked.returncode == 0, revoked.stderr
    # the same session, the next request: logged out; the token no longer logs in
    assert erin.get("/inbox").status_code == 303
    r = erin.post("/approvals/mine/approve/reject", data={"csrf": csrf, "reason": "x"})
    assert r.status_code == 403
    again = httpx.post(site["base"] + "/login", data={"token": site["tokens"]["erin"]})
    assert again.status_code == 401
    assert approval(site, "mine") == [("waiting", None)]


def test_no_unauthenticated_console_beyond_loopback(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    flowrun: Flowrun = make_flowrun(env)
    assert flowrun("writes", "on").returncode == 0  # a store without users
    bare = flowrun("serve", "--host", "0.0.0.0", "--port", str(_port()), timeout=120)
    assert bare.returncode == 2
    assert "refusing to serve beyond loopback without authentication" in bare.stderr
    assert "Traceback" not in bare.stderr
    assert flowrun("users", "add", "ops", "--role", "operator").returncode == 0
    shared = flowrun(
        "serve", "--host", "0.0.0.0", "--port", str(_port()), "--token", "x" * 20, timeout=120
    )
    assert shared.returncode == 2 and "accepted on loopback only" in shared.stderr
