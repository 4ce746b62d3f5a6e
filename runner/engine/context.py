"""What a node runner sees: the run's state, its own place in it, its inputs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.engine.budget import BudgetLedger
from runner.engine.results import NodeDetail, NodeResult, Usage
from runner.engine.telemetry import Telemetry

if TYPE_CHECKING:
    from runner.engine.hooks import Hooks
    from runner.engine.services import Services
    from runner.models.responses import RecordedResponses
    from runner.plan.model import Plan, PlanNode
    from runner.policy import PolicySet


class NodeFailure(Exception):
    """A node attempt failed; `kind` decides whether the node's retry policy applies."""

    def __init__(self, message: str, *, kind: str = "error") -> None:
        super().__init__(message)
        self.message = message
        # error | timeout | provider_error | invalid_output | invalid_args | config | item
        self.kind = kind


class NodeStop(Exception):
    """A node ends with a non-failure outcome that stops its branch: escalated, denied, waiting."""

    def __init__(self, status: str, message: str, output: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.output = output


def _memory() -> Services:
    from runner.engine.services import MemoryServices

    return MemoryServices()


@dataclass(frozen=True)
class Envelope:
    """Who runs, for whom, with which scopes, and whether writes really happen (live)."""

    live: bool = False
    actor: str | None = None
    tenant: str | None = None
    scopes: tuple[str, ...] = ()
    workflow: str | None = None  # the run's workflow (metadata.name): what ceilings select on


NodeExecutor = Callable[["NodeContext"], Awaitable[NodeResult]]
Scheduler = Callable[["RunState", list[NodeResult]], Awaitable[None]]


@dataclass(frozen=True)
class Engine:
    """How nodes that run other nodes (map items, subflows, loop passes) reach the engine.

    Composite node runners recurse into the engine; receiving it here, not by import, keeps
    the modules in one direction: the scheduler imports node execution, which imports nodes.
    """

    execute_node: NodeExecutor
    schedule: Scheduler


@dataclass
class RunState:
    run_id: str
    plan: Plan
    inputs: dict[str, Any]
    budget: BudgetLedger
    responses: RecordedResponses | None
    hooks: Hooks
    services: Services = field(default_factory=lambda: _memory())
    telemetry: Telemetry = field(default_factory=Telemetry)  # spans and call records
    envelope: Envelope = field(default_factory=Envelope)
    results: dict[str, NodeResult] = field(default_factory=dict)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: dict[tuple[str, int | None], int] = field(default_factory=dict)
    # inside a subflow or loop pass: extra names (previous, iteration, map locals) and where
    # this state sits in the parent ("revise#2/"), which keeps idempotency keys apart
    scope: dict[str, Any] = field(default_factory=dict)
    path: str = ""
    # the policies of the workflows around a subflow, outermost first: a call inside a child
    # must pass them too, so a subflow cannot widen what its parent allows
    outer_policies: tuple[tuple[str, PolicySet], ...] = ()
    # set by the scheduler that drives this state; a child state inherits its parent's
    engine: Engine | None = None

    def next_call(self, node_id: str, index: int | None) -> int:
        """1-based number of the next model call of a node (item); keys recorded responses."""
        key = (node_id, index)
        n = self.calls.get(key, 0) + 1
        self.calls[key] = n
        return n


@dataclass
class NodeContext:
    run: RunState
    node: PlanNode
    index: int | None = None  # map item index
    locals: Mapping[str, Any] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    detail: NodeDetail = field(default_factory=NodeDetail)
    items: list[NodeResult] | None = None  # the results of the nodes this node ran (composites)
    attempts: int = 0  # attempts started so far (runner/engine/wrappers.py Retry counts them)

    @property
    def node_id(self) -> str:
        return self.node.id

    def activation(self) -> dict[str, Any]:
        """Names this node's expressions and templates can read: inputs, needed nodes, locals."""
        views = self.run.views
        act: dict[str, Any] = {
            "inputs": self.run.inputs,
            "nodes": {d: views[d] for d in self.node.deps if d in views},
        }
        if self.run.scope:
            act.update(self.run.scope)
        act.update(self.locals)
        return act
