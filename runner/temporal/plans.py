"""Plans compiled from the bundle a run carries, cached per process by digest (workflow and
activities): a worker needs the tools' Python package, never the project's spec folder."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from runner.errors import UsageError

if TYPE_CHECKING:
    from runner.plan.model import Plan
    from runner.temporal.types import RunInput

_PLANS: dict[tuple[str, str, str | None, float | None, bool], Plan] = {}


def _in_sandbox() -> bool:
    from temporalio import workflow

    return workflow.unsafe.in_sandbox()


def plan_for(run: RunInput) -> Plan:
    """The run's own plan: compiled once per process from the files the run carries.

    An input from before plan bundles (a recorded history) carries the spec text alone; it
    compiles as it did then."""
    max_usd = run.options.get("max_usd")
    digest = run.bundle["digest"] if run.bundle is not None else run.spec_digest
    # a plan compiled inside the workflow sandbox holds the sandbox's copies of the tool modules
    # (bound to its restricted pathlib, datetime, ...): activities compile their own
    key = (digest, run.spec_path, run.profile, max_usd, _in_sandbox())
    plan = _PLANS.get(key)
    if plan is not None:
        return plan
    if hashlib.sha256(run.spec_text.encode()).hexdigest() != run.spec_digest:
        raise UsageError(f"run {run.run_id!r}: the spec text does not match its digest")
    from runner.plan.bundle import Bundle
    from runner.plan.compile import compile_bundle, compile_plan
    from runner.spec import load_spec_text

    if run.bundle is not None:
        plan = compile_bundle(Bundle.from_json(run.bundle), run.spec_path, run.profile)
    else:
        plan = compile_plan(load_spec_text(run.spec_text, run.spec_path), run.profile)
    if max_usd is not None:
        plan = plan.with_max_usd(float(max_usd))
    _PLANS[key] = plan
    return plan
