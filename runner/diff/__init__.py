"""Semantic diff of two spec versions for review: behaviour, risk and cost, not YAML lines."""

from __future__ import annotations

from typing import Any

from runner.diff.load import Side, load_arg, load_file_side, load_git_side
from runner.diff.semantic import FAIL_CLASSES, diff_sides


def diff_pair(base: Side, head: Side) -> dict[str, Any]:
    """The JSON-ready diff of two loaded sides."""
    return diff_sides(base, head)


__all__ = ["FAIL_CLASSES", "Side", "diff_pair", "load_arg", "load_file_side", "load_git_side"]
