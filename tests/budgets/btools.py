"""Tools for the budgets tests; `send` appends each call's time to the file $BTOOLS_LOG."""

from __future__ import annotations

import fcntl
import json
import os
import time
from typing import Any


def sms(to: str) -> dict[str, Any]:
    return {"sent": to}


def geocode(query: str) -> dict[str, Any]:
    """Bills what the provider says in its answer (a longer query costs more, in this double)."""
    return {"place": query.upper(), "billing": {"usd": round(0.001 * len(query), 6)}}


async def send(to: str) -> dict[str, Any]:
    """Async, so nothing is scheduled between the rate limit's admission and this call."""
    at = time.time()
    with open(os.environ["BTOOLS_LOG"], "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps({"at": at, "to": to, "pid": os.getpid()}) + "\n")
    return {"sent": to}
