"""The web console on a PostgreSQL store: overview, inbox, an approval that continues the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from runner.web import ConsoleConfig, create_app
from tests.web.conftest import (
    TOKEN,
    Flowrun,
    add_lead,
    login,
    make_env,
    make_flowrun,
    refund_case,
    rows,
)


@pytest.fixture
def env(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    e = make_env(tmp_path)
    e.update(
        FLOWRUN_STORE=pg_url,
        FLOWRUN_STORE_DIR=str(tmp_path / "local"),
        HOME=str(tmp_path / "home"),
    )
    for k in ("FLOWRUN_STORE", "FLOWRUN_SUPPORT_DB", "DTOOLS_LOG", "FLOWRUN_STORE_DIR", "HOME"):
        monkeypatch.setenv(k, e[k])
    return e


@pytest.fixture
def flowrun(env: dict[str, str]) -> Flowrun:
    return make_flowrun(env)


@pytest.fixture
def client(env: dict[str, str]) -> Iterator[TestClient]:
    add_lead(env["FLOWRUN_STORE"])
    config = ConsoleConfig(store_path=env["FLOWRUN_STORE"], token=TOKEN, resume_wait_s=30, env=env)
    with TestClient(create_app(config), base_url="http://127.0.0.1:8765") as c:
        yield c


def test_the_console_approves_a_run_parked_in_postgres(
    flowrun: Flowrun, env: dict[str, str], client: TestClient
) -> None:
    parked = flowrun(
        *refund_case("refund_needs_approval", "p1"), "--live", "--scopes", "refunds:write"
    )
    assert parked.returncode == 6, parked.stderr
    csrf = login(client)
    assert client.get("/").status_code == 200
    inbox = client.get("/inbox").text
    assert "/approvals/p1/approve/approve" in inbox
    done = client.post("/approvals/p1/approve/approve", data={"csrf": csrf, "by": "lead"})
    assert done.status_code == 200, done.text
    assert "Approved; the run continues." in done.text
    assert 'id="run-status"><span class="status" style="background: #2e7d32">succeeded' in done.text
    assert rows(env["FLOWRUN_SUPPORT_DB"], "SELECT order_id FROM refunds") == [("O-5005",)]
    assert "Nothing waits for approval." in client.get("/inbox").text
