"""JSON Schema helpers for the compiler: validity, and walking a reference path through a schema."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

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


def approval_output(decision: dict[str, Any] | None) -> dict[str, Any]:
    """What an approval node yields; `decision` is typed by the node's decision schema."""
    return {
        "type": "object",
        "properties": {
            "approved": {"type": "boolean"},
            "auto": {"type": "boolean"},
            "by": {"type": ["string", "null"]},
            "decision": decision if decision is not None else {},
            "reason": {"type": ["string", "null"]},
        },
        "additionalProperties": False,
    }


NODE_ATTRS = ("output", "status", "error")


def schema_problem(schema: Any) -> str | None:
    """Why a JSON Schema is invalid, or None."""
    found = schema_problem_at(schema)
    return None if found is None else found[0]


def schema_problem_at(schema: Any) -> tuple[str, tuple[str | int, ...]] | None:
    """Why a JSON Schema is invalid and where inside it (a path of keys), or None.

    Checking against the 2020-12 metaschema costs ~1.5 ms, and big specs repeat the same
    output schemas, so results are cached by the schema's canonical JSON.
    """
    import json

    try:
        key = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError):
        return _schema_problem_at(schema)
    return _schema_problem_cached(key)


@lru_cache(maxsize=4096)
def _schema_problem_cached(key: str) -> tuple[str, tuple[str | int, ...]] | None:
    import json

    return _schema_problem_at(json.loads(key))


def _schema_problem_at(schema: Any) -> tuple[str, tuple[str | int, ...]] | None:
    if not isinstance(schema, dict | bool):
        return "a JSON Schema must be a mapping", ()
    if isinstance(schema, bool):
        return None  # `true` accepts anything, `false` nothing: both are valid schemas
    try:
        if _surely_valid_schema(schema):
            return ref_problem(schema)
    except RecursionError:
        pass
    import jsonschema  # ~50 ms to import: only for schemas the walk below cannot vouch for
    from jsonschema.exceptions import SchemaError

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except SchemaError as e:
        where = tuple(e.absolute_path)
        shown = "/".join(str(p) for p in where)
        message = e.message
        if where and where[-1] == "type":
            message = f"{e.instance!r} is not a JSON Schema type"
        return message + (f" (at {shown})" if shown else ""), where
    return ref_problem(schema)


JSON_TYPES = ("array", "boolean", "integer", "null", "number", "object", "string")

# perf (issue 26): `flowrun validate` checked every schema against the 2020-12 metaschema with
# jsonschema, whose import alone costs ~50 ms of a ~0.4 s command. `_surely_valid_schema` walks
# the schema itself for the keywords specs use and answers only "certainly valid against the
# metaschema"; anything else (`$schema`, `$ref`, other keywords, floats where counts
# go, non-JSON Python types...) answers False and jsonschema decides, and writes the message.
_SUBSCHEMA = frozenset({"items", "additionalProperties", "not", "contains", "propertyNames"})
_SUBSCHEMA |= frozenset({"if", "then", "else", "unevaluatedItems", "unevaluatedProperties"})
_SUBSCHEMA_MAPS = frozenset({"properties", "$defs", "dependentSchemas"})
_SUBSCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_NUMBERS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_COUNTS = frozenset({"minLength", "maxLength", "minItems", "maxItems", "minProperties"})
_COUNTS |= frozenset({"maxProperties", "minContains", "maxContains"})
_STRINGS = frozenset({"title", "description", "$comment", "format", "contentMediaType"})
_STRINGS |= frozenset({"contentEncoding"})
_BOOLEANS = frozenset({"deprecated", "readOnly", "writeOnly", "uniqueItems"})
_ANY_VALUE = frozenset({"default", "const"})


def _unique_strings(value: Any, allowed: tuple[str, ...] | None = None) -> bool:
    if type(value) is not list:
        return False
    if not all(type(x) is str and (allowed is None or x in allowed) for x in value):
        return False
    return len(set(value)) == len(value)


def _json_value(value: Any, depth: int = 0) -> bool:
    t = type(value)
    if t is str or t is int or t is float or t is bool or value is None:
        return t is not float or math.isfinite(value)
    if depth > 64:
        return False
    if t is list:
        return all(_json_value(x, depth + 1) for x in value)
    if t is dict:
        return all(type(k) is str and _json_value(v, depth + 1) for k, v in value.items())
    return False


def _regex(text: str) -> bool:
    """The metaschema's `format: regex`, as jsonschema checks it (Python's re)."""
    import re

    try:
        re.compile(text)
    except re.error:
        return False
    return True


def _surely_valid_schema(schema: Any) -> bool:
    """True only when `schema` is certainly valid against the 2020-12 metaschema."""
    if schema is True or schema is False:
        return True
    if type(schema) is not dict:
        return False
    for key, sub in schema.items():
        if key == "type":
            if type(sub) is str:
                if sub not in JSON_TYPES:
                    return False
            elif not (_unique_strings(sub, JSON_TYPES) and sub):
                return False
        elif key in _SUBSCHEMA:
            if not _surely_valid_schema(sub):
                return False
        elif key in _SUBSCHEMA_MAPS:
            if type(sub) is not dict or not all(
                type(k) is str and _surely_valid_schema(v) for k, v in sub.items()
            ):
                return False
        elif key in _SUBSCHEMA_LISTS:
            if type(sub) is not list or not sub or not all(map(_surely_valid_schema, sub)):
                return False
        elif key == "pattern":
            if type(sub) is not str or not _regex(sub):
                return False
        elif key == "patternProperties":
            if type(sub) is not dict or not all(
                type(k) is str and _regex(k) and _surely_valid_schema(v) for k, v in sub.items()
            ):
                return False
        elif key == "required":
            if not _unique_strings(sub):
                return False
        elif key == "enum":
            if type(sub) is not list or not _json_value(sub):
                return False
        elif key in _NUMBERS:
            if type(sub) not in (int, float) or not _json_value(sub):
                return False
        elif key == "multipleOf":
            if type(sub) not in (int, float) or not _json_value(sub) or not sub > 0:
                return False
        elif key in _COUNTS:
            if type(sub) is not int or sub < 0:
                return False
        elif key in _STRINGS:
            if type(sub) is not str:
                return False
        elif key in _BOOLEANS:
            if type(sub) is not bool:
                return False
        elif key in _ANY_VALUE:
            if not _json_value(sub):
                return False
        elif key == "examples":
            if type(sub) is not list or not _json_value(sub):
                return False
        else:
            return False
    return True


_VALIDATORS: dict[int, tuple[Any, Any]] = {}


def validator(schema: dict[str, Any]) -> Any:
    """A compiled validator per schema object (plans keep schemas alive, so ids are stable)."""
    hit = _VALIDATORS.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    import jsonschema

    cls = jsonschema.validators.validator_for(schema)
    v = cls(schema, format_checker=cls.FORMAT_CHECKER)
    if len(_VALIDATORS) > 10_000:
        _VALIDATORS.clear()
    _VALIDATORS[id(schema)] = (schema, v)
    return v


# perf (issue 11): every tool call validates its args and its result; jsonschema's is_valid
# costs ~5-15 µs even for `{"type": "object", ...}`. `_surely_valid` walks the schema itself
# (no compiled cache, so a schema can never be stale) for the common keywords and answers
# only "certainly valid"; anything else (other keywords, `$schema`, non-JSON Python types,
# bools for integers...) answers False and jsonschema decides, and writes the messages.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly"}
    | {"writeOnly"}
)
_JSON_VALUE_TYPES = frozenset({dict, list, str, int, float, bool, type(None)})
_TYPE_OF: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _type_ok(name: object, t: type) -> bool:
    allowed = _TYPE_OF.get(name) if type(name) is str else None
    return allowed is not None and t in allowed


def _surely_valid(schema: Any, value: Any) -> bool:
    """True only when `value` certainly satisfies `schema` (exact JSON types, common keywords)."""
    if schema is True:
        return True
    if type(schema) is not dict:
        return False
    t = type(value)
    if t not in _JSON_VALUE_TYPES:
        return False
    for key, sub in schema.items():
        if key == "type":
            if type(sub) is list:
                if not any(_type_ok(x, t) for x in sub):
                    return False
            elif not _type_ok(sub, t):
                return False
        elif key == "properties":
            if type(sub) is not dict:
                return False
            if t is dict:
                for name, sub_schema in sub.items():
                    if name in value and not _surely_valid(sub_schema, value[name]):
                        return False
        elif key == "additionalProperties":
            if t is dict and sub is not True:
                props = schema.get("properties", {})
                if type(props) is not dict:
                    return False
                if sub is False:
                    if any(k not in props for k in value):
                        return False
                elif type(sub) is dict:
                    for k, x in value.items():
                        if k not in props and not _surely_valid(sub, x):
                            return False
                else:
                    return False
        elif key == "required":
            if type(sub) is not list:
                return False
            if t is dict and not all(type(r) is str and r in value for r in sub):
                return False
        elif key == "items":
            if t is list and sub is not True:
                if type(sub) is not dict:
                    return False
                if not all(_surely_valid(sub, x) for x in value):
                    return False
        elif key not in _ANNOTATIONS:
            return False
    return True


def validation_errors(schema: dict[str, Any], value: Any, limit: int = 8) -> list[str]:
    """Readable validation errors, each naming the field path; [] when the value is valid."""
    try:
        if _surely_valid(schema, value):
            return []
    except RecursionError:
        pass
    v = validator(schema)
    if v.is_valid(value):
        return []
    out: list[str] = []
    for err in sorted(v.iter_errors(value), key=lambda e: list(map(str, e.path))):
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
    """Follow path through schema: (first segment the schema lacks or None, the sub-schema)."""
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


# -- $ref ----------------------------------------------------------------------------------------
# A `$ref` is resolved when a value is validated, at run time: one that leaves the schema would
# make the validator reach for a file or the network, one that points at nothing fails the run,
# and one that reaches itself again without descending into the value never ends (RecursionError).
# So every `$ref` must be a local JSON pointer (or `$anchor`) that exists, and no chain of refs
# and in-place applicators (allOf, anyOf, oneOf, not, if/then/else, dependentSchemas) may loop.

_CHILD_ONE = (
    *("additionalProperties", "items", "contains", "propertyNames", "additionalItems"),
    *("unevaluatedItems", "unevaluatedProperties", "not", "if", "then", "else"),
)
_CHILD_LIST = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
_CHILD_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_LIST = ("allOf", "anyOf", "oneOf")

Where = tuple[str | int, ...]


def _subschemas(schema: dict[str, Any], where: Where) -> list[tuple[Where, dict[str, Any]]]:
    """Every sub-schema (mapping) of `schema` with its key path, the root first."""
    out: list[tuple[Where, dict[str, Any]]] = []
    stack: list[tuple[Where, Any]] = [(where, schema)]
    seen: set[int] = set()
    while stack:
        at, s = stack.pop()
        if not isinstance(s, dict) or id(s) in seen:
            continue
        seen.add(id(s))
        out.append((at, s))
        for key in _CHILD_MAP:
            sub = s.get(key)
            if isinstance(sub, dict):
                stack.extend(((*at, key, k), v) for k, v in sub.items())
        for key in _CHILD_LIST:
            sub = s.get(key)
            if isinstance(sub, list):
                stack.extend(((*at, key, i), v) for i, v in enumerate(sub))
        for key in _CHILD_ONE:
            sub = s.get(key)
            if isinstance(sub, dict):
                stack.append(((*at, key), sub))
    return out


def resolve_ref(root: Any, ref: str) -> Any:
    """The sub-schema a local `$ref` (`#`, `#/json/pointer`, `#anchor`) names, or None."""
    from urllib.parse import unquote

    if not ref.startswith("#"):
        return None
    frag = unquote(ref[1:])
    if frag and not frag.startswith("/"):
        if isinstance(root, dict):
            for _, s in _subschemas(root, ()):
                if s.get("$anchor") == frag:
                    return s
        return None
    current = root
    for raw in frag.split("/")[1:]:
        seg = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict) and seg in current:
            current = current[seg]
        elif isinstance(current, list) and seg.isdigit() and int(seg) < len(current):
            current = current[int(seg)]
        else:
            return None
    return current if isinstance(current, dict | bool) else None


def ref_problem(schema: Any) -> tuple[str, Where] | None:
    """The first `$ref` that is not local, points at nothing or loops, with where it is."""
    if not isinstance(schema, dict):
        return None
    subs = _subschemas(schema, ())
    if any("$id" in s for at, s in subs if at):
        return None  # a nested resource has its own base: its refs resolve elsewhere
    refs = [(at, s["$ref"]) for at, s in subs if isinstance(s.get("$ref"), str)]
    if not refs:
        return None
    defs = [
        f"#/{key}/{name}"
        for key in ("$defs", "definitions")
        if isinstance(schema.get(key), dict)
        for name in schema[key]
    ]
    for at, ref in refs:
        if not ref.startswith("#"):
            return (
                f"$ref {ref!r} is not local: a schema may only refer inside itself (#/...)",
                (*at, "$ref"),
            )
        if resolve_ref(schema, ref) is None:
            known = f" (defined: {', '.join(defs)})" if defs else ""
            return f"$ref {ref!r} points at nothing in this schema{known}", (*at, "$ref")
    return _ref_cycle(schema, subs)


def _ref_cycle(
    schema: dict[str, Any], subs: list[tuple[Where, dict[str, Any]]]
) -> tuple[str, Where] | None:
    where_of = {id(s): at for at, s in subs}

    def steps(s: dict[str, Any]) -> list[tuple[dict[str, Any], str | None]]:
        out: list[tuple[dict[str, Any], str | None]] = []
        ref = s.get("$ref")
        if isinstance(ref, str):
            target = resolve_ref(schema, ref)
            if isinstance(target, dict):
                out.append((target, ref))
        for key in _IN_PLACE_LIST:
            sub = s.get(key)
            if isinstance(sub, list):
                out.extend((x, None) for x in sub if isinstance(x, dict))
        for key in _IN_PLACE_ONE:
            sub = s.get(key)
            if isinstance(sub, dict):
                out.append((sub, None))
        deps = s.get("dependentSchemas")
        if isinstance(deps, dict):
            out.extend((x, None) for x in deps.values() if isinstance(x, dict))
        return out

    state: dict[int, int] = {}  # 1: on the current path, 2: done
    for _, start in subs:
        if id(start) in state:
            continue
        path: list[tuple[dict[str, Any], str | None]] = [(start, None)]
        stack = [iter(steps(start))]
        state[id(start)] = 1
        while stack:
            step = next(stack[-1], None)
            if step is None:
                stack.pop()
                state[id(path.pop()[0])] = 2
                continue
            target, ref = step
            mark = state.get(id(target))
            if mark == 1:
                i = next(k for k, (s, _) in enumerate(path) if s is target)
                chain = [r for _, r in path[i + 1 :] if r is not None]
                if ref is not None:
                    chain.append(ref)
                last = path[-1][0]
                shown = " -> ".join(repr(r) for r in [chain[-1], *chain])
                return (
                    f"$ref {chain[-1]!r} closes a loop of references ({shown}) that never"
                    " reaches a type: validating a value against it would never end",
                    (*where_of.get(id(last), ()), "$ref")
                    if isinstance(last.get("$ref"), str)
                    else where_of.get(id(last), ()),
                )
            if mark is None:
                state[id(target)] = 1
                path.append((target, ref))
                stack.append(iter(steps(target)))
    return None
