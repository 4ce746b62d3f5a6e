"""`flowrun mcp serve --http` with client tokens, over real HTTP: 401 without a valid token, a
client's runs act as it with at most its granted scopes and live permission, approvals through
MCP bound to assignees and separation of duties, revocation at once, an audit trail."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow  # a server process and a few flowrun processes

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REFUND = HERE / "served_refund.yaml"
READ = HERE / "served_read.yaml"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def flowrun(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("mcp-auth")
    store = tmp / "runs.db"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FLOWRUN_STORE": str(store),
        "MCP_STOOLS_LOG": str(tmp / "filed.jsonl"),
    }
    tokens: dict[str, str] = {}
    for name, *flags in (
        ("reader", "--scope", "refunds:read", "--tenant", "acme"),
        ("writer", "--scope", "refunds:read,refunds:write", "--live", "--tenant", "acme",
         "--role", "refund-leads"),
        ("lead", "--role", "refund-leads", "--tenant", "acme"),
        ("stranger", "--role", "refund-leads", "--tenant", "globex"),
    ):  # fmt: skip
        added = flowrun(env, "users", "add", name, "--client", *flags)
        assert added.returncode == 0, added.stderr
        tokens[name] = added.stdout.strip()
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "mcp", "serve", str(REFUND), str(READ),
         "--http", f"127.0.0.1:{port}", "--scopes", "refunds:read,refunds:write", "--live",
         "--operate"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None, proc.communicate()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the server did not listen in time"
            time.sleep(0.2)
    try:
        yield {"url": url, "env": env, "store": store, "tokens": tokens, "tmp": tmp}
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
        assert "bearer tokens required" in err, err


def rows(site: dict[str, Any], sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(site["store"]) as c:
        return c.execute(sql).fetchall()


def calls(site: dict[str, Any], who: str, *todo: tuple[str, dict[str, Any]]) -> list[Any]:
    """Tool calls as client `who` through the SDK's client, each answer's JSON or error text."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async def go() -> list[Any]:
        http = create_mcp_http_client(headers={"authorization": f"Bearer {site['tokens'][who]}"})
        out: list[Any] = []
        async with Client(streamable_http_client(site["url"], http_client=http),
                          read_timeout_seconds=120) as c:  # fmt: skip
            for name, args in todo:
                got = await c.call_tool(name, args)
                out.append(got.content[0].text if got.is_error else got.structured_content)
        return out

    return asyncio.run(asyncio.wait_for(go(), timeout=240))


def test_a_request_without_a_valid_token_gets_401(site: dict[str, Any]) -> None:
    bare = httpx.post(site["url"], json=INIT, headers=HEADERS, timeout=30)
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    wrong = httpx.post(
        site["url"], json=INIT, headers={**HEADERS, "authorization": "Bearer fr_nope"}, timeout=30
    )
    assert wrong.status_code == 401
    right = httpx.post(
        site["url"],
        json=INIT,
        headers={**HEADERS, "authorization": f"Bearer {site['tokens']['reader']}"},
        timeout=30,
    )
    assert right.status_code == 200, right.text


def test_a_client_granted_refunds_read_cannot_start_a_run_that_writes_refunds(
    site: dict[str, Any],
) -> None:
    before = rows(site, "SELECT COUNT(*) FROM runs")[0][0]
    refused, doubled = calls(
        site, "reader", ("refunder", {"text": "r", "amount": 5}), ("doubler", {"n": 4})
    )
    assert isinstance(refused, str) and "start refused" in refused
    assert "refunds:write" in refused
    assert rows(site, "SELECT COUNT(*) FROM runs")[0][0] == before + 1  # only the doubler's
    assert doubled["status"] == "succeeded" and doubled["outputs"] == {"double": 8}
    actor, tenant, options = rows(
        site, f"SELECT actor, tenant, options FROM runs WHERE run_id = '{doubled['run_id']}'"
    )[0]
    assert (actor, tenant) == ("reader", "acme")
    opts = json.loads(options)
    assert opts["scopes"] == ["refunds:read"] and opts["live"] is False  # not a live client
    assert opts["client"] == "reader"
    audit = [
        json.loads(d)
        for (d,) in rows(site, "SELECT data FROM events WHERE type = 'access_refused'")
    ]
    assert any(a["identity"] == "reader" and a["action"] == "start refunder" for a in audit)


def test_approvals_through_mcp_are_bound_to_assignees_and_not_the_requester(
    site: dict[str, Any],
) -> None:
    (small, big) = calls(
        site,
        "writer",
        ("refunder", {"text": "small", "amount": 5}),
        ("refunder", {"text": "big", "amount": 50}),
    )
    assert small["status"] == "succeeded" and small["outputs"] == {"filed": True}  # live
    filed = (site["tmp"] / "filed.jsonl").read_text().splitlines()
    assert [json.loads(x)["text"] for x in filed] == ["small"]
    assert big["status"] == "waiting"
    run_id = big["run_id"]
    approve = ("flowrun.approve", {"run_id": run_id, "node": "approve", "by": "lead"})
    (own,) = calls(site, "writer", approve)
    assert isinstance(own, str) and "separation of duties" in own
    (outsider,) = calls(site, "reader", approve)
    assert isinstance(outsider, str) and "not among the assignees" in outsider
    (elsewhere,) = calls(site, "stranger", approve)
    # refused without being told which tenant the run belongs to
    assert isinstance(elsewhere, str) and "does not act for this run's tenant" in elsewhere
    assert "acme" not in elsewhere
    (kill,) = calls(site, "lead", ("flowrun.kill", {"run_id": run_id}))
    assert isinstance(kill, str) and "'operator' role" in kill
    assert rows(site, f"SELECT status FROM approvals WHERE run_id = '{run_id}'") == [("waiting",)]
    (done,) = calls(site, "lead", approve)
    assert done["decided"] == "approved" and done["status"] == "succeeded", done
    assert rows(site, f"SELECT decided_by FROM approvals WHERE run_id = '{run_id}'") == [("lead",)]
    trail = [
        (t, json.loads(d).get("identity"))
        for t, d in rows(
            site,
            f"SELECT type, data FROM events WHERE run_id = '{run_id}' AND type LIKE 'access_%' "
            "ORDER BY id",
        )
    ]
    assert trail == [
        ("access_allowed", "writer"),  # started it
        ("access_refused", "writer"),
        ("access_refused", "reader"),
        ("access_refused", "stranger"),
        ("access_refused", "lead"),  # kill without the operator role
        ("access_allowed", "lead"),
    ]


def test_a_revoked_token_stops_working_at_once(site: dict[str, Any]) -> None:
    added = flowrun(site["env"], "users", "add", "temp", "--client", "--tenant", "acme")
    assert added.returncode == 0, added.stderr
    auth = {**HEADERS, "authorization": f"Bearer {added.stdout.strip()}"}
    assert httpx.post(site["url"], json=INIT, headers=auth, timeout=30).status_code == 200
    assert flowrun(site["env"], "users", "revoke", "temp").returncode == 0
    # the running server, the next request: refused, without a restart
    assert httpx.post(site["url"], json=INIT, headers=auth, timeout=30).status_code == 401


def test_no_unauthenticated_http_beyond_loopback(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOWRUN_STORE": str(tmp_path / "s.db")}
    res = flowrun(env, "mcp", "serve", str(READ), "--http", f"0.0.0.0:{_port()}")
    assert res.returncode == 2
    assert "refusing to serve beyond loopback without authentication" in res.stderr
    assert "Traceback" not in res.stderr


def test_clients_from_an_identities_file_and_an_entry_removed_is_out_at_once(
    tmp_path: Path,
) -> None:
    from runner.runs.identity import token_hash

    ids = tmp_path / "identities.yaml"
    ids.write_text(
        "identities:\n"
        "  - name: ci-bot\n"
        "    kind: client\n"
        f"    token_sha256: {token_hash('ci-bot-token')}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOWRUN_STORE": str(tmp_path / "s.db")}
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "mcp", "serve", str(READ), "--http",
         f"127.0.0.1:{port}", "--identities", str(ids)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/mcp"
    auth = {**HEADERS, "authorization": "Bearer ci-bot-token"}
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not listen in time"
                time.sleep(0.2)
        assert httpx.post(url, json=INIT, headers=HEADERS, timeout=30).status_code == 401
        assert httpx.post(url, json=INIT, headers=auth, timeout=30).status_code == 200
        ids.write_text("identities: []\n")
        assert httpx.post(url, json=INIT, headers=auth, timeout=30).status_code == 401
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
