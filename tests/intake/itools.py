"""A tool that hands its arguments back: what a run's input becomes in a tool's result."""

from __future__ import annotations


def echo(text: str, key: str) -> dict[str, str]:
    return {"seen": text, "key_tail": key[-6:], "key": key}


def plan_refund(order_id: str, amount_usd: float) -> dict[str, object]:
    """The refund as it would be made: what a dry run records as the planned change."""
    return {
        "order_id": order_id,
        "amount_usd": amount_usd,
        "notify": "maya@example.com",
        "before": {"refunded_usd": 0},
        "after": {"refunded_usd": amount_usd},
    }


def refund(order_id: str, amount_usd: float) -> dict[str, object]:
    return {"order_id": order_id, "refunded_usd": amount_usd}
