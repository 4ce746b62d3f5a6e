"""runner/jsontext.py writes exactly what the standard library writes: `json.dumps(...,
indent=2, default=str)`, and `JSONEncoder(...).encode` with the store's and the transcript's
options."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.jsontext import compact_encoder, dumps_indented


class Odd:
    def __str__(self) -> str:
        return "odd 'value'\n"


class MyStr(str):
    pass


class MyInt(int):
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


@pytest.mark.parametrize("options", OPTIONS, ids=range(len(OPTIONS)))
@pytest.mark.parametrize("value", CASES, ids=range(len(CASES)))
def test_compact_text_as_the_standard_library(options: dict[str, Any], value: Any) -> None:
    standard = json.JSONEncoder(default=str, **options)
    try:
        expected = standard.encode(value)
    except TypeError:  # sorted keys of mixed types
        with pytest.raises(TypeError):
            compact_encoder(**options)(value)
        return
    assert compact_encoder(**options)(value) == expected


@given(json_values, st.sampled_from(OPTIONS))
def test_compact_text_for_any_json_value(value: Any, options: dict[str, Any]) -> None:
    assert compact_encoder(**options)(value) == json.JSONEncoder(default=str, **options).encode(
        value
    )
