"""unknown-model (in a profile): a profile may only re-route aliases that `models` defines."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runner.errors import Diagnostic
from runner.plan.names import did_you_mean

RULE = "unknown-model"


def check(compiler: Any) -> Iterable[Diagnostic]:
    spec = compiler.spec
    for pname, aliases in spec.profiles.items():
        for alias in aliases:
            if alias not in spec.models:
                yield compiler.src.diag(
                    ("profiles", pname, alias),
                    RULE,
                    f"profile {pname!r} routes alias {alias!r}, which `models` does not define",
                    hint=did_you_mean(alias, spec.models)
                    or "define the alias under `models` first",
                    key=True,
                )
