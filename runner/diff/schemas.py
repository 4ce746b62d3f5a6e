"""JSON Schema changes classified by which values they let through: wider, narrower, or both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["widened", "narrowed", "both", "neutral"]
_NEUTRAL = frozenset({"description", "title", "default", "examples", "$comment"})
_LOWER = frozenset({"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"})
_UPPER = frozenset({"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"})
_HANDLED = frozenset({"type", "enum", "properties", "required", "additionalProperties", "items"})


@dataclass(frozen=True, kw_only=True)
class SchemaChange:
    path: str
    change: str
    direction: Direction


def _types(schema: dict[str, Any]) -> set[str] | None:
    t = schema.get("type")
    if t is None:
        return None
    return {t} if isinstance(t, str) else {str(x) for x in t} if isinstance(t, list) else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def compare(before: Any, after: Any, path: str = "") -> list[SchemaChange]:
    """Every difference between two schemas with the direction it moves the set of valid values."""
    here = path or "(root)"
    if before == after:
        return []
    if not isinstance(before, dict) or not isinstance(after, dict):
        if before is None:
            return [SchemaChange(path=here, change="schema added", direction="narrowed")]
        if after is None:
            return [SchemaChange(path=here, change="schema removed", direction="widened")]
        return [SchemaChange(path=here, change="schema replaced", direction="both")]
    out: list[SchemaChange] = []
    tb, ta = _types(before), _types(after)
    if tb != ta:
        if tb is None:
            d: Direction = "narrowed"
        elif ta is None or ta > tb:
            d = "widened"
        elif ta < tb:
            d = "narrowed"
        else:
            d = "both"
        out.append(SchemaChange(path=here, change=f"type {_fmt(tb)} → {_fmt(ta)}", direction=d))
    eb, ea = before.get("enum"), after.get("enum")
    if eb != ea:
        if isinstance(eb, list) and isinstance(ea, list):
            added = [v for v in ea if v not in eb]
            removed = [v for v in eb if v not in ea]
            if added:
                out.append(
                    SchemaChange(
                        path=here, change=f"enum values added: {added}", direction="widened"
                    )
                )
            if removed:
                out.append(
                    SchemaChange(
                        path=here, change=f"enum values removed: {removed}", direction="narrowed"
                    )
                )
        else:
            d = "narrowed" if eb is None else "widened" if ea is None else "both"
            out.append(SchemaChange(path=here, change=f"enum {eb} → {ea}", direction=d))
    pb: dict[str, Any] = _props(before)
    pa: dict[str, Any] = _props(after)
    for name in pb:
        if name not in pa:
            out.append(
                SchemaChange(path=_join(path, name), change="property removed", direction="both")
            )
    for name in pa:
        if name not in pb:
            # a new field reaches no existing consumer; callers may send it: compatible both ways
            out.append(
                SchemaChange(path=_join(path, name), change="property added", direction="neutral")
            )
        else:
            out.extend(compare(pb[name], pa[name], _join(path, name)))
    rb = set(before.get("required") or [])
    ra = set(after.get("required") or [])
    for name in sorted(ra - rb):
        out.append(
            SchemaChange(path=_join(path, name), change="now required", direction="narrowed")
        )
    for name in sorted(rb - ra):
        out.append(
            SchemaChange(path=_join(path, name), change="no longer required", direction="widened")
        )
    ab, aa = before.get("additionalProperties", True), after.get("additionalProperties", True)
    if ab != aa:
        if ab is False or aa is True:
            d = "widened"
        elif aa is False or ab is True:
            d = "narrowed"
        else:
            d = "both"
        out.append(SchemaChange(path=here, change=f"additionalProperties {ab} → {aa}", direction=d))
    if before.get("items") != after.get("items"):
        out.extend(compare(before.get("items"), after.get("items"), f"{path}[]"))
    for key in sorted(set(before) | set(after)):
        if key in _HANDLED or key in _NEUTRAL or before.get(key) == after.get(key):
            continue
        vb, va = before.get(key), after.get(key)
        text = f"{key} {vb!r} → {va!r}"
        if key in _LOWER or key in _UPPER:
            nb, na = _num(vb), _num(va)
            if nb is None:
                d = "narrowed"
            elif na is None:
                d = "widened"
            elif key in _LOWER:
                d = "narrowed" if na > nb else "widened"
            else:
                d = "narrowed" if na < nb else "widened"
        else:
            d = "narrowed" if vb is None else "widened" if va is None else "both"
        out.append(SchemaChange(path=here, change=text, direction=d))
    for key in sorted(_NEUTRAL & (set(before) | set(after))):
        if before.get(key) != after.get(key):
            out.append(SchemaChange(path=here, change=f"{key} changed", direction="neutral"))
    return out


def classify(changes: list[SchemaChange], *, role: Literal["output", "input"]) -> str:
    """Breaking when a consumer (output) may see new values, or a caller (input) is refused."""
    bad = {"widened", "both"} if role == "output" else {"narrowed", "both"}
    return "breaking" if any(c.direction in bad for c in changes) else "compatible"


def _props(schema: dict[str, Any]) -> dict[str, Any]:
    props = schema.get("properties")
    return props if isinstance(props, dict) else {}


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _fmt(types: set[str] | None) -> str:
    return "any" if types is None else "|".join(sorted(types))
