"""Policy as code, checked before every tool call: ordered CEL rules and Cedar files; deny wins."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from runner.expr.cel import CompiledExpr, ExprError, prepare, truthy
from runner.spec.models import PolicyDefault

# The names a policy condition can read (the request).
REQUEST_FIELDS = frozenset(
    {
        "actor",
        "tenant",
        "workflow",
        "node",
        "tool",
        "effect",
        "args",
        "scopes",
        "classification",
        "destination",
        "now",
        "tainted",
        "inputs",
    }
)
EFFECT_ORDER = ("deny", "require_approval", "allow")


@dataclass(frozen=True)
class Decision:
    """The outcome for one call and the rule that decided it (`default` when none did)."""

    effect: str  # allow | deny | require_approval
    rule: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"effect": self.effect, "rule": self.rule, "reason": self.reason}


@dataclass(frozen=True)
class Rule:
    id: str
    when: CompiledExpr
    effect: str
    reason: str | None


def request(
    *,
    tool: str,
    effect: str,
    args: Mapping[str, Any] | None = None,
    actor: str | None = None,
    tenant: str | None = None,
    workflow: str = "",
    node: str = "",
    scopes: Sequence[str] = (),
    classification: str | None = None,
    destination: str | None = None,
    now: str = "",
    tainted: Sequence[str] = (),
    inputs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A complete request: every field present, so conditions never fail on a missing name."""
    return {
        "actor": actor or "",
        "tenant": tenant or "",
        "workflow": workflow,
        "node": node,
        "tool": tool,
        "effect": effect,
        "args": dict(args or {}),
        "scopes": list(scopes),
        "classification": classification or "",
        "destination": destination or "",
        "now": now,
        "tainted": list(tainted),
        "inputs": dict(inputs or {}),
    }


class CedarPolicies:
    """A Cedar policy set (principal = actor, action = tool, resource = destination or tenant)."""

    def __init__(self, text: str, ids: Mapping[str, str]) -> None:
        self.text = text
        self.ids = dict(ids)  # cedar's policyN -> @id annotation (or policyN)

    @classmethod
    def parse(cls, text: str) -> CedarPolicies:
        """Parse once at compile time; raises ValueError with Cedar's message on bad syntax."""
        import cedarpy

        data = json.loads(cedarpy.policies_to_json_str(text))
        ids = {
            pid: (p.get("annotations") or {}).get("id", pid)
            for pid, p in (data.get("staticPolicies") or {}).items()
        }
        return cls(text, ids)

    def votes(self, req: Mapping[str, Any]) -> list[Decision]:
        import cedarpy

        resource = (
            f"Destination::{json.dumps(req['destination'])}"
            if req.get("destination")
            else f"Tenant::{json.dumps(req.get('tenant') or 'default')}"
        )
        context = {
            k: _cedar_value(v)
            for k, v in req.items()
            if k not in ("actor", "tool") and v is not None
        }
        cedar_req = {
            "principal": f"Actor::{json.dumps(req.get('actor') or 'anonymous')}",
            "action": f"Action::{json.dumps(req['tool'])}",
            "resource": resource,
            "context": context,
        }
        result = cedarpy.is_authorized(cedar_req, self.text, [])
        errors = list(result.diagnostics.errors)
        if errors:
            return [Decision("deny", "cedar", f"Cedar could not decide: {errors[0]}")]
        reasons = [self.ids.get(r, r) for r in result.diagnostics.reasons]
        if str(result.decision).endswith("Allow"):
            return [
                Decision("allow", f"cedar:{r}", f"permitted by Cedar policy {r}") for r in reasons
            ]
        return [Decision("deny", f"cedar:{r}", f"forbidden by Cedar policy {r}") for r in reasons]


def _cedar_value(v: Any) -> Any:
    """JSON → Cedar: floats become decimals (4 places), nulls are dropped."""
    if isinstance(v, bool | str):
        return v
    if isinstance(v, int):
        return v if -(2**63) <= v < 2**63 else str(v)
    if isinstance(v, float):
        return {"__extn": {"fn": "decimal", "arg": f"{v:.4f}"}}
    if isinstance(v, Mapping):
        return {str(k): _cedar_value(x) for k, x in v.items() if x is not None}
    if isinstance(v, list | tuple):
        return [_cedar_value(x) for x in v if x is not None]
    return str(v)


@dataclass(frozen=True)
class PolicySet:
    """Everything that decides a call: rules in order, Cedar, and the defaults per effect."""

    rules: tuple[Rule, ...] = ()
    default: PolicyDefault = field(default_factory=PolicyDefault)
    cedar: CedarPolicies | None = None

    @cached_property
    def _read_names(self) -> frozenset[str] | None:
        """The request fields the CEL rules read (top-level names); None if any is unknown."""
        names: set[str] = set()
        for rule in self.rules:
            try:
                names.update(rule.when._program.variables())
            except Exception:
                return None
        return frozenset(names)

    def decide(self, req: Mapping[str, Any], *, required_scopes: Sequence[str] = ()) -> Decision:
        missing = [s for s in required_scopes if s not in req.get("scopes", ())]
        if missing:
            return Decision(
                "deny",
                "missing-scope",
                f"the run lacks scope {', '.join(map(repr, missing))} "
                f"that {req['tool']!r} requires",
            )
        votes: list[Decision] = []
        # converted to CEL once for every rule; perf (issue 11): only the fields the rules read
        # (converting all of them, `inputs` included, was most of a decision's cost)
        names = self._read_names
        act = prepare(req if names is None else {k: req[k] for k in names if k in req})
        for rule in self.rules:
            try:
                hit = truthy(rule.when.evaluate(act))
            except ExprError as e:
                if rule.effect == "allow":
                    continue  # an allow that cannot be evaluated allows nothing
                votes.append(
                    Decision(rule.effect, rule.id, f"condition failed to evaluate: {e.message}")
                )
                continue
            if hit:
                votes.append(Decision(rule.effect, rule.id, rule.reason or f"rule {rule.id}"))
        if self.cedar is not None:
            votes.extend(self.cedar.votes(req))
        for effect in EFFECT_ORDER:
            for v in votes:
                if v.effect == effect:
                    return v
        return self._defaults["write" if req.get("effect") == "write" else "read"]

    @cached_property
    def _defaults(self) -> dict[str, Decision]:
        """The decision when no rule decided, per kind (Decisions are immutable: shared)."""
        out: dict[str, Decision] = {}
        for kind in ("read", "write"):
            effect = self.default.write if kind == "write" else self.default.read
            out[kind] = Decision(
                effect,
                "default",
                f"no rule decided; {kind} tools are "
                f"{'allowed' if effect == 'allow' else 'denied'} by default",
            )
        return out
