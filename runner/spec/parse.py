"""Plain YAML data → typed Spec; pydantic's errors become positioned diagnostics with fixes."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from runner.errors import Diagnostic, SpecError
from runner.spec import models as m
from runner.spec.loader import PathKey, Source, _get

_UNION_TAGS = {"constrained-str", "str", "ModelConfig"}


def _strip_tags(loc: tuple[str | int, ...]) -> PathKey:
    """Drop pydantic's union tags from an error location, leaving a path into the YAML data."""
    out: list[str | int] = []
    i = 0
    while i < len(loc):
        part = loc[i]
        out.append(part)
        i += 1
        n = len(out)
        if i < len(loc):
            nxt = loc[i]
            if (
                (n == 2 and out[0] == "nodes" and nxt in m.NODE_KINDS)
                or (n >= 2 and out[-2:] == ["map", "node"] and nxt in m.INNER_KINDS)
                or (n >= 3 and out[-3:-1] == ["loop", "body"] and nxt in m.NODE_KINDS)
                or (n == 2 and out[0] == "models" and nxt in _UNION_TAGS)
                or (n == 3 and out[0] == "profiles" and nxt in _UNION_TAGS)
            ):
                i += 1
    return tuple(out)


def _model_at(path: PathKey, data: Any) -> type[BaseModel] | None:
    """The model class that owns the mapping at path (for did-you-mean on unknown keys)."""
    if not path:
        return m.Spec
    head = path[0]
    simple: dict[str, type[BaseModel]] = {
        "metadata": m.Metadata,
        "budget": m.Budget,
        "eval": m.EvalGates,
        "policy_default": m.PolicyDefault,
    }
    if len(path) == 1:
        return simple.get(str(head))
    if head == "tools":
        if path[2:] == ("price",):
            return m.ToolPrice
        return m.ToolContract if len(path) == 2 else m.Retry if path[2:] == ("retry",) else None
    if head == "policies" and len(path) == 2:
        return m.Policy
    if head == "models" and len(path) == 2:
        return m.ModelConfig
    if head == "profiles" and len(path) == 3:
        return m.ModelConfig
    if head != "nodes":
        return None
    node = _get(data, path[:2])
    rest = path[2:]
    if not rest:
        return _node_class(node)
    if rest == ("retry",) or rest[-1:] == ("retry",):
        return m.Retry
    if rest[0] == "gate" and len(rest) == 2:
        return m.GateCheck
    if rest == ("switch",):
        return m.Switch
    if rest[0] == "switch" and len(rest) == 3:
        return m.SwitchCase
    if rest == ("map",):
        return m.MapSpec
    if rest == ("map", "node"):
        return _node_class(_get(data, path))
    return None


def _node_class(node: Any) -> type[BaseModel] | None:
    kind = m._node_kind(node)
    return m._KIND_CLASSES.get(kind) if kind else None


def _field_names(model: type[BaseModel]) -> list[str]:
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _where(path: PathKey) -> str:
    if len(path) >= 2 and path[0] == "nodes":
        return f" in node {path[1]!r}"
    if len(path) >= 2 and path[0] in ("tools", "models", "profiles"):
        return f" in {path[0]}.{path[1]}"
    if len(path) >= 1 and isinstance(path[0], str):
        return f" in {path[0]}" if len(path) > 1 else ""
    return ""


def parse_spec(src: Source) -> m.Spec:
    """Validate the loaded data against the Spec models, reporting every problem at once."""
    try:
        return m.Spec.model_validate(src.data)
    except ValidationError as exc:
        raise SpecError(_diagnostics(src, exc)) from None


def _diagnostics(src: Source, exc: ValidationError) -> list[Diagnostic]:
    out: dict[tuple[PathKey, str], Diagnostic] = {}
    for err in exc.errors():
        path = _strip_tags(tuple(err["loc"]))
        kind = err["type"]
        value = _get(src.data, path)
        if kind in ("string_type",) and isinstance(value, dict) and _is_route(path):
            continue
        if kind == "model_type" and isinstance(value, str):
            continue
        d = _one(src, path, kind, err)
        out.setdefault((path, d.rule), d)
    return list(out.values())


def _is_route(path: PathKey) -> bool:
    return (len(path) == 2 and path[0] == "models") or (len(path) == 3 and path[0] == "profiles")


def _one(src: Source, path: PathKey, kind: str, err: Any) -> Diagnostic:
    msg = str(err["msg"])
    name = path[-1] if path else ""
    if kind == "extra_forbidden":
        parent = path[:-1]
        model = _model_at(parent, src.data)
        hint = None
        if model is not None:
            names = _field_names(model)
            near = difflib.get_close_matches(str(name), names, n=1, cutoff=0.6)
            hint = f"did you mean {near[0]!r}?" if near else "allowed keys: " + ", ".join(names)
        return src.diag(
            path, "unknown-key", f"unknown key {name!r}{_where(parent)}", hint=hint, key=True
        )
    if kind == "missing":
        parent = path[:-1]
        at_key = bool(parent) and isinstance(parent[-1], str)
        return src.diag(
            parent, "missing-key", f"missing required key {name!r}{_where(parent)}", key=at_key
        )
    if kind == "node-kind":
        node = _get(src.data, path) if len(path) == 2 else None
        found = sorted(k for k in node if isinstance(k, str)) if isinstance(node, dict) else []
        kinds = [k for k in found if k in m.NODE_KINDS]
        detail = f" (found {', '.join(map(repr, kinds))})" if len(kinds) > 1 else ""
        return src.diag(
            path,
            "node-kind",
            msg + detail,
            hint="write e.g. `classify: {llm: small, prompt: ...}`"
            " or `intake: {tool: get_ticket, args: {...}}`",
            key=True,
        )
    if path == ("apiVersion",):
        return src.diag(
            path,
            "api-version",
            f"unsupported apiVersion {_get(src.data, path)!r}; this flowrun reads 'flowrun/v1'",
        )
    where = _where(path[:-1] if path else ())
    if kind == "dict_type" and path in (("nodes",), ("tools",), ("models",), ("profiles",)):
        return src.diag(
            path, "invalid-value", f"{path[0]!r} must be a mapping of names to definitions"
        )
    if kind == "too_short" and path == ("nodes",):
        return src.diag(path, "invalid-value", "a workflow needs at least one node")
    if kind == "value_error":
        msg = str(err.get("ctx", {}).get("error", msg))
    elif kind == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern")
        msg = f"{_get(src.data, path)!r} does not match the pattern {pattern}"
    elif _is_route(path):
        msg = "a model route is a litellm model id or a mapping with `model:`"
    else:
        msg = f"{msg[0].lower()}{msg[1:]}"
    label = f"{name!r}{where}" if isinstance(name, str) and name else f"item {name}{where}"
    return src.diag(path, "invalid-value", f"{label}: {msg}")


def node_path(node_id: str, *rest: str | int) -> PathKey:
    return ("nodes", node_id, *rest)
