"""The typed form of a spec: pydantic models, extra="forbid"; the JSON Schema comes from them."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    model_validator,
)

NODE_KINDS: tuple[str, ...] = (
    "llm",
    "tool",
    "gate",
    "switch",
    "map",
    "approval",
    "flow",
    "loop",
)
INNER_KINDS: tuple[str, ...] = ("llm", "tool", "flow", "loop")  # what a map runs per item

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from 30, 2.5, "30s", "250ms", "5m", "24h" or "1d"."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '24h'")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"a duration must be a finite number of seconds, not {value!r}")
        if value <= 0:
            raise ValueError("a duration must be positive")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            seconds = float(m.group(1)) * _UNITS[m.group(2)]
            if seconds <= 0:
                raise ValueError("a duration must be positive")
            return seconds
    raise ValueError(
        f"invalid duration {value!r}; use a number of seconds or '250ms', '30s', '5m', '24h'"
    )


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"},
            ],
            "description": "seconds, or a string like '250ms', '30s', '5m', '24h'",
        }
    ),
]
JsonSchema = dict[str, Any]


def _listify(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


NodeList = Annotated[
    list[str],
    BeforeValidator(_listify),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            "description": "a node id or a list of node ids",
        }
    ),
]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _Model(BaseModel):
    # NaN and infinity are no number a cap, a threshold or a temperature can mean (a NaN cap
    # never trips): every float of the spec must be finite.
    # perf (issue 26): a model's validator is built when the model first validates, not when
    # this module is imported: a command that takes a kept plan (runner/plan/cache.py) builds
    # none, and the recursive node models are built once, with every name defined
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False, defer_build=True
    )


class Metadata(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$", max_length=100)]
    owner: str | None = None
    description: str | None = None
    version: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class ModelConfig(_Model):
    """A model route: a litellm model id, its parameters and ordered fallbacks."""

    model: Annotated[
        str, Field(min_length=1, description="litellm model id, e.g. openai/gpt-4o-mini")
    ]
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(gt=0, le=1_000_000)] | None = None
    fallbacks: list[str] = Field(
        default_factory=list, description="model ids tried in order on provider errors"
    )
    downgrade_to: Annotated[str, Field(min_length=1)] | None = Field(
        default=None,
        description="a cheaper model id used instead while a ceiling that selects the call is "
        "past its `soft` threshold (docs/budgets.md)",
    )
    timeout: Duration | None = None
    max_wait: Duration | None = Field(
        default=None,
        description="the longest one call waits in total on rate-limit (429) and server-error "
        "(5xx) answers, honouring Retry-After, before it fails as a provider error "
        "(default 5m)",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="extra litellm arguments (api_base, top_p...)"
    )


ModelRoute = Annotated[str, Field(min_length=1)] | ModelConfig


RetryOn = Literal["error", "timeout", "provider_error"]
_RETRY_ON_ALL: tuple[RetryOn, ...] = ("error", "timeout", "provider_error")


class Retry(_Model):
    """How a node is retried after an error; data, not code."""

    max_attempts: Annotated[int, Field(ge=1, le=20)] = 1
    backoff: Duration = 0.5
    multiplier: Annotated[float, Field(ge=1, le=10)] = 2.0
    max_backoff: Duration = 30.0
    on: list[RetryOn] = Field(
        default_factory=lambda: list(_RETRY_ON_ALL),
        description="which failures are retried",
    )


class McpServer(_Model):
    """An MCP server whose tools a spec may use: a command (stdio) or a URL (streamable HTTP)."""

    command: Annotated[list[str], Field(min_length=1)] | None = Field(
        default=None, description="argv of a server spoken to over stdio"
    )
    env: dict[str, str] = Field(default_factory=dict, description="extra environment (stdio)")
    cwd: str | None = Field(default=None, description="working directory (stdio), from the spec")
    url: Annotated[str, Field(pattern=r"^https?://")] | None = Field(
        default=None, description="streamable HTTP endpoint, e.g. http://127.0.0.1:8000/mcp"
    )
    timeout: Duration | None = Field(
        default=None, description="bound on start-up and on each call (default 30s)"
    )

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs exactly one of `command` (stdio) or `url` (HTTP)")
        return self


class ToolPrice(_Model):
    """What one call of a tool costs: a fixed price, or read from its result (docs/budgets.md)."""

    usd: Annotated[float, Field(ge=0)] | None = Field(default=None, description="dollars per call")
    from_result: Annotated[str, Field(pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")] | None = (
        Field(
            default=None,
            description="a field of the result holding the call's dollars (a dotted path, e.g. "
            "`billing.usd`); needs max_usd",
        )
    )
    max_usd: Annotated[float, Field(ge=0)] | None = Field(
        default=None,
        description="the most one call can cost: what is reserved before a from_result call",
    )

    @model_validator(mode="after")
    def _one(self) -> ToolPrice:
        if (self.usd is None) == (self.from_result is None):
            raise ValueError("a price is one of `usd` (per call) or `from_result` (a result field)")
        if self.from_result is not None and self.max_usd is None:
            raise ValueError(
                "`from_result` needs `max_usd`: a call is reserved at its worst case before "
                "it is made"
            )
        return self

    @property
    def reserve_usd(self) -> float:
        return float(self.usd if self.usd is not None else self.max_usd or 0.0)


class ToolContract(_Model):
    """What a tool may do: its implementation, schemas, effect and limits."""

    impl: (
        Annotated[
            str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="module:function")
        ]
        | None
    ) = None
    mcp: str | None = Field(
        default=None, description="name of an `mcp_servers` entry that provides this tool"
    )
    tool: str | None = Field(
        default=None, description="the MCP tool's name on its server (default: this contract's)"
    )
    description: str | None = None
    effect: Literal["read", "write"] = "read"
    args: JsonSchema | None = Field(
        default=None,
        description="JSON Schema of the arguments; derived from type hints when absent",
    )
    result: JsonSchema | None = Field(default=None, description="JSON Schema of the result")
    timeout: Duration | None = None
    retry: Retry | None = None
    idempotency_key: str | None = Field(
        default=None, description="CEL binding over args giving a stable key"
    )
    idempotent: bool = False
    compensate: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] | None = None
    preview: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] | None = Field(
        default=None,
        description="module:function returning the planned change; runs instead of impl in dry-run",
    )
    scopes: list[str] = Field(default_factory=list, description="scopes a run must hold to call it")
    trust: Literal["trusted", "untrusted"] = Field(
        default="trusted",
        description="untrusted: results (and LLM output computed from them) carry a taint label",
    )
    sanitizer: Annotated[str, Field(min_length=1)] | None = Field(
        default=None,
        description="why the result is trusted even when an argument is not (e.g. a lookup that"
        " returns only records from our own database); without it, tainted arguments taint the"
        " result",
    )
    destination: str | None = Field(
        default=None, description="binding over args: where the call sends data (for policies)"
    )
    classification: str | None = Field(
        default=None, description="data classification of what the tool touches (for policies)"
    )
    price: ToolPrice | None = Field(
        default=None,
        description="what a call costs: counted in the run's cost, its max_usd, every ceiling",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ToolContract:
        if (self.impl is None) == (self.mcp is None):
            raise ValueError("a tool needs one of `impl` (module:function) or `mcp` (a server)")
        if self.tool is not None and self.mcp is None:
            raise ValueError("`tool` names an MCP tool; it needs `mcp` (the server)")
        return self


class Budget(_Model):
    """Hard ceilings for one run; a call that could pass one is not made."""

    max_usd: Annotated[float, Field(ge=0)] | None = None
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    max_llm_calls: Annotated[int, Field(ge=0)] | None = None
    max_tool_calls: Annotated[int, Field(ge=0)] | None = None
    max_seconds: Duration | None = None


class _NodeBase(_Model):
    description: str | None = None
    needs: NodeList = Field(default_factory=list)
    when: str | None = Field(
        default=None, description="CEL condition; the node is skipped when false"
    )
    join: Literal["all", "any"] = Field(
        default="all",
        description="all: skipped when any dependency was skipped; any: runs when at least one ran",
    )
    retry: Retry | None = None
    timeout: Duration | None = None


class ResponseCache(_Model):
    """Answers kept in the run store, reused for an exactly equal call (docs/budgets.md)."""

    shared: bool = Field(
        default=False,
        description="share answers across tenants (default: each tenant's are its own)",
    )
    ttl: Duration | None = Field(
        default=None, description="how long an answer is reused (default: for ever)"
    )


class LLMNode(_NodeBase):
    llm: Annotated[str, Field(min_length=1, description="model alias from `models`")]
    prompt: str | None = Field(default=None, description="Jinja2 template")
    prompt_file: str | None = Field(
        default=None, description="Jinja2 template file next to the spec"
    )
    system: str | None = None
    output: JsonSchema | None = Field(
        default=None, description="JSON Schema of the structured output"
    )
    max_tokens: Annotated[int, Field(gt=0, le=1_000_000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_attempts: Annotated[int, Field(ge=1, le=10)] = Field(
        default=3,
        description="asks in all when the answer does not match `output` (re-asks with the errors)",
    )
    cache: bool | ResponseCache = Field(
        default=False,
        description="reuse the answer to an exactly equal call (model, messages, output schema, "
        "parameters, prompt): a hit costs nothing; `true` or {shared, ttl}",
    )


class ToolNode(_NodeBase):
    tool: Annotated[str, Field(min_length=1)]
    args: dict[str, Any] = Field(default_factory=dict)
    on_deny: Literal["escalate", "halt", "skip"] = Field(
        default="halt",
        description="when policy denies the call: halt (run denied), escalate, or skip the node",
    )
    ungated: str | None = Field(
        default=None,
        description="why this write may run without a gate or approval (printed as a warning)",
    )


class GateCheck(_Model):
    check: Annotated[str, Field(min_length=1, description="CEL condition that must hold")]
    message: str


class GateNode(_NodeBase):
    gate: Annotated[list[GateCheck], Field(min_length=1)]
    on_fail: Literal["halt", "escalate"] = "halt"


class SwitchCase(_Model):
    when: Annotated[str, Field(min_length=1)]
    then: NodeList


class Switch(_Model):
    cases: Annotated[list[SwitchCase], Field(min_length=1)]
    default: NodeList = Field(default_factory=list)


class SwitchNode(_NodeBase):
    switch: Switch


def _inner_kind(v: Any) -> str | None:
    if isinstance(v, dict):
        kinds = [k for k in INNER_KINDS if k in v]
        return kinds[0] if len(kinds) == 1 else None
    for kind in INNER_KINDS:
        if isinstance(v, _KIND_CLASSES[kind]):
            return kind
    return None


InnerNode = Annotated[
    Annotated[LLMNode, Tag("llm")]
    | Annotated[ToolNode, Tag("tool")]
    | Annotated["FlowNode", Tag("flow")]
    | Annotated["LoopNode", Tag("loop")],
    Discriminator(
        _inner_kind,
        custom_error_type="node-kind",
        custom_error_message="a map's node must have exactly one of: llm, tool, flow, loop",
    ),
]


class MapSpec(_Model):
    over: Annotated[str, Field(min_length=1, description="binding to a list")]
    as_: Identifier = Field(default="item", alias="as")
    max_items: Annotated[int, Field(ge=1, le=100_000)] = 100
    max_concurrency: Annotated[int, Field(ge=1, le=1000)] = 4
    on_item_failure: Literal["fail_fast", "collect"] = Field(
        default="fail_fast",
        description="fail_fast: a failed item fails the map;"
        " collect: each item becomes {ok, output, error}",
    )
    node: InnerNode


class MapNode(_NodeBase):
    map: MapSpec


class ApprovalSpec(_Model):
    """A person decides; the run waits in the store (not in memory) until they do."""

    when: str | None = Field(
        default=None, description="CEL: ask only when true; otherwise approved automatically"
    )
    summary: str | None = Field(default=None, description="Jinja2 text shown in the inbox")
    assignees: list[str] = Field(
        default_factory=list,
        description="who may decide: identity names or roles (docs/identities.md); "
        "empty: anyone with the approver role",
    )
    allow_self_approval: bool = Field(
        default=False,
        description="the identity that started the run may decide this approval too "
        "(off: separation of duties)",
    )
    timeout: Duration | None = None
    on_timeout: Literal["escalate", "reject"] = "escalate"
    decision: JsonSchema | None = Field(
        default=None, description="JSON Schema of the decision an approver may attach"
    )


class ApprovalNode(_NodeBase):
    approval: ApprovalSpec


class FlowNode(_NodeBase):
    """Another spec run as one node; its outputs are this node's output."""

    flow: Annotated[
        str, Field(min_length=1, description="path of the child spec, from this spec's folder")
    ]
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="child input name → value or ${{ }} binding"
    )


class LoopSpec(_Model):
    """A bounded repeat of a small graph until a CEL condition holds (docs/composition.md)."""

    body: Annotated[
        dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], Node],
        Field(min_length=1),
    ]
    until: Annotated[
        str, Field(min_length=1, description="CEL over nodes.<body id>, checked after each pass")
    ]
    max_iterations: int | None = Field(
        default=None, description="required: the most passes (1..100); see rule loop-bound"
    )
    on_exhausted: Literal["escalate", "fail", "last"] = Field(
        default="escalate", description="what happens when `until` never held"
    )


class LoopNode(_NodeBase):
    loop: LoopSpec


def _node_kind(v: Any) -> str | None:
    if isinstance(v, dict):
        kinds = [k for k in NODE_KINDS if k in v]
        return kinds[0] if len(kinds) == 1 else None
    for kind, cls in _KIND_CLASSES.items():
        if isinstance(v, cls):
            return kind
    return None


Node = Annotated[
    Annotated[LLMNode, Tag("llm")]
    | Annotated[ToolNode, Tag("tool")]
    | Annotated[GateNode, Tag("gate")]
    | Annotated[SwitchNode, Tag("switch")]
    | Annotated[MapNode, Tag("map")]
    | Annotated[ApprovalNode, Tag("approval")]
    | Annotated[FlowNode, Tag("flow")]
    | Annotated[LoopNode, Tag("loop")],
    Discriminator(
        _node_kind,
        custom_error_type="node-kind",
        custom_error_message=(
            "a node must have exactly one of: llm, tool, gate, switch, map, approval, flow, loop"
        ),
    ),
]

_KIND_CLASSES: dict[str, type[_NodeBase]] = {
    "llm": LLMNode,
    "tool": ToolNode,
    "gate": GateNode,
    "switch": SwitchNode,
    "map": MapNode,
    "approval": ApprovalNode,
    "flow": FlowNode,
    "loop": LoopNode,
}

NodeId = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class EvalGates(_Model):
    """Thresholds `flowrun eval` holds a change to, so a regression fails CI before it merges."""

    min_task_completion: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="share of runs that meet every expectation of their case"
    )
    min_escalation_correctness: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="share of runs that escalated exactly when their case expects"
    )
    max_policy_violations: Annotated[int, Field(ge=0)] = Field(
        default=0, description="write tool calls that a case forbids but that happened"
    )
    max_cost_per_task_usd: Annotated[float, Field(ge=0)] | None = None
    max_p95_latency_s: Annotated[float, Field(gt=0)] | None = None
    min_tool_recovery: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="share of fault-injected runs expected to recover that did"
    )
    drift_tolerance: Annotated[float, Field(ge=0)] = Field(
        default=0.10, description="allowed rise of cost, tool calls, tokens per task vs baseline"
    )
    min_pass_rate: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.8, description="per case: 95% Wilson lower bound of its pass rate (--repeat K)"
    )


Rate = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(ge=0)]


class TaskSuccessGate(_Model):
    """Task success: the latest recorded eval result, and how stable the last ones were."""

    min_success: Rate = Field(
        default=0.8,
        description="95% Wilson lower bound of the share of eval cases passed (latest result)",
    )
    min_cases: Annotated[int, Field(ge=1)] = Field(
        default=10, description="fewer cases than this is not enough evidence"
    )
    stability_runs: Annotated[int, Field(ge=1)] = Field(
        default=3, description="K: how many recorded eval results the stability check reads"
    )
    max_spread: Rate = Field(
        default=0.1, description="largest allowed gap between the best and worst of the last K"
    )


class CostGate(_Model):
    """Cost control: cost per completed task (every model attempt, retries and fallbacks)."""

    max_p95_usd: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="p95 cost per succeeded run (default: budget.max_usd)"
    )
    max_usd: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="most expensive succeeded run (default: budget.max_usd)"
    )
    min_runs: Annotated[int, Field(ge=1)] = Field(
        default=10, description="fewer succeeded runs in the window is not enough evidence"
    )


class SafetyGate(_Model):
    """Safety: policy unit cases, adversarial eval cases, the deny log of the window."""

    policy_cases: str | None = Field(
        default=None, description="`flowrun policy test` case file, relative to the spec"
    )
    min_adversarial_cases: Annotated[int, Field(ge=1)] = Field(
        default=1, description="adversarial cases the latest eval result must hold"
    )
    max_policy_violations: Count = Field(
        default=0, description="forbidden writes made in the latest eval result"
    )
    max_deny_rate: Rate = Field(
        default=0.25, description="share of write-tool policy decisions denied in the window"
    )


class ObservabilityGate(_Model):
    """Observability: every write of the window has a traced call record."""

    min_trace_coverage: Rate = Field(
        default=1.0, description="share of live writes with a call record carrying a trace id"
    )
    min_writes: Annotated[int, Field(ge=1)] = Field(
        default=1, description="fewer live writes in the window is not enough evidence"
    )


class HumanFallbackGate(_Model):
    """Human fallback: approvals answered within the SLA, none left waiting, few undos."""

    approval_sla: Duration = Field(default=14400.0, description="declared approval SLA (4h)")
    max_overdue: Count = Field(
        default=0, description="approvals still waiting past the SLA that are allowed"
    )
    max_undo_rate: Rate = Field(
        default=0.05, description="share of the window's completed live writes undone"
    )


class AutonomyDemotion(_Model):
    """When a tool's writes lose autonomy by themselves (runner/engine/autonomy.py)."""

    window: Duration = Field(default=604800.0, description="how far back the rates look (7d)")
    max_undo_rate: Rate = Field(
        default=0.2, description="share of the tool's completed live writes undone"
    )
    max_deny_rate: Rate = Field(
        default=0.5, description="share of the tool's policy decisions that denied it"
    )
    min_samples: Annotated[int, Field(ge=1)] = Field(
        default=5, description="writes (or decisions) a rate needs before it can demote"
    )
    demote_to: Literal["dry_run", "approval"] = "approval"


class Readiness(_Model):
    """Thresholds of `flowrun readiness` (docs/readiness.md) and of automatic demotion."""

    window: Duration = Field(default=2592000.0, description="default --since (30d)")
    task_success: TaskSuccessGate = Field(default_factory=TaskSuccessGate)
    cost: CostGate = Field(default_factory=CostGate)
    safety: SafetyGate = Field(default_factory=SafetyGate)
    observability: ObservabilityGate = Field(default_factory=ObservabilityGate)
    human_fallback: HumanFallbackGate = Field(default_factory=HumanFallbackGate)
    autonomy: AutonomyDemotion = Field(default_factory=AutonomyDemotion)


class Policy(_Model):
    """One policy rule, evaluated before every tool call; deny overrides allow."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=100)]
    when: Annotated[str, Field(min_length=1, description="CEL over the request")]
    effect: Literal["allow", "deny", "require_approval"]
    reason: str | None = None


class PolicyDefault(_Model):
    """What happens to a call no rule decides: reads allowed, writes denied, unless changed."""

    read: Literal["allow", "deny"] = "allow"
    write: Literal["allow", "deny"] = "deny"


def _regex(value: Any) -> Any:
    if isinstance(value, str):
        try:
            compiled = re.compile(value)
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from None
        if compiled.fullmatch(""):
            raise ValueError("the pattern matches the empty string: it would find nothing useful")
    return value


class Redact(_Model):
    """Detectors this spec adds to the built-in ones, for every run shown or stored
    (docs/security.md): the values they find are redacted wherever shown and sealed at rest."""

    patterns: dict[Identifier, Annotated[str, BeforeValidator(_regex)]] = Field(
        default_factory=dict, description="kind → regular expression; shown as [REDACTED:kind]"
    )
    fields: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="field names whose values are sensitive as a whole, at any depth",
    )


class Spec(_Model):
    """A flowrun workflow (apiVersion flowrun/v1)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        allow_inf_nan=False,
        title="flowrun workflow spec (flowrun/v1)",
    )

    api_version: Literal["flowrun/v1"] = Field(alias="apiVersion")
    kind: Literal["Workflow"]
    metadata: Metadata
    inputs: JsonSchema = Field(
        default_factory=lambda: {"type": "object"}, description="JSON Schema of the task input"
    )
    outputs: dict[str, Any] = Field(default_factory=dict, description="name → binding")
    models: dict[Identifier, ModelRoute] = Field(default_factory=dict)
    profiles: dict[Identifier, dict[Identifier, ModelRoute]] = Field(
        default_factory=dict, description="named alias maps chosen with --profile"
    )
    tools: dict[Identifier, ToolContract] = Field(default_factory=dict)
    mcp_servers: dict[Identifier, McpServer] = Field(
        default_factory=dict, description="MCP servers tools come from (docs/mcp.md)"
    )
    budget: Budget = Field(default_factory=Budget)
    nodes: Annotated[dict[NodeId, Node], Field(min_length=1)]
    eval: EvalGates | None = Field(default=None, description="gates for `flowrun eval`")
    readiness: Readiness = Field(
        default_factory=Readiness, description="gates for `flowrun readiness` (docs/readiness.md)"
    )
    policies: list[Policy] = Field(default_factory=list, description="ordered policy rules")
    policy_default: PolicyDefault = Field(default_factory=PolicyDefault)
    redact: Redact = Field(default_factory=Redact)
    policy_files: list[str] = Field(
        default_factory=list, description="Cedar policy files next to the spec"
    )


def node_kind(node: object) -> str:
    for kind, cls in _KIND_CLASSES.items():
        if type(node) is cls:
            return kind
    raise TypeError(f"not a node: {node!r}")


AnyNode = LLMNode | ToolNode | GateNode | SwitchNode | MapNode | ApprovalNode | FlowNode | LoopNode
