"""Runtime records of a run: plain dataclasses, serialisable to JSON for the CLI and the store."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, Literal

NodeStatus = Literal[
    "succeeded", "failed", "skipped", "escalated", "budget_exceeded", "denied", "waiting", "killed"
]
RunStatus = Literal[
    "succeeded", "failed", "escalated", "budget_exceeded", "denied", "waiting", "killed"
]

# Node statuses that stop the whole run, and the run outcome each one gives.
STOPPING: dict[str, RunStatus] = {
    "failed": "failed",
    "escalated": "escalated",
    "budget_exceeded": "budget_exceeded",
    "denied": "denied",
    "waiting": "waiting",
    "killed": "killed",
}

# When several nodes stop a run, the run ends with the most severe of their statuses.
_SEVERITY = ["budget_exceeded", "killed", "denied", "failed", "escalated", "waiting"]


def severity(status: str) -> int:
    """Rank of a stopping status: lower is more severe (budget before kill before denial...)."""
    return _SEVERITY.index(status) if status in _SEVERITY else len(_SEVERITY)


@dataclass(kw_only=True)
class Usage:
    """What a node or run consumed; added up with `+=`."""

    llm_calls: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0  # everything billed: model calls and priced tool calls
    tool_cost_usd: float = 0.0  # the part of cost_usd that priced tool calls billed

    def __iadd__(self, other: Usage) -> Usage:
        self.llm_calls += other.llm_calls
        self.tool_calls += other.tool_calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_usd += other.cost_usd
        self.tool_cost_usd += other.tool_cost_usd
        return self

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_json(self) -> dict[str, Any]:
        return {
            "llm_calls": self.llm_calls,
            "tool_calls": self.tool_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
        } | ({"tool_cost_usd": self.tool_cost_usd} if self.tool_cost_usd else {})


def _plain(value: Any) -> Any:
    """What `dataclasses.asdict` makes of a field value: new containers, dataclasses as dicts."""
    t = type(value)
    if t is str or t is int or t is float or t is bool or value is None:  # perf: most values
        return value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return (
            type(value)(*map(_plain, value))
            if hasattr(value, "_fields")
            else tuple(map(_plain, value))
        )
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return copy.deepcopy(value) if not isinstance(value, _LEAVES) else value


_LEAVES = (str, int, float, bool, type(None))


@dataclass(kw_only=True, eq=False)
class NodeDetail(Mapping[str, Any]):
    """What happened inside a node besides its status and output: one typed field per fact.

    Stored as a JSON object of the fields that are set (`to_json`); rows written by other
    versions load with their unknown keys kept in `extra`. It reads as a mapping too
    (`detail["reason"]`, `detail.get("on_deny")`), the shape trace, web and stored rows use.
    """

    reason: str | None = None  # why a node did not run (skipped)
    flow: str | None = None  # the subflow's spec path
    idempotency_key: str | None = None
    policy: list[dict[str, Any]] = field(default_factory=list)  # every decision, outer ones too
    on_deny: str | None = None  # set when denied: halt | skip | escalate
    approved_by: str | None = None  # who approved a call that policy sent for approval
    ledger: str | None = None  # "replayed": the ledger's result, the tool was not called
    dry_run: bool = False
    planned: Any = None  # a dry-run write's planned change (meaningful only under dry_run)
    error_type: str | None = None  # an MCP tool's error class
    asks: int = 0  # questions put to a model, over the node's retries
    rejected: list[str] = field(default_factory=list)  # why answers were rejected
    cut_off: list[dict[str, Any]] = field(default_factory=list)  # answers cut at max_tokens
    provider_errors: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)  # the error of each retried attempt
    iterations: int | None = None  # loop passes run
    converged: bool | None = None  # whether the loop's `until` held
    failed_items: list[int] = field(default_factory=list)  # map items that failed (collect)
    activity_error: bool = False  # Temporal: the node activity itself failed (no checkpoint)
    cache_hits: int = 0  # model calls answered from the response cache (cost nothing)
    downgraded: str | None = None  # why the route's downgrade_to model answered (budgets)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> NodeDetail:
        """From a stored row's `detail` object; keys this version does not know go to `extra`."""
        if not d:
            return cls()
        if isinstance(d, NodeDetail):
            return d
        known = {k: v for k, v in d.items() if k in _DETAIL_FIELDS}
        extra = {k: v for k, v in d.items() if k not in _DETAIL_FIELDS}
        if "planned" in known:
            known.setdefault("dry_run", True)
        return cls(**known, extra=extra)

    def _present(self, name: str, value: Any) -> bool:
        """Whether a field was set: its default (None, False, 0, empty) means it was not."""
        if name == "planned":
            return self.dry_run
        if name == "converged":
            return value is not None
        return value is not None and value is not False and value != 0 and value != []

    def _set(self) -> list[tuple[str, Any]]:
        # perf: every node's checkpoint, transcript line and result go through here (a list
        # from __dict__; `_present`'s common rule inline: most fields are at their default)
        d = self.__dict__
        present = self._present
        out = [
            (name, v)
            for name in _DETAIL_FIELDS
            if (
                (v := d[name]) is not None
                and v is not False
                and v != 0
                and v != []
                and name not in _OWN_RULE
            )
            or (name in _OWN_RULE and present(name, v))
        ]
        out.extend(self.extra.items())
        return out

    def to_json(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self._set()}

    def __getitem__(self, key: str) -> Any:
        if key in _FIELD_SET:
            value = getattr(self, key)
            if self._present(key, value):
                return value
            raise KeyError(key)
        return self.extra[key]

    def __contains__(self, key: object) -> bool:
        if key in _FIELD_SET:
            return self._present(key, self.__dict__[key])
        return key in self.extra

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, _ in self._set()])

    def __len__(self) -> int:
        return len(self._set())

    def __bool__(self) -> bool:
        return bool(self._set())


_DETAIL_FIELDS = tuple(f.name for f in dataclasses.fields(NodeDetail) if f.name != "extra")
_FIELD_SET = frozenset(_DETAIL_FIELDS)
_OWN_RULE = frozenset({"planned", "converged"})  # fields `_present` decides otherwise


@dataclass(kw_only=True)
class NodeResult:
    node_id: str
    kind: str
    status: NodeStatus
    output: Any = None
    error: str | None = None
    attempts: int = 0
    model: str | None = None  # the model that produced the accepted answer
    usage: Usage = field(default_factory=Usage)
    started_at: float | None = None  # unix seconds
    duration_s: float = 0.0
    detail: NodeDetail = field(default_factory=NodeDetail)
    items: list[NodeResult] | None = None  # map items, in input order

    def __post_init__(self) -> None:
        if type(self.detail) is not NodeDetail:  # a plain mapping: a stored row, or old code
            self.detail = NodeDetail.from_json(self.detail)

    def view(self) -> dict[str, Any]:
        """What expressions see as nodes.<id>."""
        return {"output": self.output, "status": self.status, "error": self.error}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NodeResult:
        """Rebuild a checkpointed result (the inverse of to_json)."""
        usage = {k: v for k, v in (d.get("usage") or {}).items() if k != "tokens"}
        items = d.get("items")
        return cls(
            node_id=d["node_id"],
            kind=d["kind"],
            status=d["status"],
            output=d.get("output"),
            error=d.get("error"),
            attempts=d.get("attempts", 0),
            model=d.get("model"),
            usage=Usage(**usage),
            started_at=d.get("started_at"),
            duration_s=d.get("duration_s", 0.0),
            detail=NodeDetail.from_json(d.get("detail")),
            items=[cls.from_json(i) for i in items] if items is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        # perf (issue 11): the store checkpoints every node through this; dataclasses.asdict
        # deep-copied every leaf and was a tenth of a traced node. Same shape and key order,
        # containers copied, immutable leaves shared.
        d: dict[str, Any] = {
            "node_id": self.node_id,
            "kind": self.kind,
            "status": self.status,
            "output": _plain(self.output),
            "error": self.error,
            "attempts": self.attempts,
            "model": self.model,
            "usage": {**self.usage.to_json(), "tokens": self.usage.tokens},
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "detail": self.detail.to_json(),
        }
        if self.items is not None:
            d["items"] = [i.to_json() for i in self.items]
        return d


@dataclass(kw_only=True)
class RunResult:
    run_id: str
    workflow: str
    status: RunStatus
    outputs: dict[str, Any]
    nodes: dict[str, NodeResult]
    usage: Usage
    started_at: float
    duration_s: float
    reason: str | None = None  # why the run did not succeed, in one line
    profile: str | None = None

    def __repr__(self) -> str:
        # perf (issue 11): asyncio.run (3.11) formats its main task's repr, result included,
        # when it restores the SIGINT handler; a full dataclass repr of every node result cost
        # ~30 µs per node of the run
        return (
            f"RunResult(run_id={self.run_id!r}, workflow={self.workflow!r}, "
            f"status={self.status!r}, reason={self.reason!r}, nodes={len(self.nodes)})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "profile": self.profile,
            "status": self.status,
            "reason": self.reason,
            "outputs": self.outputs,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 6),
            "totals": {
                "cost_usd": self.usage.cost_usd,
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
                "tokens": self.usage.tokens,
                "llm_calls": self.usage.llm_calls,
                "tool_calls": self.usage.tool_calls,
            },
            "nodes": {k: v.to_json() for k, v in self.nodes.items()},
        }
