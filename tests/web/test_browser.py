"""The console in headless Chromium: log in, approve, reject, kill, writes switch, XSS, CSRF."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import (
    LEAD,
    LEAD_TOKEN,
    ROOT,
    SPECS,
    TOKEN,
    XSS,
    add_lead,
    make_env,
    make_flowrun,
    rows,
    set_ticket_body,
)

CHROMIUM = Path("/usr/bin/chromium")
MERMAID = ROOT / "tests" / "review" / "browser" / "node_modules" / "mermaid" / "dist"
MERMAID_ESM = MERMAID / "mermaid.esm.min.mjs"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REVIEW = str(SPECS / "ticket_review.yaml")


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return "chromium is not installed (run tests/review/browser/setup.sh)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real `flowrun serve` over a store holding runs that wait for approval."""
    why = _missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("console")
    env = make_env(tmp)
    flowrun = make_flowrun(env)
    set_ticket_body(env, "T-1004", XSS)
    add_lead(env["FLOWRUN_STORE"])
    for run_id, ticket in (("b-approve", "T-1005"), ("b-reject", "T-1001"), ("b-xss", "T-1004")):
        proc = flowrun(
            "execute",
            REVIEW,
            "--input-json",
            json.dumps({"ticket_id": ticket}),
            "--run-id",
            run_id,
            "--live",
        )
        assert proc.returncode == 6, proc.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "runner.cli", "serve", "--port", str(port), "--token", TOKEN]
    if MERMAID_ESM.exists():
        args += ["--mermaid", str(MERMAID_ESM)]
    server = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(base + "/login", timeout=2) as r:
                assert r.status == 200
            break
        except OSError:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            assert time.monotonic() < deadline, "the console did not start"
            time.sleep(0.1)
    shots = Path(os.environ.get("FLOWRUN_SCREENSHOTS") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    try:
        yield {"base": base, "env": env, "flowrun": flowrun, "shots": shots}
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(console: dict[str, Any]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, console: dict[str, Any]) -> Iterator[Any]:
    """A logged-in page; every dialog is recorded (and confirmations accepted)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.dialogs = []

    def on_dialog(d: Any) -> None:
        pg.dialogs.append((d.type, d.message))
        d.accept()

    pg.on("dialog", on_dialog)
    pg.goto(console["base"] + "/")
    assert pg.url.endswith("/login")
    pg.fill("input[name=token]", LEAD_TOKEN)
    pg.click("form.login button")
    pg.wait_for_url(console["base"] + "/")
    try:
        yield pg
    finally:
        ctx.close()


def _status(pg: Any, status: str, timeout: float = 20_000) -> None:
    from playwright.sync_api import expect

    expect(pg.locator("#run-status")).to_contain_text(status, timeout=timeout)


def test_log_in_and_approve_a_waiting_run_to_completion(page: Any, console: dict[str, Any]) -> None:
    page.click("#nav-inbox")
    card = page.locator("article[data-run=b-approve]")
    assert "Refund on O-5005 for T-1005" in card.locator(".summary").inner_text()
    assert "waiting" in card.locator(".sla").inner_text()
    page.screenshot(path=str(console["shots"] / "inbox.png"), full_page=True)
    form = card.locator("form.approve")
    form.locator("input[name=d_amount_usd]").fill("12.5")
    form.locator("select[name=d_channel]").select_option("voucher")
    form.locator("button[type=submit]").click()
    _status(page, "succeeded")
    assert LEAD in page.locator("#approvals").inner_text()
    if MERMAID_ESM.exists():
        page.wait_for_selector("#graph[data-rendered=yes] svg", timeout=20_000)
        assert page.locator("#graph svg .node").count() == 3
    page.screenshot(path=str(console["shots"] / "run.png"), full_page=True)
    for name in ("inbox.png", "run.png"):
        assert (console["shots"] / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    refunds = rows(console["env"]["FLOWRUN_SUPPORT_DB"], "SELECT order_id, amount_usd FROM refunds")
    assert ("O-5005", 12.5) in refunds
    assert not [d for d in page.dialogs if d[0] == "alert"]


def test_reject_a_waiting_run(page: Any, console: dict[str, Any]) -> None:
    page.goto(console["base"] + "/inbox")
    form = page.locator("article[data-run=b-reject] form.reject")
    form.locator("input[name=reason]").fill("needs photos")
    form.locator("button[type=submit]").click()
    _status(page, "denied")
    assert "rejected by lead: needs photos" in page.locator("#run-reason").inner_text()


def test_kill_a_running_run(page: Any, console: dict[str, Any]) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "execute",
            str(SPECS / "slow.yaml"),
            "--run-id",
            "b-slow",
        ],
        cwd=ROOT,
        env=console["env"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        store = console["env"]["FLOWRUN_STORE"]
        deadline = time.monotonic() + 300
        while rows(store, "SELECT COUNT(*) FROM node_results WHERE run_id = 'b-slow'") == [(0,)]:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        page.goto(console["base"] + "/runs/b-slow")
        _status(page, "running")
        page.click("#kill-form button")
        assert proc.wait(timeout=30) == 7
        _status(page, "killed")
        assert ("confirm", "Kill run b-slow?") in page.dialogs
        done = rows(store, "SELECT COUNT(*) FROM node_results WHERE run_id = 'b-slow'")[0][0]
        assert isinstance(done, int) and done < 12
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def test_flip_the_writes_switch(page: Any, console: dict[str, Any]) -> None:
    store = console["env"]["FLOWRUN_STORE"]
    page.click("#writes-form button")
    page.wait_for_selector("#writes-state:has-text('writes OFF')")
    assert rows(store, "SELECT value, changed_by FROM switches") == [("off", LEAD)]
    page.click("#writes-form button")
    page.wait_for_selector("#writes-state:has-text('writes on')")
    assert rows(store, "SELECT value FROM switches") == [("on",)]


def test_a_stored_xss_in_a_ticket_is_inert(page: Any, console: dict[str, Any]) -> None:
    page.goto(console["base"] + "/inbox")
    summary = page.locator("article[data-run=b-xss] .summary").inner_text()
    assert XSS in summary
    page.goto(console["base"] + "/runs/b-xss")
    assert XSS in page.locator("#node-intake pre.output").inner_text()
    page.goto(console["base"] + "/runs/b-xss/trace")
    page.wait_for_timeout(500)
    assert page.locator("img[src=x]").count() == 0
    assert not page.dialogs


def test_requests_without_the_token_or_csrf_are_refused(
    browser: Any, page: Any, console: dict[str, Any]
) -> None:
    base = console["base"]
    anon = browser.new_context()
    try:
        p = anon.new_page()
        p.goto(base + "/runs/b-approve")
        assert p.url == base + "/login?next=%2Fruns%2Fb-approve" and "Refund on" not in p.content()
        r = anon.request.post(base + "/writes", form={"state": "off", "by": "eve"})
        assert r.status == 403
    finally:
        anon.close()
    r = page.context.request.post(base + "/writes", form={"state": "off", "by": "eve"})
    assert r.status == 403
    r = page.context.request.post(base + "/runs/b-xss/kill", form={"by": "eve", "csrf": "0" * 64})
    assert r.status == 403
    assert rows(
        console["env"]["FLOWRUN_STORE"], "SELECT status FROM runs WHERE run_id = 'b-xss'"
    ) == [("waiting",)]
