"""The CEL type check reports only certain errors: every expression it flags fails at run time
(or can never hold) for every value its schemas allow, and everyday expressions pass it."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.expr import celtypes as ct
from runner.expr.cel import CelEvalError, compile_cel, truthy

SCHEMAS: dict[str, dict[str, Any]] = {
    "s": {"type": "string"},
    "i": {"type": "integer"},
    "d": {"type": "number"},
    "b": {"type": "boolean"},
    "l": {"type": "array", "items": {"type": "string"}},
    "m": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "t": {"type": "string"}},
        "required": ["a", "t"],
    },
    "n": {"type": ["string", "null"]},
}
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "s": st.sampled_from(["", "a", "abc", "12"]),
    "i": st.integers(-5, 5),
    "d": st.sampled_from([0.5, -2.25, 3.0]),
    "b": st.booleans(),
    "l": st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=3),
    "m": st.fixed_dictionaries({"a": st.integers(-3, 3), "t": st.sampled_from(["x", "a"])}),
    "n": st.sampled_from([None, "a"]),
}
TYPES = {name: ct.ty_of_schema(schema) for name, schema in SCHEMAS.items()}


def scope(name: str) -> ct.Ty | None:
    return TYPES.get(name)


ATOMS = [
    *SCHEMAS,
    *("m.a", "m.t", "l[0]", "1", "2.5", "3u", '"a"', "true", "null", "[1, 2]", '["a"]'),
    *('{"a": 1}', 'b"x"', 'duration("1s")', 'timestamp("2020-01-01T00:00:00Z")', "[]", "{}"),
]
UNARY = ["!{}", "-{}", "size({})", "{}.size()", "int({})", "string({})", "double({})"]
UNARY += ['{}.contains("a")', '{}.startsWith("a")', '{}.matches("a")', "type({})"]
UNARY += ["{}.getHours()", "{}[0]", '{}["a"]', "{}.a", "uint({})", "bytes({})"]
UNARY += ["{}.exists(v, v == 1)", '{}.all(v, v != "a")', "{}.map(v, v)", "has(m.a)"]
# No `&&`, `||` or `? :`: a problem in a branch that is not taken does not fail the run; the
# claim is that the flagged operation fails whenever it is evaluated.
BINARY = ["==", "!=", "<", ">=", "+", "-", "*", "%", "in"]


def expressions() -> st.SearchStrategy[str]:
    atom = st.sampled_from(ATOMS)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(st.sampled_from(UNARY), inner).map(lambda t: t[0].format(f"({t[1]})")),
            st.tuples(inner, st.sampled_from(BINARY), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
        )

    return st.recursive(atom, extend, max_leaves=4)


def _fails(source: str, activation: dict[str, Any], condition: bool) -> bool:
    try:
        value = compile_cel(source).evaluate(activation)
        if condition:
            truthy(value)
    except CelEvalError:
        return True
    return False


# Problems that say a result is fixed, not that evaluation fails: checked one by one below.
_NOT_FAILURES = ("always false", "always true")


# bounded for CI; FLOWRUN_FUZZ_EXAMPLES=5000 for a long local run (as tests/fuzz does)
EXAMPLES = int(os.environ.get("FLOWRUN_FUZZ_EXAMPLES", "300"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=expressions(), data=st.data(), condition=st.booleans())
def test_every_flagged_expression_fails_at_run_time(
    source: str, data: st.DataObject, condition: bool
) -> None:
    want = frozenset({ct.BOOL}) if condition else None
    _, problems = ct.check(source, scope, want=want)
    if not problems or any(any(s in p.message for s in _NOT_FAILURES) for p in problems):
        return
    for _ in range(3):
        activation = {name: data.draw(strategy) for name, strategy in VALUES.items()}
        assert _fails(source, activation, condition), (source, activation, problems)


@pytest.mark.parametrize(
    ("source", "activation"),
    [
        ("s == 1", {"s": "1"}),
        ('i == "1"', {"i": 1}),
        ("l.exists(v, v == 1)", {"l": ["1"]}),
        ('i in ["a"]', {"i": 1}),
        ('type(s) == "string"', {"s": "x"}),
    ],
)
def test_always_false_comparisons_are_false(source: str, activation: dict[str, Any]) -> None:
    _, problems = ct.check(source, scope)
    assert [p.rule for p in problems] == ["cel-type"]
    assert "always false" in problems[0].message
    assert compile_cel(source).evaluate(activation) is False


@pytest.mark.parametrize(
    "source",
    [
        'i > 0 && (s == "a" || s.startsWith("b"))',
        "d > 1.5 && i < 3 && d != i",
        'size(l) > 0 && l.all(v, v.size() < 10) && "a" in l',
        'm.a + 1 == 2 && m.t.matches("^[a-z]+$")',
        'n == null || n.contains("x")',
        "has(m.a) ? m.a >= 0 : false",
        'string(i) + s == "1a"',
        "int(s) > 3 && double(i) < 2.5",
        'timestamp(s) < timestamp("2024-01-01T00:00:00Z")',
        'l.filter(v, v != "").map(v, v + "!").size() == 2',
        "dyn(i) == dyn(s)",
        "unknown_name.size() > 1 && unknown_name.whatever()",
        "type(s) == string",
        "[1, 2.5].exists(x, x > 2)",
        '{"a": 1}.a == 1',
    ],
)
def test_everyday_expressions_pass(source: str) -> None:
    _, problems = ct.check(source, scope, want=frozenset({ct.BOOL}))
    assert problems == []


@pytest.mark.parametrize(
    ("source", "rule", "offset"),
    [
        ("s.lenght() > 1", "unknown-function", 2),
        ("max(i, 2) > 1", "unknown-function", 0),
        ("s < 3", "cel-type", 2),
        ("i.size() > 0", "cel-type", 2),
        ("1 + 1.5 > 2", "cel-type", 2),
        ('s.matches("(")', "invalid-regex", 10),
        ("m.a", "condition-type", 0),
        ("i > 0 ? s : 1", "condition-type", 0),
    ],
)
def test_certain_errors_are_reported_where_they_are(source: str, rule: str, offset: int) -> None:
    _, problems = ct.check(source, scope, want=frozenset({ct.BOOL}))
    assert [(p.rule, p.offset) for p in problems] == [(rule, offset)]


def test_registered_functions_are_not_unknown() -> None:
    _, problems = ct.check("is_vip(s) && s.is_vip()", scope, functions=frozenset({"is_vip"}))
    assert problems == []


def test_refs_resolve_and_loops_stop() -> None:
    schema = {
        "type": "object",
        "$defs": {"n": {"type": "integer"}, "a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
        "properties": {"x": {"$ref": "#/$defs/n"}, "y": {"$ref": "#/$defs/a"}},
    }
    root = ct.ty_of_schema(schema)
    _, problems = ct.check('o.x < "a"', lambda name: root if name == "o" else None)
    assert [p.rule for p in problems] == ["cel-type"]
    assert ct.check('o.y < "a"', lambda name: root if name == "o" else None)[1] == []


def test_what_the_parser_does_not_know_is_never_reported() -> None:
    assert ct.check('Msg{a: 1}.a < "x"', scope) == (ct.DYN, [])
    deep = "(" * 5000 + "1" + ")" * 5000
    assert ct.check(deep, scope) == (ct.DYN, [])
