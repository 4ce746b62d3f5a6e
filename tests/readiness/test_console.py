"""The console's readiness page: each workflow's gates and its write tools' autonomy levels."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from runner.runs.autonomy import demote
from runner.store import Store
from runner.web.app import ConsoleConfig, create_app
from tests.readiness.conftest import new_run, plan_of, seed

TOKEN = "t" * 32


def test_readiness_page_shows_gates_and_autonomy(store: Store, target: str) -> None:
    refund, incident = plan_of("support_refund"), plan_of("incident_triage")
    seed(store, refund)
    seed(store, incident)
    new_run(store, incident, cost=50.0)  # incident triage's cost gate fails
    demote(store, refund, "issue_refund", tenant=None, to="approval", by="lead",
           reason="<b>new prompt</b>")  # fmt: skip
    config = ConsoleConfig(store_path=target, token=TOKEN)
    with TestClient(create_app(config), base_url="http://127.0.0.1:8765") as client:
        assert client.get("/readiness", follow_redirects=False).status_code == 303  # login first
        r = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
        assert r.status_code == 303
        page = client.get("/readiness")
        assert page.status_code == 200
        html = page.text
    sections = dict(re.findall(r'<section class="card readiness" id="wf-([^"]+)">(.*?)</section>',
                               html, re.S))  # fmt: skip
    assert set(sections) == {"support-refund", "incident-triage"}
    gates = {
        wf: dict(re.findall(r'data-gate="([^"]+)" data-status="([^"]+)"', body))
        for wf, body in sections.items()
    }
    assert gates["support-refund"] == dict.fromkeys(gates["support-refund"], "pass")
    assert len(gates["support-refund"]) == 5
    assert gates["incident-triage"]["cost_control"] == "fail"
    assert gates["incident-triage"]["task_success"] == "pass"
    levels = dict(
        re.findall(r'data-tool="([^"]+)" data-level="([^"]+)"', sections["support-refund"])
    )
    assert levels == {"add_note": "autonomous", "issue_refund": "approval"}
    assert "&lt;b&gt;new prompt&lt;/b&gt;" in html and "<b>new prompt</b>" not in html
    assert "p95 cost per completed task" in sections["incident-triage"]
