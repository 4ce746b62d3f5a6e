"""Signed webhooks start runs over real HTTP; every refusal starts nothing."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from runner.runs import Runs
from tests.intake.conftest import OLD_SECRET, REVIEW, Server, wait_for

pytestmark = pytest.mark.slow

BODY = json.dumps({"ticket": {"id": "T-1005", "channel": "email"}}).encode()


def runs_in(server: Server) -> list[Any]:
    with contextlib.closing(Runs.open(server.env["FLOWRUN_STORE"])) as r:
        return r.list_runs(limit=1000)


def status_of(server: Server, run_id: str) -> str | None:
    with contextlib.closing(Runs.open(server.env["FLOWRUN_STORE"])) as r:
        try:
            return r.get(run_id).status
        except Exception:
            return None


def test_a_signed_webhook_starts_a_run_and_returns_its_id(serve: Any) -> None:
    s = serve()
    t0 = time.monotonic()
    status, answer, _ = s.post("ticket-review", BODY, delivery="evt-1")
    answered_s = time.monotonic() - t0
    assert status == 202, answer
    run_id = answer["run_id"]
    assert answer["duplicate"] is False
    assert wait_for(lambda: status_of(s, run_id) == "waiting")
    with contextlib.closing(Runs.open(s.env["FLOWRUN_STORE"])) as r:
        row = r.get(run_id)
        assert row.inputs == {"ticket_id": "T-1005"}
        assert row.tenant == "acme" and row.actor == "hook:ticket-review"
        assert [a["node_id"] for a in r.inbox(run_id)] == ["approve"]
    assert answered_s < 30  # answered before the run's work, not after
    # the same delivery again: nothing new, the first run's id
    status, again, _ = s.post("ticket-review", BODY, delivery="evt-1")
    assert (status, again["run_id"], again["duplicate"]) == (200, run_id, True)
    assert [r.run_id for r in runs_in(s)] == [run_id]


def test_refusals_start_nothing(serve: Any) -> None:
    s = serve(command="intake")
    cases = [
        ("wrong signature", dict(secret="not-the-secret-of-this-hook-at-all"), 401),
        ("old timestamp", dict(now=time.time() - 301), 401),
        ("future timestamp", dict(now=time.time() + 400), 401),
        ("no delivery id", dict(delivery=None), 400),
    ]
    for what, kw, want in cases:
        status, answer, _ = s.post("ticket-review", BODY, **kw)
        assert status == want, (what, answer)
    # the signature is over the exact bytes: a changed body fails it
    status, answer, _ = s.post(
        "ticket-review", BODY, headers={"Content-Length": str(len(BODY))}, delivery="x"
    )
    assert status == 202  # control: the same request signed right is accepted
    first = answer["run_id"]
    assert wait_for(lambda: status_of(s, first) == "waiting")
    # an oversized body (2048 bytes is this hook's limit)
    big = json.dumps({"ticket": {"id": "T-1005", "pad": "x" * 3000}}).encode()
    status, answer, _ = s.post("ticket-review", big, delivery="big")
    assert status == 413, answer
    # a body failing the input schema names the pointer of the failure
    bad = json.dumps({"ticket": {"id": 42}}).encode()
    status, answer, _ = s.post("ticket-review", bad, delivery="bad-1")
    assert status == 400 and answer["pointer"] == "/ticket/id", answer
    assert answer["input_pointer"] == "/ticket_id"
    status, answer, _ = s.post("ticket-review", b'{"ticket": {}}', delivery="bad-2")
    assert status == 400 and answer["pointer"] == "/ticket/id", answer
    status, answer, _ = s.post("ticket-review", b"not json", delivery="bad-3")
    assert status == 400, answer
    status, answer, _ = s.post("ticket-review", b"[" * 1020 + b"]" * 1020, delivery="bad-4")
    assert status == 400 and "nested too deeply" in answer["error"], answer
    status, answer, _ = s.post("nope", BODY, delivery="n")
    assert status == 404
    try:
        urllib.request.urlopen(f"{s.base}/hooks/ticket-review", timeout=30)
        raise AssertionError("a GET was answered")
    except urllib.error.HTTPError as e:
        assert (e.code, e.headers["Allow"]) == (405, "POST")
    assert [r.run_id for r in runs_in(s)] == [first]
    # a refused delivery id was not used up: sent right, it starts its run
    status, answer, _ = s.post("ticket-review", bad.replace(b"42", b'"T-1001"'), delivery="bad-1")
    assert status == 202, answer


def test_rotation_accepts_the_old_secret_too(serve: Any) -> None:
    s = serve(command="intake")
    status, answer, _ = s.post("ticket-review", BODY, secret=OLD_SECRET, delivery="rot")
    assert status == 202, answer
    assert wait_for(lambda: status_of(s, answer["run_id"]) == "waiting")


def test_rate_limit_per_hook_answers_429_with_retry_after(serve: Any) -> None:
    s = serve(command="intake")
    got = [s.post("limited", BODY, delivery=f"r{i}") for i in range(3)]
    assert [g[0] for g in got] == [202, 202, 429]
    retry = int(got[2][2]["retry-after"])
    assert 1 <= retry <= 3600
    # another hook has its own budget
    other = s.post("ticket-review", BODY, delivery="other")
    assert other[0] == 202
    ids = [g[1]["run_id"] for g in got[:2]] + [other[1]["run_id"]]
    for run_id in ids:
        assert wait_for(lambda run_id=run_id: status_of(s, run_id) == "waiting")
    assert len(runs_in(s)) == 3


def test_concurrent_copies_of_one_delivery_start_one_run(serve: Any) -> None:
    s = serve(command="intake")
    answers: list[tuple[int, dict[str, Any], dict[str, str]]] = []
    go = threading.Barrier(6)

    def send() -> None:
        go.wait()
        answers.append(s.post("ticket-review", BODY, delivery="same"))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a[0] for a in answers) == [200] * 5 + [202]
    assert len({a[1]["run_id"] for a in answers}) == 1
    run_id = answers[0][1]["run_id"]
    assert wait_for(lambda: status_of(s, run_id) == "waiting")
    assert len(runs_in(s)) == 1


@pytest.mark.skipif(
    not (shutil.which("openssl") and shutil.which("curl")), reason="needs openssl and curl"
)
def test_the_documented_curl_and_openssl_recipe_works(serve: Any) -> None:
    s = serve(command="intake")
    script = f"""
set -eu
body='{{"ticket": {{"id": "T-1001"}}}}'
ts=$(date +%s)
sig=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$TICKET_HOOK_SECRET" | sed 's/^.* //')
curl -sS -X POST {s.base}/hooks/ticket-review \\
  -H 'Content-Type: application/json' \\
  -H "X-Flowrun-Timestamp: $ts" \\
  -H "X-Flowrun-Signature: v1=$sig" \\
  -H 'X-Flowrun-Delivery: evt-0001' \\
  -w '\\n%{{http_code}}' \\
  --data-binary "$body"
"""
    proc = subprocess.run(
        ["bash", "-c", script], env=s.env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    answer, code = proc.stdout.rsplit("\n", 1)
    assert code == "202", proc.stdout
    run_id = json.loads(answer)["run_id"]
    assert wait_for(lambda: status_of(s, run_id) == "waiting")


def test_a_chunked_body_is_cut_off_at_the_limit(serve: Any) -> None:
    """No Content-Length to refuse up front: the body is counted as it arrives."""
    import http.client
    from urllib.parse import urlsplit

    s = serve(command="intake")
    big = json.dumps({"ticket": {"id": "T-1005", "pad": "x" * 5000}}).encode()
    u = urlsplit(s.base)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=30)
    try:
        headers = {"Content-Type": "application/json", **sign_headers(big, "chunked-1")}
        chunks = (big[i : i + 1000] for i in range(0, len(big), 1000))
        conn.request("POST", "/hooks/ticket-review", body=chunks, headers=headers,
                     encode_chunked=True)  # fmt: skip
        resp = conn.getresponse()
        assert resp.status == 413, resp.read()
    finally:
        conn.close()
    assert runs_in(s) == []


def sign_headers(body: bytes, delivery: str) -> dict[str, str]:
    from runner.signing import DELIVERY_HEADER, sign
    from tests.intake.conftest import SECRET

    return {**sign(SECRET, body), DELIVERY_HEADER: delivery}


def test_on_postgresql_too_a_replayed_delivery_starts_nothing(
    serve: Any, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = {"HOME": str(tmp_path / "home"), "FLOWRUN_STORE_DIR": str(tmp_path / "local")}
    for k, v in local.items():
        monkeypatch.setenv(k, v)
    s = serve(command="intake", env_extra={"FLOWRUN_STORE": pg_url, **local})
    answers: list[tuple[int, dict[str, Any], dict[str, str]]] = []
    go = threading.Barrier(4)

    def send() -> None:
        go.wait()
        answers.append(s.post("ticket-review", BODY, delivery="pg-same"))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a[0] for a in answers) == [200, 200, 200, 202]
    (run_id,) = {a[1]["run_id"] for a in answers}
    assert wait_for(lambda: status_of(s, run_id) == "waiting")
    assert [r.run_id for r in runs_in(s)] == [run_id]
    assert s.post("ticket-review", BODY, delivery="pg-other")[0] == 202


def test_a_delivery_id_taken_from_the_signed_body_cannot_be_changed_by_a_replayer(
    serve: Any,
) -> None:
    extra = f"""  by-event:
    spec: {REVIEW}
    secret_env: TICKET_HOOK_SECRET
    inputs: {{ticket_id: /ticket/id}}
    delivery_id: /event_id
"""
    s = serve(command="intake", extra=extra)
    body = json.dumps({"event_id": "evt_91", "ticket": {"id": "T-1005"}}).encode()
    first = s.post("by-event", body, delivery="header-a")
    again = s.post("by-event", body, delivery="header-b")  # a new header, the same event
    assert (first[0], again[0]) == (202, 200)
    assert again[1]["run_id"] == first[1]["run_id"]
    status, answer, _ = s.post("by-event", b'{"ticket": {"id": "T-1005"}}', delivery="h")
    assert status == 400 and answer["pointer"] == "/event_id", answer
    assert wait_for(lambda: status_of(s, first[1]["run_id"]) == "waiting")
    assert len(runs_in(s)) == 1
