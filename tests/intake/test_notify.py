"""A run that waits for approval reaches the approvers' webhooks, with a working console link."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest

from runner.errors import SpecError
from runner.runs import Runs
from runner.runs.notify import load_config, nearing_window, scan
from runner.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.intake.conftest import (
    ROOT,
    Receiver,
    free_port,
)
from tests.intake.test_hooks import BODY, status_of
from tests.web.conftest import LEAD_TOKEN, add_lead

AUDIT_SECRET = "audit-receiver-secret-0123456789"
PLANNED = ROOT / "tests" / "intake" / "specs" / "planned.yaml"


def notify_yaml(tmp: Path, console: str, receiver: Receiver, **top: Any) -> Path:
    path = tmp / "notify.yaml"
    extra = "".join(f"{k}: {v}\n" for k, v in top.items())
    path.write_text(
        f"""console_url: {console}
backoff_s: 0
{extra}targets:
  slack: {{url_env: SLACK_APPROVALS_URL, format: slack}}
  audit: {{url: {receiver.url}/audit, format: json, secret_env: AUDIT_SECRET}}
"""
    )
    return path


def notify_env(tmp: Path, console: str, receiver: Receiver, **top: Any) -> dict[str, str]:
    return {
        "FLOWRUN_NOTIFY": str(notify_yaml(tmp, console, receiver, **top)),
        "SLACK_APPROVALS_URL": receiver.url + "/slack/T000/B000/XXXX",
        "AUDIT_SECRET": AUDIT_SECRET,
    }


@pytest.mark.slow
def test_a_waiting_approval_reaches_the_receiver_with_a_working_link(
    serve: Any, receiver: Receiver, tmp_path: Path
) -> None:
    port = free_port()
    console = f"http://127.0.0.1:{port}"
    s = serve(port=port, env_extra=notify_env(tmp_path, console, receiver))
    status, answer, _ = s.post("ticket-review", BODY, delivery="n-1")
    assert status == 202, answer
    run_id = answer["run_id"]
    got = {r.path.split("/")[1]: r for r in receiver.wait(2)}
    assert status_of(s, run_id) == "waiting"
    # Slack: an incoming-webhook message with a button to the approval
    msg = json.loads(got["slack"].body)
    link = f"{console}/inbox#approval-{run_id}-approve"
    assert run_id in msg["text"] and link in msg["text"]
    button = msg["blocks"][-1]["elements"][0]
    assert button["url"] == link
    assert "Refund on O-5005 for T-1005" in json.dumps(msg["blocks"])
    # the generic form, signed as deliveries in are
    audit = got["audit"]
    verify(
        [AUDIT_SECRET],
        audit.body,
        audit.headers[TIMESTAMP_HEADER.lower()],
        audit.headers[SIGNATURE_HEADER.lower()],
    )
    body = json.loads(audit.body)
    assert body["event"] == "approval.waiting" and body["run_id"] == run_id
    assert body["node_id"] == "approve" and body["assignees"] == ["support-leads"]
    assert body["approval_url"] == link and body["tenant"] == "acme"
    # the link works: a logged-in approver lands on the approval
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    add_lead(s.env["FLOWRUN_STORE"])  # an approver among the approval's assignees
    opener.open(urllib.request.Request(f"{console}/login", data=f"token={LEAD_TOKEN}".encode()))
    with opener.open(link) as r:
        page = r.read().decode()
        assert r.status == 200 and r.url.startswith(f"{console}/inbox")
    assert f'id="approval-{run_id}-approve"' in page
    assert f'action="/approvals/{run_id}/approve/approve"' in page
    # sent once each, and on record
    with contextlib.closing(Runs.open(s.env["FLOWRUN_STORE"])) as r:
        notices = {(n["target"], n["kind"], n["status"]) for n in r.store.notices(run_id)}
        assert notices == {("slack", "waiting", "sent"), ("audit", "waiting", "sent")}
        assert len(r.store.events(run_id, "approval_notified")) == 2


def execute_waiting(env: dict[str, str], run_id: str) -> subprocess.CompletedProcess[str]:
    from tests.intake.conftest import REVIEW

    return subprocess.run(
        [
            sys.executable, "-m", "runner.cli", "execute", str(REVIEW),
            "--input-json", '{"ticket_id": "T-1005"}', "--run-id", run_id,
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_failing_receiver_is_retried_then_recorded_and_never_fails_the_run(
    env: dict[str, str], tmp_path: Path
) -> None:
    down = Receiver(status=500)
    try:
        e = {**env, **notify_env(tmp_path, "http://console.example", down, retries=3)}
        proc = execute_waiting(e, "nf-1")
        assert proc.returncode == 6, proc.stderr  # waiting, as without notices
        got = down.wait(6)  # 3 tries for each of the two targets
        assert len(got) == 6
    finally:
        down.close()
    with contextlib.closing(Runs.open(env["FLOWRUN_STORE"])) as r:
        failed = r.store.events("nf-1", "notify_failed")
        assert sorted(f["data"]["target"] for f in failed) == ["audit", "slack"]
        assert all(f["data"]["attempts"] == 3 and f["data"]["error"] == "HTTP 500" for f in failed)
        assert "/slack/" not in json.dumps(failed)  # the (secret) URL is not on record
        assert r.get("nf-1").status == "waiting"


def test_a_flaky_receiver_gets_the_notice_on_a_retry(env: dict[str, str], tmp_path: Path) -> None:
    flaky = Receiver(fail_first=1)
    try:
        e = {**env, **notify_env(tmp_path, "http://console.example", flaky)}
        e["FLOWRUN_NOTIFY"] = str(tmp_path / "one.yaml")
        Path(e["FLOWRUN_NOTIFY"]).write_text(
            "console_url: http://console.example\nbackoff_s: 0\n"
            f"targets:\n  audit: {{url: {flaky.url}/audit}}\n"
        )
        assert execute_waiting(e, "nf-2").returncode == 6
        assert len(flaky.wait(2)) == 2
    finally:
        flaky.close()
    with contextlib.closing(Runs.open(env["FLOWRUN_STORE"])) as r:
        (n,) = r.store.notices("nf-2")
        assert (n["status"], n["attempts"]) == ("sent", 2)


def test_nearing_and_passed_timeouts_are_noticed_once(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    assert execute_waiting(env, "nt-1").returncode == 6  # no notify file: nothing sent
    assert receiver.got == []
    for k, v in notify_env(tmp_path, "http://console.example", receiver, nearing_s=600).items():
        monkeypatch.setenv(k, v)
    with contextlib.closing(Runs.open(env["FLOWRUN_STORE"])) as r:
        (a,) = r.inbox("nt-1")
        due = a["timeout_at"]
        scan(r.store, now=due - 3600)  # an hour before: only the waiting notice
        kinds = [json.loads(x.body)["event"] for x in receiver.wait(2) if "/audit" in x.path]
        assert kinds == ["approval.waiting"]
        scan(r.store, now=due - 60)
        scan(r.store, now=due - 30)  # nothing new: once each
        got = receiver.wait(4)
        scan(r.store, now=due + 1)
        got = receiver.wait(6)
        kinds = [json.loads(x.body)["event"] for x in got if "/audit" in x.path]
        assert kinds == ["approval.waiting", "approval.nearing", "approval.timed_out"]
        assert len(got) == 6


def test_a_broken_notify_file_is_a_diagnostic(tmp_path: Path) -> None:
    path = tmp_path / "notify.yaml"
    path.write_text(
        "console_url: console.example\ntargets:\n  s: {url_env: NOPE, format: teams, evnts: []}\n"
    )
    with pytest.raises(SpecError) as e:
        load_config(path, env={})
    text = e.value.render()
    assert f"{path}:1:14: bad-value: 'console_url' must be the console's http(s) base URL" in text
    assert f"{path}:3:37: unknown-key: unknown key 'evnts'" in text
    assert f"{path}:3:30: bad-value: unknown format 'teams'" in text
    assert f"{path}:3:16: notify-env-unset: environment variable 'NOPE' is not set" in text


@pytest.mark.slow
def test_runs_parked_where_nobody_listened_are_noticed_by_sweep_and_by_serve(
    env: dict[str, str], serve: Any, receiver: Receiver, tmp_path: Path
) -> None:
    assert execute_waiting(env, "quiet-1").returncode == 6  # no notify file yet
    assert receiver.got == []
    extra = notify_env(tmp_path, "http://console.example", receiver, poll_s=1)
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "sweep"],
        cwd=ROOT, env={**env, **extra}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = receiver.wait(2)
    assert {json.loads(g.body)["run_id"] for g in got if "/audit" in g.path} == {"quiet-1"}
    assert execute_waiting(env, "quiet-2").returncode == 6
    serve(env_extra=extra)  # its loop finds quiet-2 (quiet-1 went out once already)
    got = receiver.wait(4)
    audit = [json.loads(g.body)["run_id"] for g in got if "/audit" in g.path]
    assert audit == ["quiet-1", "quiet-2"]


def test_a_notice_carries_the_planned_changes_redacted(
    env: dict[str, str], tmp_path: Path, receiver: Receiver
) -> None:
    e = {**env, **notify_env(tmp_path, "https://flowrun.example.com", receiver)}
    proc = subprocess.run(
        [
            sys.executable, "-m", "runner.cli", "execute", str(PLANNED),
            "--input-json", '{"order_id": "O-77", "amount_usd": 12.5}', "--run-id", "pc-1",
        ],
        cwd=ROOT, env=e, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 6, proc.stderr
    got = {r.path.split("/")[1]: r for r in receiver.wait(2)}
    body = json.loads(got["audit"].body)
    assert body["summary"] == "Confirm the refund of 12.5 USD on O-77"
    assert body["timeout_at"] - body["requested_at"] == pytest.approx(7200, abs=5)
    (change,) = body["planned_changes"]  # recorded twice by the write, sent once
    assert change["node_id"] == "act" and change["tool"] == "refund"
    assert change["change"]["after"] == {"refunded_usd": 12.5}
    assert change["change"]["notify"] == "[REDACTED:email]"
    slack_text = json.dumps(json.loads(got["slack"].body))
    assert "Planned changes" in slack_text and "refunded_usd" in slack_text
    assert "maya@example.com" not in slack_text and "maya@example.com" not in json.dumps(body)
    assert "https://flowrun.example.com/inbox#approval-pc-1-confirm" in slack_text


def test_nearing_is_at_most_the_last_quarter_of_the_wait(tmp_path: Path) -> None:
    path = tmp_path / "n.yaml"
    path.write_text("console_url: http://c\ntargets: {a: {url: 'http://r'}}\n")
    config = load_config(path, env={})
    assert config.nearing_s == 3600
    ten_minutes = {"requested_at": 1000.0, "timeout_at": 1600.0}
    assert nearing_window(config, ten_minutes) == 150.0
    a_day = {"requested_at": 0.0, "timeout_at": 86400.0}
    assert nearing_window(config, a_day) == 3600.0
