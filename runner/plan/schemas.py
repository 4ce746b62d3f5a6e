"""JSON Schema helpers for the compiler: validity, and walking a reference path through a schema."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError

GATE_OUTPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "passed": {"type": "boolean"},
        "failed": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}
SWITCH_OUTPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "branch": {"type": ["integer", "string"]},
        "chosen": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}
NODE_ATTRS = ("output", "status", "error")


def schema_problem(schema: Any) -> str | None:
    """Why a JSON Schema is invalid, or None."""
    if not isinstance(schema, dict | bool):
        return "a JSON Schema must be a mapping"
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path)
        return f"{e.message}" + (f" (at {where})" if where else "")
    return None


@lru_cache(maxsize=4096)
def _validator_cached(key: str) -> Any:
    import json

    schema = json.loads(key)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validator(schema: dict[str, Any]) -> Any:
    import json

    return _validator_cached(json.dumps(schema, sort_keys=True))


def validation_errors(schema: dict[str, Any], value: Any, limit: int = 8) -> list[str]:
    """Readable validation errors, each naming the field path."""
    out: list[str] = []
    for err in sorted(validator(schema).iter_errors(value), key=lambda e: list(map(str, e.path))):
        where = ".".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"{where}: {err.message}")
        if len(out) >= limit:
            break
    return out


def _types(schema: dict[str, Any]) -> set[str]:
    t = schema.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {x for x in t if isinstance(x, str)}
    return set()


def walk(schema: Any, path: tuple[str | int, ...]) -> tuple[int | None, Any]:
    """Follow path through schema: (index of the first segment the schema lacks, or None; the sub-schema)."""
    current = schema
    for i, seg in enumerate(path):
        if not isinstance(current, dict) or not current:
            return None, None
        branches = current.get("anyOf") or current.get("oneOf")
        if isinstance(branches, list):
            for b in branches:
                bad, sub = walk(b, path[i:])
                if bad is None:
                    return None, sub
            return i, None
        if "$ref" in current:
            return None, None
        types = _types(current)
        if isinstance(seg, int):
            if types and "array" not in types:
                return i, None
            items = current.get("items")
            current = items if isinstance(items, dict) else {}
            continue
        props = current.get("properties")
        if types and "object" not in types:
            return i, None
        if isinstance(props, dict) and seg in props:
            current = props[seg]
            continue
        addl = current.get("additionalProperties")
        if isinstance(addl, dict):
            current = addl
            continue
        if isinstance(props, dict) and addl is not True:
            return i, None
        return None, None
    return None, current


def is_array_schema(schema: Any) -> bool | None:
    """True/False when the schema says whether the value is an array; None when it does not say."""
    if not isinstance(schema, dict) or not schema:
        return None
    types = _types(schema)
    if not types:
        return None
    return "array" in types


def field_names(schema: Any) -> list[str]:
    if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
        return sorted(schema["properties"])
    return []
