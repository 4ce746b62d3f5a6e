"""Credentials checked before a run: a missing key fails the command at once, not node by node."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner.errors import UsageError

OFFLINE_HINT = (
    "or run offline: --profile local (the embedded model) or --responses FILE (recorded answers)"
)


class MissingCredentials(UsageError):
    """A model the run can call has no key here; nothing ran, nothing was recorded (exit 2)."""

    def __init__(self, missing: Mapping[str, tuple[str, ...]]) -> None:
        self.missing = dict(missing)  # environment variable -> the models that need it
        names = sorted(missing)
        lines = [f"{var} is not set (needed by {', '.join(missing[var])})" for var in names]
        super().__init__(
            "no credentials for a model this run can call:\n  " + "\n  ".join(lines),
            hint=f"set {' and '.join(names)}, {OFFLINE_HINT}",
        )


def check_credentials(models: Mapping[str, tuple[Mapping[str, Any], tuple[str, ...]]]) -> None:
    """Ask litellm's own environment check about each model (`local/` ids need no key).

    `models` is `plan.routes.plan_models(plan)`: model -> (route params, aliases). A key given in
    a route's params counts as set. litellm is imported only when a remote model is named.
    """
    remote = {m: v for m, v in models.items() if not m.startswith("local/")}
    if not remote:
        return
    from runner.models.client import ensure_litellm

    litellm = ensure_litellm()
    missing: dict[str, tuple[str, ...]] = {}
    for model, (params, aliases) in sorted(remote.items()):
        if params.get("api_key"):
            continue
        env = litellm.validate_environment(
            model=model,
            api_base=params.get("api_base"),
            api_version=params.get("api_version"),
        )
        if env.get("keys_in_environment"):
            continue
        label = f"{model} ({', '.join(repr(a) for a in aliases)})"
        for var in env.get("missing_keys") or ():
            missing[var] = (*missing.get(var, ()), label)
    if missing:
        raise MissingCredentials(missing)
