"""A tool that hands its arguments back: what a run's input becomes in a tool's result."""

from __future__ import annotations


def echo(text: str, key: str) -> dict[str, str]:
    return {"seen": text, "key_tail": key[-6:], "key": key}
