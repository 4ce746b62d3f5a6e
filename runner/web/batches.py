"""The console's batch pages (issue 24): every batch with its progress, and one batch's lines.

Read-only views over `runner.runs.batch`; each line links to its run's own page, where it is
operated on (approve, kill, undo) like any run.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runner.runs import batch as b
from runner.runs.identity import Forbidden, audit, not_its_tenant

if TYPE_CHECKING:
    from runner.web.app import Console

Handler = Callable[[Request], Awaitable[Response]]


def progress(item: dict[str, Any]) -> dict[str, Any]:
    """A batch with its progress: lines done (finished, failed as bad input or not started by
    the ceiling) and the share done."""
    counts: dict[str, int] = item["line_statuses"]
    done = sum(n for k, n in counts.items() if k in b.SEVERITY)
    total = int(item["lines"])
    return {**item, "done": done, "percent": round(100 * done / total) if total else 100}


def _tenant(row: dict[str, Any]) -> str | None:
    tenant = (row.get("options") or {}).get("tenant")
    return tenant if isinstance(tenant, str) else None


def routes(console: Console, guard: Callable[[Handler], Handler]) -> list[Route]:
    """`/batches` and `/batches/{batch_id}`, each behind the console's guard."""

    async def batches(request: Request) -> Response:
        who = console.me(request)
        with contextlib.closing(console.runs_()) as r:
            # a batch's runs act for its --tenant: batches of other tenants are not listed
            tenants = {x["batch_id"]: _tenant(x) for x in r.store.list_batches(limit=200)}
            items = [
                progress(x)
                for x in b.list_batches(r, limit=200)
                if who.for_tenant(tenants.get(x["batch_id"]))
            ]
        return console.page(request, "batches.html", batches=items)

    async def batch(request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        who = console.me(request)
        with contextlib.closing(console.runs_()) as r:
            row = b.batch_row(r, batch_id)  # NotFound: the console's 404 page
            tenant = _tenant(row)
            if not who.for_tenant(tenant):  # as a run's page: 403, audited
                reason = not_its_tenant(who, "batch")
                audit(r.store, who, action="view", allowed=False, via="console",
                      reason=f"batch {batch_id!r}: {reason}")  # fmt: skip
                raise Forbidden(f"view refused: {reason}")
            lines = b.outcomes(r, batch_id, live=True)
        counts = Counter(i["status"] for i in lines)
        item = progress(
            {
                "batch_id": batch_id,
                "workflow": row["workflow"],
                "status": b.batch_state(row),
                "lines": row["total"],
                "line_statuses": dict(sorted(counts.items())),
                "created_at": row["created_at"],
                "finished_at": row["finished_at"],
            }
        )
        finished = item["done"] == item["lines"]
        return console.page(
            request,
            "batch.html",
            batch=item,
            options=row["options"],
            lines=lines,
            summary=b.summarize(lines) if finished else None,
            spent=sum(float(i["cost_usd"]) for i in lines),
        )

    return [
        Route("/batches", guard(batches)),
        Route("/batches/{batch_id}", guard(batch)),
    ]
