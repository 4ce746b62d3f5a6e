"""The Python fast paths (CEL subset, schema check) agree with the extension and jsonschema."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest

from runner.expr import CelEvalError, compile_cel
from runner.expr.cel import _cel, prepare
from runner.expr.fastcel import NO, compile_fast, plain_activation
from runner.plan.schemas import _surely_valid, validation_errors, validator

ACT: dict[str, Any] = {
    "x": 1,
    "y": 2,
    "s": "a",
    "t": "b",
    "u": "é",
    "f": 1.5,
    "g": float("nan"),
    "b": True,
    "n": None,
    "m": {"a": 1, "b": {"c": "d"}, "e": None, "l": [1, "x", 2.0]},
    "l": [1, 2, 3],
    "ls": ["a", "b"],
    "big": 2**63 + 5,
    "huge": 2**70,
    "neg": -(2**63),
    "bk": {True: 1},
    "tp": (1, 2),
}

SOURCES = [
    *("x", "x + 1", "x - y", "x + y == 3", "s + t", "u + 'x'", 's == "a"', "s != 'a'"),
    *("x < y", "s < t", "f < 2.5", "g < 1.0", "g == g", "b && true", "!b", "!x", "-x", "-f"),
    *("-neg", "neg - 1", "big", "big + 1", "huge", "huge + 1.0", "m", "m.a", "m.b.c", "m.zz"),
    *('m["a"]', 'm["b"]["c"]', "l[0]", "l[5]", "l[-1]", "ls[1]", "has(m.a)", "has(m.e)"),
    *("has(m.zz)", "has(x.a)", '"a" in ls', '"z" in ls', "1 in l", "1 in [1.0]", "1 in [true]"),
    *('"a" in m', "x in m", "x == 1.0", "x == null", "n == null", "m == null", "b == 1"),
    *("true ? x : zz", "false ? zz : y", "x ? 1 : 2", "false && zz", "zz && false"),
    *("zz || true", "true || zz", "1 && false", "true && 1", "zz.a", "n.a", "bk", "tp", "tp[0]"),
    *("[x, s, m]", "9223372036854775807 + 1", "(x + y) + 1", 'x == 1 && s == "a" || false'),
    *("x < y == true", "x == y == false", "m.l", "1.5 + 2.25", '"a" + 1', "s < 1", "b < false"),
    *("-9223372036854775808", "int", "size(ls)", "ls.size()", "x * 2"),
]


def _outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except Exception as e:
        return "error", type(e).__name__


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("source", SOURCES)
def test_fast_path_answers_exactly_as_the_extension(source: str) -> None:
    fast = compile_fast(source)
    want = _outcome(lambda: _cel.compile(source).execute(dict(ACT)))
    got = NO if fast is None else fast.run(ACT)
    if got is not NO:  # when it answers, it answers what the extension returns
        assert want[0] == "ok" and _same(got, want[1]), (got, want)
    # and evaluate() (fast or not) behaves as the extension does
    result = _outcome(lambda: compile_cel(source).evaluate(ACT))
    assert result[0] == want[0]
    if want[0] == "ok":
        assert _same(result[1], want[1])
    else:
        assert result[1] == "CelEvalError"


def test_fast_results_are_copies() -> None:
    act = {"m": {"l": [1, 2]}}
    out = compile_cel("m.l").evaluate(act)
    assert out == [1, 2] and out is not act["m"]["l"]


def test_an_unconvertible_value_anywhere_still_fails_as_before() -> None:
    act = {"x": 1, "d": datetime.date(2024, 1, 1)}
    assert not plain_activation(act)
    with pytest.raises(CelEvalError):
        compile_cel("x + 1").evaluate(act)
    with pytest.raises(ValueError):
        prepare(act)  # converted eagerly, as before: the error surfaces here
    lone = {"x": 1, "s": "\ud800"}
    assert not plain_activation(lone)


def test_prepared_plain_activation_evaluates_both_ways() -> None:
    act = prepare({"x": 1, "m": {"a": "b"}})
    assert act.plain
    assert compile_cel("x + 1").evaluate(act) == 2
    assert compile_cel("size(m)").evaluate(act) == 1  # not in the subset: the extension


SCHEMAS: list[Any] = [
    {
        "type": "object",
        "properties": {"i": {"type": "integer", "default": 0}},
        "additionalProperties": False,
    },
    {"additionalProperties": True, "type": "object"},
    {
        "type": "object",
        "required": ["a"],
        "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"type": "array", "items": {"type": "number"}},
        },
    },
    {"properties": {"a": {"type": "boolean"}}, "additionalProperties": {"type": "string"}},
    {"type": "array", "items": {"type": "object", "required": ["x"]}},
    {"type": "integer"},
    {"type": "string", "minLength": 2},
    {},
    True,
]
VALUES: list[Any] = [
    *(None, True, 0, 1, 1.0, 1.5, float("nan"), "", "ab", [], [1, 2.5], [1, "a"], [{"x": 1}]),
    *([{"y": 1}], {}, {"i": 1}, {"i": True}, {"i": 1.0}, {"i": "x"}, {"j": 1}, {"a": None}),
    *({"a": "s", "b": [1, 2.0]}, {"a": "s", "b": [True]}, {"a": True, "z": "s"}, (1, 2), {1: 2}),
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_schema_fast_path_never_accepts_an_invalid_value(schema: Any) -> None:
    for value in VALUES:
        valid = schema is True or validator(schema).is_valid(value)
        if _surely_valid(schema, value):
            assert valid, value
        assert (validation_errors(schema, value) == []) == valid, value
