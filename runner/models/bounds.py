"""Bounded output schemas: the grammar a constrained decoder follows must close within max_tokens.

A JSON-Schema grammar keeps a small model's answer well-formed, but a free string, an array
without `maxItems` or a pattern with `+` lets it write until the token limit cuts the answer
mid-string, and a cut answer is not JSON. `bound_schema` returns a copy of an output schema
whose every string, array and pattern repetition has an upper bound, tightened until the
longest answer the schema admits fits the token limit. The bound counts one token per
character of the answer (a token is never shorter than one character), so an answer that
follows the bounded grammar closes before `max_tokens` (escapes such as `\\u00e9` aside, which
the grammar allows and a model rarely writes).

Only the grammar is tightened: flowrun still validates the answer against the node's own
schema, and anything the bounded schema admits is admitted by the original one, because a
bound is only ever lowered, never below the schema's own minimum.
"""

from __future__ import annotations

import json
import re
from typing import Any

DEFAULT_MAX_LENGTH = 200  # characters of a string whose schema sets no maxLength
DEFAULT_MAX_ITEMS = 8  # items of an array whose schema sets no maxItems
PATTERN_REPEAT = 12  # `+` and `*` in a pattern without maxLength become `{1,12}` and `{0,12}`
COMFORT_LENGTH = 48  # tightening shortens free strings to this before it trims arrays
COMFORT_ITEMS = 2  # and trims arrays to this before it shortens strings further
MIN_FREE_LENGTH = 12  # the shortest a free string is made (unless its minLength is longer)
CLOSE_MARGIN = 4  # tokens kept free for the end-of-turn token after the answer

_NUMBER = 1 + 16 + 1 + 16 + 2 + 16 + 1  # -integral.fraction e-integral, then a space
_INTEGER = 1 + 16 + 1
_OTHER_FORMAT = 40  # date-time and the other string formats llama.cpp encodes


class Unbounded(Exception):
    """A part of the schema (a free-form object, a $ref) admits answers of any length."""


def _pattern_repeat(pattern: str, repeat: int) -> str:
    """`pattern` with its unbounded quantifiers (`+`, `*`, `{m,}`) bounded by `repeat`."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "+":
            c = f"{{1,{max(1, repeat)}}}"
        elif c == "*":
            c = f"{{0,{repeat}}}"
        elif c == "{":
            end = pattern.find("}", i)
            m = re.fullmatch(r"\{(\d+),\}", pattern[i : end + 1]) if end > 0 else None
            if m:
                low = int(m.group(1))
                out.append(f"{{{low},{max(low, repeat)}}}")
                i = end + 1
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _pattern_length(pattern: str) -> int:
    """The longest match of a bounded, anchored pattern (quantifiers as in `_pattern_repeat`)."""
    body = pattern.removeprefix("^").removesuffix("$")

    def seq(i: int) -> tuple[int, int]:
        """Longest alternative from `i` up to a `)` or the end; returns (length, next index)."""
        best, total = 0, 0
        while i < len(body) and body[i] != ")":
            if body[i] == "|":
                best, total = max(best, total), 0
                i += 1
                continue
            if body[i] == "(":
                j = i + 1
                if body.startswith("?:", j):
                    j += 2
                atom, i = seq(j)
                i += 1  # the ")"
            elif body[i] == "[":
                j = i + 1
                while j < len(body) and body[j] != "]":
                    j += 2 if body[j] == "\\" else 1
                atom, i = 1, j + 1
            elif body[i] == "\\":
                atom, i = 1, i + 2
            else:
                atom, i = 1, i + 1
            times = 1
            if i < len(body) and body[i] in "?+*":
                times = 1 if body[i] == "?" else PATTERN_REPEAT
                i += 1
            elif i < len(body) and body[i] == "{":
                end = body.index("}", i)
                bounds = body[i + 1 : end].split(",")
                times = int(bounds[-1] or bounds[0] or PATTERN_REPEAT)
                i = end + 1
            total += atom * times
        return max(best, total), i

    return seq(0)[0]


def _walk(schema: Any, visit: Any) -> None:
    """Call `visit` on every subschema, parents first."""
    if not isinstance(schema, dict):
        return
    visit(schema)
    for key in ("properties", "$defs", "definitions"):
        for sub in (schema.get(key) or {}).values():
            _walk(sub, visit)
    for key in ("items", "additionalProperties", "not"):
        _walk(schema.get(key), visit)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for sub in schema.get(key) or []:
            _walk(sub, visit)


def _is_free_string(s: dict[str, Any]) -> bool:
    return s.get("type") == "string" and not {"enum", "const", "pattern", "format"} & s.keys()


def longest(schema: Any) -> int:
    """Characters of the longest JSON text the grammar of `schema` admits; `Unbounded` if none."""
    if not isinstance(schema, dict) or "$ref" in schema:
        raise Unbounded("a $ref or a schema that is not an object")
    if "const" in schema:
        return len(json.dumps(schema["const"])) + 1
    if "enum" in schema:
        return max(len(json.dumps(v)) for v in schema["enum"]) + 1
    union = schema.get("anyOf") or schema.get("oneOf")
    if union:
        return max(longest(s) for s in union)
    kind = schema.get("type")
    if isinstance(kind, list):
        return max(longest({**schema, "type": k}) for k in kind)
    if kind == "object" or (kind is None and "properties" in schema):
        extra = schema.get("additionalProperties")
        if extra not in (None, False) or not schema.get("properties"):
            raise Unbounded("an object that admits any keys")
        props = schema["properties"]
        inner = sum(len(json.dumps(k)) + 2 + longest(v) for k, v in props.items())
        return 2 + inner + 2 * max(len(props) - 1, 0) + 1
    if kind == "array" or (kind is None and "items" in schema):
        items = schema.get("items")
        if isinstance(items, list) or items is None or schema.get("maxItems") is None:
            raise Unbounded("an array without an item schema or a maxItems")
        n = int(schema["maxItems"])
        return 2 + n * longest(items) + 2 * max(n - 1, 0) + 1
    if kind == "string" or kind is None:
        if "pattern" in schema:
            return 2 + _pattern_length(schema["pattern"]) + 1
        if "format" in schema:
            return _OTHER_FORMAT
        if schema.get("maxLength") is None:
            raise Unbounded("a string without a maxLength")
        return 2 + int(schema["maxLength"]) + 1
    if kind == "integer":
        return _INTEGER
    if kind == "number":
        return _NUMBER
    if kind == "boolean":
        return 6
    if kind == "null":
        return 5
    raise Unbounded(f"a schema of type {kind!r}")


class _Bounded:
    """One string, pattern or array of the copied schema, with the bound the grammar gets."""

    def __init__(
        self, schema: dict[str, Any], key: str, bound: int, *, floor: int, original: str = ""
    ) -> None:
        self.schema, self.key, self.floor, self.original = schema, key, floor, original
        self.bound = -1
        self.lower(max(bound, floor))

    def lower(self, bound: int) -> bool:
        """Set the bound (never below the schema's own minimum); False when it did not change."""
        bound = max(bound, self.floor)
        if bound == self.bound:
            return False
        self.bound = bound
        if self.key == "pattern":
            self.schema["pattern"] = _pattern_repeat(self.original, bound)
        else:
            self.schema[self.key] = bound
        return True


def _weight(b: _Bounded) -> int:
    """The characters an array's items can take: the array that trims best."""
    try:
        return b.bound * longest(b.schema["items"])
    except Unbounded:
        return 0


def bound_schema(schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """A copy of `schema` whose grammar admits no answer longer than `max_tokens` tokens.

    Defaults first (`maxLength` on free strings, `maxItems` on arrays, bounded pattern
    repetition), then, while the longest admitted answer is still too long, free strings are
    shortened and arrays trimmed, in stages so that neither is sacrificed whole to the other. A
    schema that admits free-form objects is returned with its defaults only: no bound closes it.
    """
    out: dict[str, Any] = json.loads(
        json.dumps(schema)
    )  # not deepcopy: YAML anchors must not stay shared
    strings: list[_Bounded] = []
    arrays: list[_Bounded] = []

    def defaults(s: dict[str, Any]) -> None:
        kind = s.get("type")
        if kind == "string" and "pattern" in s:
            # the grammar takes a pattern's length from its quantifiers, never from maxLength
            cap = min(int(s.get("maxLength", PATTERN_REPEAT)), DEFAULT_MAX_LENGTH)
            strings.append(_Bounded(s, "pattern", cap, floor=0, original=s["pattern"]))
        elif _is_free_string(s):
            cap = min(int(s.get("maxLength", DEFAULT_MAX_LENGTH)), DEFAULT_MAX_LENGTH)
            strings.append(_Bounded(s, "maxLength", cap, floor=int(s.get("minLength", 0))))
        elif kind == "array" and isinstance(s.get("items"), dict):
            cap = min(int(s.get("maxItems", DEFAULT_MAX_ITEMS)), DEFAULT_MAX_ITEMS)
            arrays.append(_Bounded(s, "maxItems", cap, floor=int(s.get("minItems", 0))))

    _walk(out, defaults)
    room = max_tokens - CLOSE_MARGIN
    # shorten strings to a useful length first, then trim arrays, then both down to their floors
    phases = (
        (strings, COMFORT_LENGTH),
        (arrays, COMFORT_ITEMS),
        (strings, MIN_FREE_LENGTH),
        (arrays, 0),
    )
    for parts, floor in phases:
        while True:
            try:
                size = longest(out)
            except Unbounded:
                return out
            if size <= room:
                return out
            if parts is arrays:
                # one item a round, off the array that holds the most: items are large
                wide = [b for b in parts if b.bound > max(b.floor, min(floor, b.bound))]
                changed = bool(wide) and max(wide, key=_weight).lower(
                    max(wide, key=_weight).bound - 1
                )
            else:
                changed = False
                for b in parts:
                    target = min(int(b.bound * room / size), b.bound - 1)
                    changed |= b.lower(max(min(floor, b.bound), target))
            if not changed:
                break
    return out  # the schema's own minimums are longer than the limit
