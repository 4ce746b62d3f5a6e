"""Tools for the envelope tests: every real call and preview is appended to $ETOOLS_LOG."""

from __future__ import annotations

import json
import os


def _log(kind: str, **data: object) -> None:
    with open(os.environ["ETOOLS_LOG"], "a", encoding="utf-8") as f:
        f.write(json.dumps({"kind": kind, **data}) + "\n")


def read(key: str) -> dict[str, object]:
    """A read with untrusted text in its result."""
    _log("read", key=key)
    return {"key": key, "text": f"text of {key}", "amount": 30.0}


def pay(to: str, amount: float, idempotency_key: str | None = None) -> dict[str, object]:
    """A write: a payment."""
    _log("pay", to=to, amount=amount)
    return {"paid": amount, "to": to, "id": f"p-{to}"}


def plan_pay(to: str, amount: float, idempotency_key: str | None = None) -> dict[str, object]:
    """The dry-run stand-in for pay."""
    _log("plan_pay", to=to, amount=amount)
    return {
        "result": {"paid": amount, "to": to, "id": "p-planned"},
        "change": {"action": "pay", "to": to, "amount": amount},
    }


def logs() -> list[dict[str, object]]:
    path = os.environ["ETOOLS_LOG"]
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]
