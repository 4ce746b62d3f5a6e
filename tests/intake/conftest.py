"""A real `flowrun serve --hooks` (or `flowrun intake`) on 127.0.0.1, a port of its own."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runner.signing import DELIVERY_HEADER, sign
from tests.durable.conftest import process_env

ROOT = Path(__file__).resolve().parents[2]
REVIEW = ROOT / "tests" / "web" / "specs" / "ticket_review.yaml"
TOKEN = "intake-console-token"
SECRET = "s3cret-for-the-ticket-hook-0123456789"
OLD_SECRET = "old-secret-for-the-ticket-hook-9876543210"


@dataclass
class Server:
    base: str
    env: dict[str, str]
    proc: subprocess.Popen[str]

    def post(
        self,
        hook: str,
        body: bytes,
        *,
        delivery: str | None = "d-1",
        secret: str = SECRET,
        now: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        h = {"Content-Type": "application/json", **sign(secret, body, now=now)}
        if delivery is not None:
            h[DELIVERY_HEADER] = delivery
        h.update(headers or {})
        req = urllib.request.Request(f"{self.base}/hooks/{hook}", data=body, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read()), {k.lower(): v for k, v in r.headers.items()}
        except urllib.error.HTTPError as e:
            return (
                e.code,
                json.loads(e.read() or b"{}"),
                {k.lower(): v for k, v in e.headers.items()},
            )


def hooks_yaml(tmp: Path, extra: str = "") -> Path:
    path = tmp / "hooks.yaml"
    path.write_text(
        f"""hooks:
  ticket-review:
    spec: {REVIEW}
    secret_env: [TICKET_HOOK_SECRET, TICKET_HOOK_SECRET_OLD]
    tenant: acme
    inputs: {{ticket_id: /ticket/id}}
    max_body_bytes: 2048
  limited:
    spec: {REVIEW}
    secret_env: TICKET_HOOK_SECRET
    inputs: {{ticket_id: /ticket/id}}
    rate_limit: {{requests: 2, per_s: 3600}}
{extra}"""
    )
    return path


def start(args: list[str], env: dict[str, str]) -> Server:
    """Start a flowrun server and wait until it answers (its URL is on stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    base = None
    said = []
    for line in proc.stderr:
        said.append(line)
        m = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if m:
            base = m.group(1)
            break
    assert base, f"the server printed no URL (exit {proc.wait()}): {''.join(said)}"
    deadline = time.monotonic() + 120
    while True:  # the URL is printed just before uvicorn binds
        try:
            urllib.request.urlopen(base + "/hooks/", timeout=2)
        except urllib.error.HTTPError:
            break
        except OSError:
            assert proc.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
    return Server(base=base, env=env, proc=proc)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return process_env(
        tmp_path,
        DTOOLS_LOG=str(tmp_path / "dtools.log"),
        TICKET_HOOK_SECRET=SECRET,
        TICKET_HOOK_SECRET_OLD=OLD_SECRET,
    )


@pytest.fixture
def serve(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(
        *,
        extra: str = "",
        command: str = "serve",
        env_extra: dict[str, str] | None = None,
        port: int = 0,
    ) -> Server:
        e = {**env, **(env_extra or {})}
        hooks = hooks_yaml(tmp_path, extra)
        if command == "serve":
            subprocess.run(
                [sys.executable, "-m", "runner.cli", "writes", "on"],
                cwd=ROOT,
                env=e,
                check=True,
                capture_output=True,
            )
            args = ["serve", "--port", str(port), "--token", TOKEN, "--hooks", str(hooks)]
        else:
            args = ["intake", "--port", str(port), "--hooks", str(hooks)]
        s = start(args, e)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.proc.terminate()
        s.proc.wait(timeout=20)


def wait_for(check: Callable[[], Any], timeout: float = 120) -> Any:
    """Poll `check` until it returns something truthy (a run reaching a state)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A tiny webhook receiver: records every POST; answers `fail_first` of them with 500."""

    def __init__(self, fail_first: int = 0, status: int = 200) -> None:
        self.got: list[Received] = []
        self.fail_first = fail_first
        self.status = status
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.cond:
                    outer.got.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    code = 500 if len(outer.got) <= outer.fail_first else outer.status
                    outer.cond.notify_all()
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, n: int, timeout: float = 120) -> list[Received]:
        """Block until `n` requests arrived (an event, not a sleep)."""
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got) >= n, timeout), self.got
            return list(self.got)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
