"""duplicate-policy-id: decisions are recorded by rule id, so every policy rule needs its own."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runner.errors import Diagnostic

RULE = "duplicate-policy-id"


def check(compiler: Any) -> Iterable[Diagnostic]:
    seen: dict[str, int] = {}
    for i, p in enumerate(compiler.spec.policies):
        if p.id in seen:
            yield compiler.src.diag(
                ("policies", i, "id"),
                RULE,
                f"policy id {p.id!r} is used twice (first at policies[{seen[p.id]}])",
                hint="decisions are recorded by id: give every rule its own",
            )
        seen.setdefault(p.id, i)
