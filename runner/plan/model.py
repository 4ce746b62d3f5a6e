"""The frozen, executable form of a spec: everything that can fail before a token is spent has."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from runner.expr.bindings import CompiledValue
from runner.expr.cel import CompiledExpr
from runner.expr.templates import PromptTemplate
from runner.plan.bundle import Bundle
from runner.plan.digraph import DiGraph
from runner.policy import PolicySet
from runner.spec import LoadedSpec
from runner.spec.models import (
    AnyNode,
    Budget,
    ModelConfig,
    ResponseCache,
    Retry,
    ToolContract,
)

DEFAULT_MAX_TOKENS = 1024
NO_RETRY = Retry(max_attempts=1)


@dataclass(frozen=True, kw_only=True)
class Route:
    """A model alias resolved for one profile: the primary model then its fallbacks."""

    alias: str
    config: ModelConfig

    @property
    def models(self) -> tuple[str, ...]:
        return (self.config.model, *self.config.fallbacks)


@dataclass(frozen=True, kw_only=True)
class LLMStep:
    alias: str
    route: Route
    prompt: PromptTemplate
    system: PromptTemplate | None
    output_schema: dict[str, Any] | None
    max_tokens: int
    temperature: float | None
    max_attempts: int
    cache: ResponseCache | None = None  # the node's response cache, when it has one


@dataclass(frozen=True, kw_only=True)
class ToolStep:
    name: str
    contract: ToolContract
    fn: Callable[..., Any]
    is_async: bool
    accepts_idempotency_key: bool
    args: CompiledValue
    args_schema: dict[str, Any]
    result_schema: dict[str, Any] | None
    idempotency_key: CompiledValue | None
    preview_fn: Callable[..., Any] | None = None  # runs instead of fn in dry-run
    destination: CompiledValue | None = None
    on_deny: str = "halt"
    tainted_args: tuple[str, ...] = ()  # arguments bound from untrusted data (static taint)


@dataclass(frozen=True, kw_only=True)
class GateStep:
    checks: tuple[tuple[CompiledExpr, str], ...]
    on_fail: str


@dataclass(frozen=True, kw_only=True)
class SwitchStep:
    cases: tuple[tuple[CompiledExpr, tuple[str, ...]], ...]
    default: tuple[str, ...]

    @property
    def targets(self) -> frozenset[str]:
        out = set(self.default)
        for _, t in self.cases:
            out.update(t)
        return frozenset(out)


@dataclass(frozen=True, kw_only=True)
class MapStep:
    over: CompiledValue
    as_: str
    max_items: int
    max_concurrency: int
    inner: PlanNode


@dataclass(frozen=True, kw_only=True)
class FlowStep:
    """A child spec compiled into its own plan; it runs as one node of this one."""

    path: str  # as shown in diagnostics: relative to the parent's folder
    plan: Plan
    inputs: CompiledValue


@dataclass(frozen=True, kw_only=True)
class LoopStep:
    """A bounded repeat of a body plan; the outer graph stays a DAG (the loop is one node)."""

    body: Plan  # body nodes only; their deps may name outer nodes, seeded before each pass
    until: CompiledExpr
    max_iterations: int
    on_exhausted: str  # escalate | fail | last


@dataclass(frozen=True, kw_only=True)
class ApprovalStep:
    when: CompiledExpr | None
    summary: PromptTemplate | None
    assignees: tuple[str, ...]
    timeout: float | None
    on_timeout: str
    decision_schema: dict[str, Any] | None
    allow_self_approval: bool = False


@dataclass(frozen=True, kw_only=True)
class PlanNode:
    id: str
    kind: str  # llm | tool | gate | switch | map
    spec: AnyNode
    deps: tuple[str, ...]
    switches: tuple[str, ...]  # switch nodes that choose whether this node runs
    when: CompiledExpr | None
    join: str
    retry: Retry
    timeout: float | None
    llm: LLMStep | None = None
    tool: ToolStep | None = None
    gate: GateStep | None = None
    switch: SwitchStep | None = None
    map: MapStep | None = None
    approval: ApprovalStep | None = None
    flow: FlowStep | None = None
    loop: LoopStep | None = None
    output_schema: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class CostEstimate:
    """Worst-case spend of one run under a profile, from litellm's bundled price map."""

    usd: float
    llm_calls: int
    output_tokens: int
    per_node: Mapping[str, float]
    unpriced_models: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Plan:
    loaded: LoadedSpec
    profile: str | None
    nodes: Mapping[str, PlanNode]
    order: tuple[str, ...]  # a topological order, ties broken by declaration order
    graph: DiGraph[str]
    outputs: Mapping[str, CompiledValue]
    routes: Mapping[str, Route]
    budget: Budget
    inputs_schema: dict[str, Any]
    cost: CostEstimate
    warnings: tuple[Any, ...] = field(default_factory=tuple)
    dependants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    policy: PolicySet = field(default_factory=PolicySet)
    # every file the plan was compiled from (entry plans only; see runner/plan/bundle.py)
    bundle: Bundle | None = None

    @property
    def name(self) -> str:
        return self.loaded.spec.metadata.name

    def with_max_usd(self, max_usd: float) -> Plan:
        """The same plan with a lower max_usd (a run option); never raises the spec's cap."""
        cap = self.budget.max_usd
        if cap is not None and cap <= max_usd:
            return self
        return replace(self, budget=self.budget.model_copy(update={"max_usd": max_usd}))
