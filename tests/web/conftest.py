"""A private store and support database per test, runs started as an operator starts them."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from runner.runs.identity import token_hash
from runner.store import open_store
from runner.web import ConsoleConfig, create_app
from tests.durable.conftest import process_env

ROOT = Path(__file__).resolve().parents[2]
SPECS = Path(__file__).parent / "specs"
DURABLE_SPECS = ROOT / "tests" / "durable" / "specs"
REFERENCE = ROOT / "specs" / "support_refund.yaml"
EXAMPLES = ROOT / "examples"
TOKEN = "console-test-token"  # the shared, loopback-only console token
# a person who may decide the test specs' approvals (assignees: support-leads) and operate
LEAD = "lead"
LEAD_TOKEN = "lead-personal-test-token"
LEAD_ROLES = ("support-leads", "approver", "operator")
XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"

Flowrun = Callable[..., subprocess.CompletedProcess[str]]


def make_env(tmp: Path) -> dict[str, str]:
    """A store, a seeded support database and a tool log under `tmp`."""
    e = process_env(tmp, DTOOLS_LOG=str(tmp / "dtools.log"))
    e.pop("FLOWRUN_CONSOLE_TOKEN", None)
    return e


def add_lead(store: str | Path, name: str = LEAD, token: str = LEAD_TOKEN, **kw: object) -> None:
    """A user with a known token (tests log in with it; `flowrun users add` makes random ones)."""
    s = open_store(store)
    try:
        s.identity_add(
            name,
            kind="user",
            roles=list(kw.get("roles", LEAD_ROLES)),  # type: ignore[call-overload]
            tenants=list(kw.get("tenants", ["*"])),  # type: ignore[call-overload]
            scopes=[],
            live=False,
            token_sha256=token_hash(token),
            by="test",
        )
    finally:
        s.close()


def make_flowrun(env: dict[str, str]) -> Flowrun:
    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runner.cli", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def refund_case(name: str, run_id: str) -> list[str]:
    return [
        "execute",
        str(REFERENCE),
        "--input",
        str(EXAMPLES / "inputs" / f"{name}.json"),
        "--responses",
        str(EXAMPLES / "responses" / f"{name}.jsonl"),
        "--run-id",
        run_id,
    ]


def set_ticket_body(env: dict[str, str], ticket_id: str, body: str) -> None:
    """Untrusted text enters through the helpdesk: the ticket a run reads."""
    with sqlite3.connect(env["FLOWRUN_SUPPORT_DB"]) as c:
        c.execute("UPDATE tickets SET body = ? WHERE ticket_id = ?", (body, ticket_id))


def rows(db: str, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as c:
        return c.execute(sql).fetchall()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    e = make_env(tmp_path)
    for k in ("FLOWRUN_STORE", "FLOWRUN_SUPPORT_DB", "DTOOLS_LOG"):
        monkeypatch.setenv(k, e[k])
    return e


@pytest.fixture
def flowrun(env: dict[str, str]) -> Flowrun:
    return make_flowrun(env)


@pytest.fixture
def client(env: dict[str, str], flowrun: Flowrun) -> Iterator[TestClient]:
    """A console over the test's store (created by a first run if the test made none)."""
    if not Path(env["FLOWRUN_STORE"]).exists():
        assert flowrun("writes", "on").returncode == 0
    add_lead(env["FLOWRUN_STORE"])
    config = ConsoleConfig(
        store_path=Path(env["FLOWRUN_STORE"]), token=TOKEN, resume_wait_s=30, env=env
    )
    with TestClient(create_app(config), base_url="http://127.0.0.1:8765") as c:
        yield c


def login(client: TestClient, token: str = LEAD_TOKEN) -> str:
    """Log in (as the lead, unless another token is given); the CSRF token of the session."""
    r = client.post("/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/").text)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)
