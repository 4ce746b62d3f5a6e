"""A hook that acts as a client (docs/identities.md): its runs are that client's, for its
tenant, holding at most the scopes and the live permission it was granted; an unknown or
revoked client, or one of another tenant, starts nothing (403, an audit event)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import Any

import pytest

from runner.runs import Runs
from tests.intake.conftest import REVIEW, ROOT, wait_for
from tests.intake.test_hooks import BODY, runs_in, status_of

pytestmark = pytest.mark.slow

HOOKS = f"""  as-mailer:
    spec: {REVIEW}
    secret_env: TICKET_HOOK_SECRET
    identity: mailer
    inputs: {{ticket_id: /ticket/id}}
    live: true
    scopes: [refunds:read, refunds:write]
  other-tenant:
    spec: {REVIEW}
    secret_env: TICKET_HOOK_SECRET
    identity: mailer
    tenant: globex
    inputs: {{ticket_id: /ticket/id}}
"""


def users(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", "users", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


def refusals(server: Any) -> list[dict[str, Any]]:
    with contextlib.closing(Runs.open(server.env["FLOWRUN_STORE"])) as r:
        return [e["data"] for e in r.store.events(run_id="*", type_="access_refused")]


def test_a_hook_acts_as_its_client_within_its_grant(serve: Any, env: dict[str, str]) -> None:
    added = users(env, "add", "mailer", "--client", "--tenant", "acme", "--scope", "refunds:read")
    assert added.returncode == 0, added.stderr
    s = serve(command="intake", extra=HOOKS)
    status, answer, _ = s.post("as-mailer", BODY, delivery="m-1")
    assert status == 202, answer
    run_id = answer["run_id"]
    assert wait_for(lambda: status_of(s, run_id) not in (None, "running"))
    with contextlib.closing(Runs.open(s.env["FLOWRUN_STORE"])) as r:
        row = r.get(run_id)
    # the client's name and tenant; the hook's scopes within the client's; not live, since
    # the client may not write for real although the hook asks for it
    assert (row.actor, row.tenant) == ("mailer", "acme")
    assert row.options is not None
    assert row.options["scopes"] == ["refunds:read"] and row.options["live"] is False

    # a tenant the client does not act for: refused, audited, nothing started
    status, answer, _ = s.post("other-tenant", BODY, delivery="m-2")
    assert status == 403 and "globex" in answer["error"], answer
    assert [x["identity"] for x in refusals(s)] == ["mailer"]

    # revoked: the next delivery is refused at once, and may be sent again once fixed
    assert users(env, "revoke", "mailer").returncode == 0
    status, answer, _ = s.post("as-mailer", BODY, delivery="m-3")
    assert status == 403 and "mailer" in answer["error"], answer
    assert [r.run_id for r in runs_in(s)] == [run_id]
    assert len(refusals(s)) == 2
