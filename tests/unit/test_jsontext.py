"""runner/jsontext.py writes exactly what the standard library writes: `json.dumps(...,
indent=2, default=str)`, and `JSONEncoder(...).encode` with the store's and the transcript's
options."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.jsontext import compact_encoder, dumps_indented, json_copy


class Odd:
    def __str__(self) -> str:
        return "odd 'value'\n"


class MyStr(str):
    pass


class MyInt(int):
    pass


class Color(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Point:
    x: int


class MyDict(dict[str, Any]):
    pass


CASES: list[Any] = [
    {},
    [],
    (),
    "",
    'é\n"\\\u2028\x00',
    0,
    -0.0,
    1e300,
    10**40,
    float("inf"),
    float("-inf"),
    float("nan"),
    True,
    None,
    {"a": [], "b": {}, "c": [{}], "d": [[1, [2, {"e": None}]]]},
    {1: "int key", 2.5: "float key", False: "bool key", None: "null key", "s": (1, 2)},
    {"odd": Odd(), "sub": MyStr("x"), "n": MyInt(7)},
    [Odd(), {MyStr("k"): MyInt(3)}],
    # values orjson (the compact encoders' fast path) would write otherwise, or refuses
    {"small": [1e-05, 7.5e-05, 1e-07, 5e-324, -3e-09], "big": [1e16, 1.5e300, 2**64, -(2**63) - 1]},
    {"nan": [float("nan")], "inf": {"x": float("inf")}, "null": None},
    {"enum": Color.RED, "int_enum": Level.HIGH, "tuple": (1, [2, (3,)])},
    {"when": datetime.datetime(2026, 12, 6, 20, 0), "point": Point(1), "mine": MyDict(a=1)},
    {"del": "a\x7fb", "control": "\x01\x1f\t\u2028", "astral": "\U0001f600", "é": "ü"},
    [{"z": 1, "a": 2, "é": 3, "\U0001f600": 4, "B": 5}],
    [
        [
            [
                [
                    [
                        [
                            [
                                [
                                    [
                                        [
                                            [
                                                [
                                                    [
                                                        [
                                                            [
                                                                [
                                                                    [
                                                                        [
                                                                            [
                                                                                [
                                                                                    [
                                                                                        [
                                                                                            [
                                                                                                [
                                                                                                    [
                                                                                                        [
                                                                                                            [
                                                                                                                [
                                                                                                                    [
                                                                                                                        [
                                                                                                                            [
                                                                                                                                [
                                                                                                                                    [
                                                                                                                                        [
                                                                                                                                            [
                                                                                                                                                [
                                                                                                                                                    [
                                                                                                                                                        [
                                                                                                                                                            [
                                                                                                                                                                [
                                                                                                                                                                    [
                                                                                                                                                                        [
                                                                                                                                                                            [
                                                                                                                                                                                [
                                                                                                                                                                                    [
                                                                                                                                                                                        [
                                                                                                                                                                                            [
                                                                                                                                                                                                [
                                                                                                                                                                                                    [
                                                                                                                                                                                                        [
                                                                                                                                                                                                            [
                                                                                                                                                                                                                [
                                                                                                                                                                                                                    [
                                                                                                                                                                                                                        [
                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                                        [
                                                                                                                                                                                                                                                            [
                                                                                                                                                                                                                                                                [
                                                                                                                                                                                                                                                                    [
                                                                                                                                                                                                                                                                        []
                                                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                                ]
                                                                                                                                                                                                                            ]
                                                                                                                                                                                                                        ]
                                                                                                                                                                                                                    ]
                                                                                                                                                                                                                ]
                                                                                                                                                                                                            ]
                                                                                                                                                                                                        ]
                                                                                                                                                                                                    ]
                                                                                                                                                                                                ]
                                                                                                                                                                                            ]
                                                                                                                                                                                        ]
                                                                                                                                                                                    ]
                                                                                                                                                                                ]
                                                                                                                                                                            ]
                                                                                                                                                                        ]
                                                                                                                                                                    ]
                                                                                                                                                                ]
                                                                                                                                                            ]
                                                                                                                                                        ]
                                                                                                                                                    ]
                                                                                                                                                ]
                                                                                                                                            ]
                                                                                                                                        ]
                                                                                                                                    ]
                                                                                                                                ]
                                                                                                                            ]
                                                                                                                        ]
                                                                                                                    ]
                                                                                                                ]
                                                                                                            ]
                                                                                                        ]
                                                                                                    ]
                                                                                                ]
                                                                                            ]
                                                                                        ]
                                                                                    ]
                                                                                ]
                                                                            ]
                                                                        ]
                                                                    ]
                                                                ]
                                                            ]
                                                        ]
                                                    ]
                                                ]
                                            ]
                                        ]
                                    ]
                                ]
                            ]
                        ]
                    ]
                ]
            ]
        ]
    ],
]


@pytest.mark.parametrize("value", CASES, ids=range(len(CASES)))
def test_same_text_as_the_standard_library(value: Any) -> None:
    assert dumps_indented(value) == json.dumps(value, indent=2, default=str)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=30,
)


@given(json_values)
def test_same_text_for_any_json_value(value: Any) -> None:
    assert dumps_indented(value) == json.dumps(value, indent=2, default=str)


def test_a_key_json_cannot_hold_and_a_cycle_are_refused_as_the_standard_library_does() -> None:
    with pytest.raises(TypeError):
        json.dumps({(1, 2): 1}, indent=2, default=str)
    with pytest.raises(TypeError):
        dumps_indented({(1, 2): 1})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError):
        dumps_indented(loop)


# the store's payloads, the transcript's lines, and the other two combinations
OPTIONS = [
    {"sort_keys": sk, "separators": sep, "ensure_ascii": ea}
    for sk in (True, False)
    for sep in ((",", ":"), (", ", ": "))
    for ea in (True, False)
]


def _default(o: Any) -> Any:
    """The compact encoders' contract for what JSON has no rule for: an Enum member as its value
    (as json writes int and str enums itself), anything else as its str()."""
    return o.value if isinstance(o, enum.Enum) else str(o)


def _same_output(options: dict[str, Any], value: Any) -> None:
    """The standard library's text, or (compact separators, written through orjson) text that
    reads back as the same JSON value, in the same key order, within ensure_ascii."""
    expected = json.JSONEncoder(default=_default, **options).encode(value)
    got = compact_encoder(**options)(value)
    if options["separators"] != (",", ":") or got == expected:
        assert got == expected
        return
    if options["ensure_ascii"]:
        assert got.isascii()
    # read back and written again by json itself (keys in the order read, NaN as NaN)
    assert json.dumps(json.loads(got)) == json.dumps(json.loads(expected))


@pytest.mark.parametrize("options", OPTIONS, ids=range(len(OPTIONS)))
@pytest.mark.parametrize("value", CASES, ids=range(len(CASES)))
def test_compact_text_as_the_standard_library(options: dict[str, Any], value: Any) -> None:
    try:
        json.JSONEncoder(default=_default, **options).encode(value)
    except TypeError:  # sorted keys of mixed types
        with pytest.raises(TypeError):
            compact_encoder(**options)(value)
        return
    _same_output(options, value)


@settings(max_examples=300)
@given(json_values, st.sampled_from(OPTIONS))
def test_compact_text_for_any_json_value(value: Any, options: dict[str, Any]) -> None:
    _same_output(options, value)


@pytest.mark.parametrize("value", [1e-05, [7.5e-05, {"b": 1e-07, "a": "\x7f"}], 0.5, "x"])
def test_the_compact_store_text_reads_back_as_the_same_value(value: Any) -> None:
    store = compact_encoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    text = store(value)
    assert text.isascii() and json.loads(text) == value


def test_values_orjson_would_write_otherwise_are_written_by_the_standard_library() -> None:
    store = compact_encoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    tricky = {
        "nan": float("nan"),
        "enum": Color.RED,
        "tuple": (1, 2),
        "when": datetime.datetime(2026, 1, 2),
        "point": Point(1),
        "big": 2**70,
    }
    for key, value in tricky.items():
        assert store({key: value}) == json.dumps(
            {key: value}, sort_keys=True, separators=(",", ":"), default=_default
        ), key


@pytest.mark.parametrize("value", CASES, ids=range(len(CASES)))
def test_json_copy_is_the_round_trip_of_the_standard_library(value: Any) -> None:
    try:
        expected = json.loads(json.dumps(value))
    except (TypeError, ValueError) as e:
        with pytest.raises(type(e)):
            json_copy(value)
        return
    got = json_copy(value)
    assert json.dumps(got) == json.dumps(expected)  # NaN as NaN, key order, lists for tuples
    assert type(got) is type(expected)


@given(json_values)
def test_json_copy_of_any_json_value(value: Any) -> None:
    got = json_copy(value)
    assert json.dumps(got) == json.dumps(json.loads(json.dumps(value)))
    assert got is not value or not isinstance(value, dict | list)


def _nulled(value: Any) -> Any:
    """What strict JSON holds of a value: NaN and the infinities as null, tuples as lists."""
    if isinstance(value, float) and value - value != 0.0:
        return None
    if isinstance(value, dict):
        return {k: _nulled(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nulled(v) for v in value]
    return value


FINITE = {"sort_keys": True, "separators": (",", ":"), "ensure_ascii": False, "finite": True}


@pytest.mark.parametrize("value", CASES, ids=range(len(CASES)))
def test_finite_text_writes_nan_and_infinities_as_null_and_the_rest_as_json(value: Any) -> None:
    """The transcript's lines: strict JSON (no NaN token), otherwise the standard value."""
    options = {k: v for k, v in FINITE.items() if k != "finite"}
    try:
        expected = json.JSONEncoder(default=_default, **options).encode(_nulled(value))
    except TypeError:  # sorted keys of mixed types
        with pytest.raises(TypeError):
            compact_encoder(**FINITE)(value)
        return
    got = compact_encoder(**FINITE)(value)
    json.loads(got, parse_constant=lambda c: pytest.fail(f"{c} in finite text {got!r}"))
    assert json.dumps(json.loads(got)) == json.dumps(json.loads(expected))


@settings(max_examples=200)
@given(json_values)
def test_finite_text_of_any_json_value(value: Any) -> None:
    got = compact_encoder(**FINITE)(value)
    expected = _nulled(json.loads(json.dumps(value)))
    assert json.dumps(json.loads(got)) == json.dumps(expected, sort_keys=True)


def test_finite_text_needs_compact_separators() -> None:
    with pytest.raises(ValueError):
        compact_encoder(sort_keys=True, separators=(", ", ": "), ensure_ascii=False, finite=True)


@pytest.mark.parametrize(
    "value",
    [
        {"s": "null", "x": float("nan")},
        [None, float("inf"), "nullable"],
        {"null": [float("-inf")]},
        {"none": None, "e": Color.RED, "ie": Level.HIGH},
    ],
)
def test_the_store_text_keeps_nan_beside_null_and_enums_as_their_value(value: Any) -> None:
    """Text without `null` is taken as orjson writes it; text with it is read back first, so a
    NaN beside a null, or a "null" in a string, is still written as json writes it."""
    store = compact_encoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert store(value) == json.dumps(
        value, sort_keys=True, separators=(",", ":"), default=_default
    )
