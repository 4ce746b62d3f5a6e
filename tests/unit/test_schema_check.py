"""A spec's JSON Schemas are judged as jsonschema judges them against the 2020-12 metaschema.

`schema_problem` vouches for common schemas itself (so `flowrun validate` need not import
jsonschema) and asks jsonschema about the rest: whatever path it takes, its verdict must be
jsonschema's own.
"""

from __future__ import annotations

from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.plan.schemas import schema_problem

TYPES = ["object", "array", "string", "integer", "number", "boolean", "null", "date"]
odd = st.one_of(  # values that are wrong for most keywords
    st.none(),
    st.booleans(),
    st.integers(-2, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["x", "date", "("]),
)
counts = st.one_of(st.integers(-1, 4), st.just(1.0), st.just(True))
numbers = st.one_of(st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True))
names = st.sampled_from(["a", "b", "c"])
regexes = st.sampled_from(["^a+$", "[0-9]{2}", "(", "[a-z"])
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=3)),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(names, c, max_size=2),
    max_leaves=5,
)


def _schemas(sub: Any) -> Any:
    keyword: dict[str, Any] = {
        "type": st.sampled_from(TYPES) | st.lists(st.sampled_from(TYPES), max_size=3),
        "properties": st.dictionaries(names, sub, max_size=3),
        "patternProperties": st.dictionaries(regexes, sub, max_size=2),
        "$defs": st.dictionaries(names, sub, max_size=2),
        "required": st.lists(names, max_size=3) | st.lists(odd, max_size=2),
        "items": sub,
        "additionalProperties": sub,
        "not": sub,
        "contains": sub,
        "propertyNames": sub,
        "if": sub,
        "then": sub,
        "allOf": st.lists(sub, max_size=2),
        "anyOf": st.lists(sub, max_size=2),
        "oneOf": st.lists(sub, max_size=2),
        "prefixItems": st.lists(sub, max_size=2),
        "enum": st.lists(json_values, max_size=3),
        "const": json_values,
        "default": json_values,
        "examples": st.lists(json_values, max_size=2),
        "minimum": numbers,
        "exclusiveMaximum": numbers,
        "multipleOf": numbers,
        "minLength": counts,
        "maxItems": counts,
        "minContains": counts,
        "pattern": regexes,
        "format": st.sampled_from(["date", "email"]),
        "description": st.text(max_size=3),
        "$comment": st.text(max_size=3),
        "uniqueItems": st.booleans(),
        "deprecated": st.booleans(),
        "dependentRequired": st.dictionaries(names, st.lists(names, max_size=2), max_size=1),
        "x-vendor": json_values,
    }
    pairs = st.sampled_from(sorted(keyword)).flatmap(
        lambda k: st.tuples(st.just(k), keyword[k] if k else odd)
    )
    wrong = st.tuples(st.sampled_from(sorted(keyword)), odd)
    return st.lists(pairs | wrong, max_size=4).map(dict)


schemas = st.recursive(st.one_of(st.booleans(), st.just({})), _schemas, max_leaves=10)


def jsonschema_problem(schema: Any) -> bool:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError:
        return True
    return False


@settings(max_examples=600, deadline=None)
@given(schemas)
def test_verdict_is_jsonschemas(schema: Any) -> None:
    assert (schema_problem(schema) is not None) == jsonschema_problem(schema)


def test_common_schemas() -> None:
    good = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": "^T-[0-9]+$", "description": "ticket"},
            "n": {"type": ["integer", "null"], "minimum": 0, "maximum": 10},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
        },
        "required": ["id"],
        "additionalProperties": False,
    }
    assert schema_problem(good) is None
    bad = [
        {"type": "strin"},
        {"type": ["string", "string"]},
        {"required": ["a", "a"]},
        {"minLength": -1},
        {"minLength": 1.5},
        {"pattern": "("},
        {"properties": {"a": {"type": 3}}},
        {"anyOf": []},
        {"enum": "a"},
    ]
    for schema in bad:
        assert schema_problem(schema) is not None, schema
    assert "is not a JSON Schema type" in (schema_problem({"type": "strin"}) or "")
