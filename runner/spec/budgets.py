"""The budgets file: spend ceilings beyond one run and rate limits shared by every process.

    apiVersion: flowrun/v1
    kind: Budgets
    ceilings:
      acme-daily: {scope: {tenant: acme}, window: day, max_usd: 5.0}
      each-tenant: {scope: {tenant: "*"}, window: 24h, max_llm_calls: 1000, on_exceed: wait}
    rate_limits:
      email-per-domain: {tool: send_email, destination: domain, limit: 60, per: 1m}

A ceiling counts every spend row (model calls and billed tool calls) of the runs its scope
selects, reserved in its window; a rate limit counts the calls it selects in a sliding window.
Both are held in the store (`flowrun budgets set --file`), so every process obeys the same set;
runner/store reserves against them in the transaction that reserves the call
(docs/budgets.md).
"""

from __future__ import annotations

import calendar
import difflib
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from runner.errors import Diagnostic, SpecError
from runner.spec.loader import Document, PathKey, Source, _get, load_file, load_text
from runner.spec.models import Duration

SCHEMA_ID = "https://flowrun.dev/schema/flowrun-budgets-v1.schema.json"
SCHEMA_FILE = Path(__file__).with_name("budgets.schema.json")
CALENDAR = ("hour", "day", "month")
DIMENSIONS = ("usd", "tokens", "llm_calls", "tool_calls")
SCOPE_KEYS = ("tenant", "workflow", "tool")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$"
EACH = "*"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(_Model):
    """Which calls a ceiling counts: every key given must match; `"*"`: each value apart."""

    tenant: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description='a tenant, or "*": each tenant has its own ceiling'
    )
    workflow: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description='a workflow (metadata.name), or "*": each workflow apart'
    )
    tool: Annotated[str, Field(min_length=1)] | None = Field(
        default=None,
        description='a tool (its contract name): the ceiling counts that tool\'s calls only; "*": '
        "each tool apart",
    )


class CeilingSpec(_Model):
    """A ceiling over many runs: reserved against before every call of the runs it selects."""

    scope: Scope = Field(default_factory=Scope, description="the calls it counts (default: all)")
    window: str | None = Field(
        default=None,
        description="hour, day or month (calendar, UTC), or a duration such as '15m', '24h', "
        "'30d' (rolling); absent: all time",
    )
    max_usd: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    max_llm_calls: Annotated[int, Field(ge=0)] | None = None
    max_tool_calls: Annotated[int, Field(ge=0)] | None = None
    on_exceed: Literal["fail", "wait", "escalate"] = Field(
        default="fail",
        description="fail: the run ends budget_exceeded; wait: the call waits up to max_wait "
        "for room, then fails; escalate: the run ends escalated",
    )
    max_wait: Duration = Field(
        default=60.0, description="the longest a call waits for room (on_exceed: wait)"
    )
    soft: Annotated[float, Field(gt=0, le=1)] | None = Field(
        default=None,
        description="fraction of a limit past which routes with `downgrade_to` use it",
    )

    @model_validator(mode="after")
    def _check(self) -> CeilingSpec:
        if all(getattr(self, f"max_{d}") is None for d in DIMENSIONS):
            raise ValueError(
                "a ceiling needs at least one of max_usd, max_tokens, max_llm_calls, max_tool_calls"
            )
        return self

    @field_validator("window")
    @classmethod
    def _window(cls, v: str | None) -> str | None:
        if v is not None:
            window_seconds(v)  # raises ValueError with the fix
        return v


def domain_of(text: str) -> str:
    """`a@Example.COM` -> `example.com`; `https://api.x.io:443/p` -> `api.x.io`."""
    t = text.strip()
    if "://" in t:
        host = t.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        return host.rsplit("@", 1)[-1].split(":", 1)[0].lower()
    return t.rsplit("@", 1)[-1].strip().rstrip(">").lower()


class RateLimitSpec(_Model):
    """At most `limit` calls (or tokens, `unit: tokens`) per `per`, shared by every process."""

    tool: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description='the tool it limits, "*" each tool apart'
    )
    model: Annotated[str, Field(min_length=1)] | None = Field(
        default=None,
        description='the model route (alias) or litellm model id it limits, "*" each model apart',
    )
    tenant: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description='only this tenant\'s calls; "*": each tenant apart'
    )
    destination: Literal["value", "domain"] | None = Field(
        default=None,
        description="each destination apart, as the tool contract's `destination` binding names "
        "it: its whole value, or its domain (an email address's domain, a URL's host)",
    )
    limit: Annotated[int, Field(ge=1)]
    per: Duration = Field(description="the sliding window, e.g. '1m'")
    unit: Literal["calls", "tokens"] = Field(
        default="calls", description="tokens: a model's tokens per window (tpm)"
    )
    on_limit: Literal["wait", "fail"] = Field(
        default="wait", description="wait (up to max_wait), or fail the call at once"
    )
    max_wait: Duration = Field(default=60.0, description="the longest a call waits")

    @model_validator(mode="after")
    def _check(self) -> RateLimitSpec:
        if (self.tool is None) == (self.model is None):
            raise ValueError("a rate limit names exactly one of `tool` or `model`")
        if self.destination is not None and self.tool is None:
            raise ValueError("`destination` reads a tool call's args; it needs `tool`")
        if self.unit == "tokens" and self.model is None:
            raise ValueError("`unit: tokens` limits a model's tokens; it needs `model`")
        return self


Name = Annotated[str, Field(pattern=_NAME)]


class BudgetsFile(_Model):
    """A budgets file (docs/budgets.md): ceilings over many runs and rate limits."""

    api_version: Literal["flowrun/v1"] = Field(alias="apiVersion")
    kind: Literal["Budgets"]
    ceilings: dict[Name, CeilingSpec] = Field(default_factory=dict)
    rate_limits: dict[Name, RateLimitSpec] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# windows


_ROLLING = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_WINDOW_S = 3660 * 86400.0


def window_seconds(window: str) -> float | None:
    """None for a calendar window (hour, day, month), else the rolling window's seconds."""
    if window in CALENDAR:
        return None
    m = _ROLLING.match(window)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(
            f"invalid window {window!r}; use hour, day or month (calendar, UTC) or a duration "
            "such as '15m', '24h', '30d' (rolling)"
        )
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if seconds > MAX_WINDOW_S:
        raise ValueError(
            f"window {window!r} is longer than 10 years; leave `window` out to count all time"
        )
    return seconds


def window_bounds(window: str | None, now: float) -> tuple[float, float | None]:
    """(start, end) of the window holding `now`; end None for a rolling window or all time."""
    if window is None:
        return 0.0, None
    rolling = window_seconds(window)
    if rolling is not None:
        return now - rolling, None
    t = datetime.fromtimestamp(now, UTC)
    if window == "hour":
        start = t.replace(minute=0, second=0, microsecond=0)
        return start.timestamp(), start.timestamp() + 3600
    if window == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        return start.timestamp(), start.timestamp() + 86400
    start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(t.year, t.month)[1]
    return start.timestamp(), start.timestamp() + days * 86400


# ---------------------------------------------------------------------------------------------
# runtime forms: what the store reserves against


@dataclass(frozen=True, slots=True)
class CallScope:
    """Who a call is made for: what ceilings and rate limits select on."""

    tenant: str | None
    workflow: str | None
    kind: Literal["llm", "tool"]
    tool: str | None = None


@dataclass(frozen=True, slots=True)
class Ceiling:
    id: str
    spec: CeilingSpec

    def applies(self, call: CallScope) -> bool:
        s = self.spec.scope
        if s.tool is not None and (call.kind != "tool" or not _match(s.tool, call.tool)):
            return False
        return _match(s.tenant, call.tenant) and _match(s.workflow, call.workflow)

    def bound(self, call: CallScope) -> dict[str, str]:
        """The scope's values for this call (a "*" key takes the call's own value): the rows a
        reservation counts, and the key its lock is taken on."""
        s = self.spec.scope
        out: dict[str, str] = {}
        for k in SCOPE_KEYS:
            v = getattr(s, k)
            if v is not None:
                out[k] = str(getattr(call, k)) if v == EACH else v
        return out

    def lock_key(self, call: CallScope) -> str:
        return "ceiling:" + self.id + ":" + json.dumps(self.bound(call), sort_keys=True)

    def limits(self) -> dict[str, float]:
        return {
            d: float(v) for d in DIMENSIONS if (v := getattr(self.spec, f"max_{d}")) is not None
        }

    def describe(self, call: CallScope | None = None) -> str:
        """`'acme-daily' (tenant acme, per day)`: how messages name a ceiling."""
        s = self.spec.scope
        bound = self.bound(call) if call is not None else {}
        parts = []
        for k in SCOPE_KEYS:
            v = getattr(s, k)
            if v is not None:
                parts.append(f"{k} {bound.get(k, v) if v == EACH else v}")
        w = self.spec.window
        parts.append(
            "all time" if w is None else f"per {w}" if w in CALENDAR else f"over a rolling {w}"
        )
        return f"{self.id!r} ({', '.join(parts)})"


def _match(want: str | None, have: str | None) -> bool:
    if want is None:
        return True
    if have is None:
        return False
    return want in (EACH, have)


class CeilingReached(Exception):
    """A call that would pass a ceiling over many runs was refused; nothing was reserved."""

    def __init__(
        self, ceiling: Ceiling, dim: str, used: float, want: float, limit: float, call: CallScope
    ) -> None:
        self.ceiling = ceiling
        self.dim = dim
        self.used = used
        self.want = want
        self.limit = limit
        left = max(limit - used, 0.0)
        if dim == "usd":
            amount = f"up to ${want:.6f} but ${left:.6f} of max_usd ${limit:g} is left"
        else:
            amount = f"{want:g} {dim} but {left:g} of max_{dim} {limit:g} are left"
        what = f"a call of {call.tool!r}" if call.kind == "tool" else "a model call"
        self.message = f"ceiling {ceiling.describe(call)} reached: {what} needs {amount}"
        super().__init__(self.message)


@dataclass(frozen=True)
class Budgets:
    """The set in force: ceilings and rate limits, with where they came from."""

    ceilings: tuple[Ceiling, ...] = ()
    rate_limits: tuple[tuple[str, RateLimitSpec], ...] = ()

    @classmethod
    def from_file(cls, f: BudgetsFile) -> Budgets:
        return cls(
            ceilings=tuple(Ceiling(k, v) for k, v in f.ceilings.items()),
            rate_limits=tuple(f.rate_limits.items()),
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Budgets:
        return cls.from_file(BudgetsFile.model_validate(data))

    def applicable(self, call: CallScope) -> list[Ceiling]:
        return [c for c in self.ceilings if c.applies(call)]


def to_json(f: BudgetsFile) -> dict[str, Any]:
    return f.model_dump(mode="json", by_alias=True, exclude_defaults=False)


# ---------------------------------------------------------------------------------------------
# loading, with positions


BUDGETS_FILE = Document(
    "budgets file",
    "apiVersion, kind, ceilings, rate_limits",
    "start from docs/budgets.md (apiVersion: flowrun/v1, kind: Budgets, ceilings, rate_limits)",
)


def load_budgets(path: str | Path) -> tuple[BudgetsFile, str]:
    """Read and check a budgets file; every problem is a `path:line:col: rule: message`."""
    src = load_file(path, what=BUDGETS_FILE)
    return parse_budgets(src), src.text


def load_budgets_text(text: str, path: str = "<string>") -> BudgetsFile:
    return parse_budgets(load_text(text, path, what=BUDGETS_FILE))


def parse_budgets(src: Source) -> BudgetsFile:
    try:
        f = BudgetsFile.model_validate(src.data)
    except ValidationError as exc:
        raise SpecError(_diagnostics(src, exc)) from None
    return f


_MODELS: dict[str, type[BaseModel]] = {"ceilings": CeilingSpec, "rate_limits": RateLimitSpec}


def _model_at(path: PathKey) -> type[BaseModel] | None:
    if not path:
        return BudgetsFile
    if len(path) == 2:
        return _MODELS.get(str(path[0]))
    if len(path) == 3 and path[0] == "ceilings" and path[2] == "scope":
        return Scope
    return None


def _diagnostics(src: Source, exc: ValidationError) -> list[Diagnostic]:
    out: dict[tuple[PathKey, str], Diagnostic] = {}
    for err in exc.errors():
        path: PathKey = tuple(err["loc"])
        kind = err["type"]
        name = path[-1] if path else ""
        where = " in " + ".".join(map(str, path[:-1])) if len(path) >= 3 else ""
        if kind == "extra_forbidden":
            model = _model_at(path[:-1])
            names = sorted(f.alias or n for n, f in model.model_fields.items()) if model else []
            near = difflib.get_close_matches(str(name), names, n=1, cutoff=0.6)
            hint = f"did you mean {near[0]!r}?" if near else "allowed keys: " + ", ".join(names)
            d = src.diag(path, "unknown-key", f"unknown key {name!r}{where}", hint=hint, key=True)
        elif kind == "missing":
            parent = path[:-1]
            d = src.diag(
                parent,
                "missing-key",
                f"missing required key {name!r}"
                + (f" in {parent[0]}.{parent[1]}" if len(parent) >= 2 else ""),
                key=bool(parent) and isinstance(parent[-1], str),
            )
        elif kind == "literal_error" and path == ("kind",):
            d = src.diag(path, "invalid-value", "a budgets file has `kind: Budgets`")
        elif kind == "literal_error" and path == ("apiVersion",):
            d = src.diag(
                path,
                "api-version",
                f"unsupported apiVersion {_get(src.data, path)!r}; this flowrun reads 'flowrun/v1'",
            )
        elif path and path[-1] == "[key]":
            d = src.diag(
                path[:-1],
                "invalid-name",
                f"{path[0]} name {path[1]!r} must start with a letter or digit and hold only "
                "letters, digits and _ . : @ -",
                key=True,
            )
        else:
            msg = (
                str(err.get("ctx", {}).get("error", err["msg"]))
                if kind == "value_error"
                else (err["msg"][0].lower() + err["msg"][1:])
            )
            if kind == "value_error":
                msg = msg.removeprefix("Value error, ")
            if len(path) == 2 and kind == "value_error":  # a whole entry's check
                d = src.diag(path, "invalid-value", f"{path[0]}.{path[1]}: {msg}", key=True)
            else:
                label = f"{name!r}{where}" if isinstance(name, str) else f"item {name}{where}"
                d = src.diag(path, "invalid-value", f"{label}: {msg}")
        out.setdefault((path, d.rule), d)
    return list(out.values())


# ---------------------------------------------------------------------------------------------
# the JSON Schema shipped in the package (runner/spec/budgets.schema.json)


def budgets_schema() -> dict[str, Any]:
    schema = BudgetsFile.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def budgets_schema_text() -> str:
    return json.dumps(budgets_schema(), indent=2, sort_keys=True) + "\n"


def now() -> float:
    return time.time()
