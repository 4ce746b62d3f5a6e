"""What crosses the wire between client, workflow and activities: plain JSON-shaped dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunInput:
    """Everything a run needs, so that its history replays by itself (spec text, digest, inputs)."""

    run_id: str
    spec_text: str
    spec_path: str
    spec_digest: str
    profile: str | None
    inputs: dict[str, Any]
    store_path: str
    responses_path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # live, scopes, max_usd
    tenant: str | None = None
    actor: str | None = None
    interpreter_version: int = 1
    # the plan bundle (runner/plan/bundle.py Bundle.to_json()): spec, prompts, policy files,
    # subflows, MCP locks; None in inputs recorded before bundles, which compile the spec text
    bundle: dict[str, Any] | None = None


@dataclass
class NodeTask:
    """One activity node: the plan by reference (spec text), its needs' views, the spend so far."""

    run: RunInput
    node_id: str
    views: dict[str, dict[str, Any]]
    spent: dict[str, float]  # usd, tokens, llm_calls, tool_calls of the nodes finished so far
    attempt: int = 1  # 1, then one more after each park: as the local backend counts attempts
    opens: bool = False  # the attempt's first activity: it writes the transcript's run_started


@dataclass
class FinishTask:
    """Record the workflow-evaluated nodes and the run's outcome (or parking) in the store."""

    run_id: str
    store_path: str
    nodes: list[dict[str, Any]]
    run: dict[str, Any]  # RunResult.to_json()
    terminal: bool
    # what the attempt's run span and transcript lines need (None in histories from before them)
    input: RunInput | None = None
    attempt: int = 1
    started_at: float | None = None
    opens: bool = False  # no activity ran in the attempt: this one writes run_started too
