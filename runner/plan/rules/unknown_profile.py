"""unknown-profile: `--profile` must name a profile the spec defines."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runner.errors import Diagnostic
from runner.plan.names import did_you_mean

RULE = "unknown-profile"


def check(compiler: Any) -> Iterable[Diagnostic]:
    spec, profile = compiler.spec, compiler.profile
    if profile is None or profile in spec.profiles:
        return
    options = sorted(spec.profiles)
    known = (
        f"defined profiles: {', '.join(options)}" if options else "this spec defines no profiles"
    )
    yield compiler.src.diag(
        ("profiles",),
        RULE,
        f"--profile {profile!r} is not defined in this spec",
        hint=did_you_mean(profile, options) or known,
        key=True,
    )
