"""The console's readiness page: each workflow's five gates and its write tools' autonomy.

Each workflow is judged with the spec of its latest run (from the run's plan bundle, never the
files on disk now), exactly as `flowrun readiness` judges a spec file (runner/runs/readiness.py).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from runner.errors import FlowrunError
from runner.runs.identity import Forbidden, audit

if TYPE_CHECKING:
    from runner.web.app import Console


def workflows(store: Any, tenant: str | None) -> list[dict[str, Any]]:
    """Per workflow of the store: its readiness report (JSON), or why it could not be judged."""
    from runner.readiness_cli import readiness_of
    from runner.runs import plan_of

    out: list[dict[str, Any]] = []
    for wf in store.workflows():
        latest = store.list_runs(workflow=wf, limit=1)
        if not latest:
            continue
        try:
            report = readiness_of(store, plan_of(latest[0], store), tenant=tenant, since=None)
        except FlowrunError as e:
            out.append({"workflow": wf, "report": None, "error": e.message})
            continue
        out.append({"workflow": wf, "report": report.to_json(), "error": None})
    return out


async def readiness_page(c: Console, request: Request) -> Response:
    tenant = request.query_params.get("tenant") or None
    who = c.me(request)
    with contextlib.closing(c.runs_()) as r:
        if not who.for_tenant(tenant):  # another tenant's figures: 403, audited
            reason = f"{who.name!r} does not act for tenant {tenant!r}"
            audit(r.store, who, action="view readiness", allowed=False, via="console",
                  reason=reason)  # fmt: skip
            raise Forbidden(f"view refused: {reason}")
        rows = workflows(r.store, tenant)
    return c.page(request, "readiness.html", workflows=rows, tenant=tenant)
