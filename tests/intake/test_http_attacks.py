"""Hostile deliveries over real HTTP: each gets its status and a short JSON reason, never a 500,
and starts nothing (no run, no delivery recorded)."""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from runner.signing import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.durable.conftest import process_env
from tests.intake.conftest import OLD_SECRET, SECRET, Server, hooks_yaml, start, wait_for
from tests.intake.test_hooks import status_of

pytestmark = pytest.mark.slow  # one server process for the module

BODY = b'{"ticket": {"id": "T-1005"}}'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("intake-attacks")
    env = process_env(
        tmp,
        DTOOLS_LOG=str(tmp / "dtools.log"),
        TICKET_HOOK_SECRET=SECRET,
        TICKET_HOOK_SECRET_OLD=OLD_SECRET,
    )
    s = start(["intake", "--port", "0", "--hooks", str(hooks_yaml(tmp))], env)
    yield s
    s.proc.terminate()
    s.proc.wait(timeout=20)


def send(
    s: Server,
    body: bytes,
    headers: dict[str, str | None] | None = None,
    *,
    method: str = "POST",
    hook: str = "ticket-review",
    delivery: str | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One request with exactly these headers (None drops a default one)."""
    h: dict[str, str | None] = {
        "Content-Type": "application/json",
        DELIVERY_HEADER: delivery or f"atk-{time.monotonic_ns()}",
        **sign(SECRET, body),
        **(headers or {}),
    }
    u = urlsplit(s.base)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=30)
    try:
        conn.putrequest(method, f"/hooks/{hook}", skip_accept_encoding=True)
        for k, v in h.items():
            if v is not None:
                conn.putheader(k, v.encode("latin-1"))
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        raw = r.read()
        answer = json.loads(raw) if raw else {}
        return r.status, answer, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def recorded(s: Server) -> tuple[int, int]:
    """(runs, deliveries) in the store."""
    with sqlite3.connect(Path(s.env["FLOWRUN_STORE"])) as c:
        runs = c.execute("SELECT count(*) FROM runs").fetchone()[0]
        deliveries = c.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    return int(runs), int(deliveries)


def store_exists(s: Server) -> bool:
    return Path(s.env["FLOWRUN_STORE"]).exists()


def before(s: Server) -> tuple[int, int]:
    return recorded(s) if store_exists(s) else (0, 0)


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        ({TIMESTAMP_HEADER: None}, "missing"),
        ({SIGNATURE_HEADER: ""}, "missing"),
        ({SIGNATURE_HEADER: "t=1,v2=abc"}, "no 'v1=<hex>'"),
        ({SIGNATURE_HEADER: "v1=not-hex-at-all"}, "does not match"),
        ({SIGNATURE_HEADER: "v1=\xe9\xe9"}, "does not match"),
        ({SIGNATURE_HEADER: ",".join(["v1=00"] * 9)}, "no 'v1=<hex>'"),
        ({SIGNATURE_HEADER: "v1=" + "a" * 6000}, "does not match"),
        ({TIMESTAMP_HEADER: "-5"}, "Unix time"),
        ({TIMESTAMP_HEADER: "9" * 400}, "Unix time"),
        ({TIMESTAMP_HEADER: "99999999999"}, "from this server's clock"),
        ({TIMESTAMP_HEADER: "1e9"}, "Unix time"),
    ],
    ids=[
        "no-t",
        "empty",
        "no-v1",
        "non-hex",
        "non-ascii",
        "too-many",
        "huge",
        "negative-t",
        "overflow-t",
        "future-t",
        "float-t",
    ],
)
def test_a_malformed_signature_or_timestamp_gets_401(
    server: Server, headers: dict[str, str | None], said: str
) -> None:
    was = before(server)
    status, answer, _ = send(server, BODY, headers)
    assert status == 401 and said in answer["error"], answer
    assert before(server) == was


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"ticket": {"id": "T-1"}, "ticket": {"id": "T-1005"}}', "duplicate key 'ticket'"),
        (b'{"ticket": {"id": "T-1005"}, "n": NaN}', "NaN is not a JSON value"),
        (b'{"ticket": {"id": "T-1005"}, "n": -Infinity}', "-Infinity is not a JSON value"),
        (b'{"ticket": {"id": "T-\\ud800"}}', "lone surrogate"),
        (b'{"ticket": {"id": "T-\xff"}}', "not UTF-8"),
        (b"ticket=T-1005", "not JSON"),
        (b"", "not JSON"),
        (b"[" * 1020 + b"]" * 1020, "nested too deeply"),
    ],
    ids=["duplicate-key", "nan", "infinity", "lone-surrogate", "bad-utf8", "form", "empty", "deep"],
)
def test_a_body_that_is_not_strict_json_gets_400(server: Server, body: bytes, said: str) -> None:
    was = before(server)
    status, answer, _ = send(server, body)
    assert status == 400 and said in answer["error"], answer
    assert before(server) == was


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "json"]
)
def test_a_body_not_sent_as_json_gets_415(server: Server, content_type: str | None) -> None:
    was = before(server)
    status, answer, _ = send(server, BODY, {"Content-Type": content_type})
    assert status == 415 and "application/json" in answer["error"], answer
    assert before(server) == was


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "OPTIONS", "DELETE"])
def test_other_methods_get_405_and_unknown_hooks_404_alike(server: Server, method: str) -> None:
    status, _, headers = send(server, b"", method=method)
    assert (status, headers.get("allow")) == (405, "POST")
    for name in ("nope", "ticket-review/x", "limited%2F..", ""):
        status, answer, _ = send(server, BODY, method=method, hook=name)
        assert status == 404, (name, answer)
        # it names what was asked for, never the hooks that exist
        assert "ticket-review'" not in answer.get("error", "") and "limited'" not in str(answer)


def test_content_length_lies_are_refused(server: Server) -> None:
    u = urlsplit(server.base)
    signed = sign(SECRET, BODY)
    head = (
        "POST /hooks/ticket-review HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"{DELIVERY_HEADER}: cl-lie\r\nConnection: close\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in signed.items())
    )
    was = before(server)
    for length, status in (
        ("-1", 400),
        (str(len(BODY) - 5), 401),
        ("9" * 18, 413),
        ("9" * 30, 400),
    ):
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), 30) as c:
            c.sendall(f"{head}Content-Length: {length}\r\n\r\n".encode() + BODY)
            got = b""
            while chunk := c.recv(65536):
                got += chunk
        assert got.startswith(f"HTTP/1.1 {status} ".encode()), (length, got[:200])
        assert b"Traceback" not in got
    assert before(server) == was


def test_a_replayed_delivery_with_another_body_starts_nothing_new(server: Server) -> None:
    status, first, _ = send(server, BODY, delivery="replayed-1")
    assert status == 202, first
    # the 202 comes before the run is recorded: wait for it, then count
    wait_for(lambda: status_of(server, first["run_id"]) is not None, timeout=60)
    was = before(server)
    other = b'{"ticket": {"id": "T-1001"}}'
    status, answer, _ = send(server, other, delivery="replayed-1")
    assert (status, answer) == (200, {"run_id": first["run_id"], "duplicate": True})
    assert before(server) == was
