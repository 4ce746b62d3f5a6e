"""JSON text as the standard library writes it, faster: indented, and compact with options.

perf (issue 26): `--output json` prints a run's whole result; with `indent`, the standard
library encodes in Python through nested generators (its C encoder only writes compact text),
which cost a `flowrun execute` of a 500-node chain ~12 ms. `dumps_indented` writes the same text
byte for byte (tests/unit/test_jsontext.py holds it to that), strings and numbers through the
standard library's own functions; anything that is not JSON is written as `str()` of it.

perf (issues 11, 19): `json.dumps` with options, and `JSONEncoder.encode`, build a new C encoder
on every call, a third of the time of a small payload; the store writes ~7 payloads a node and
the transcript 3 lines. `compact_encoder` makes that C encoder once.

perf (issue 19): even made once, the C encoder took ~1.5 µs for a small payload and ~2.8 µs
for a transcript line, ~20 µs of every node. With compact separators, `compact_encoder` writes
through orjson whenever it writes the same value, and through the C encoder otherwise: see
`_orjson_encoder` for how it knows, and where the two texts may differ.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from json.encoder import INFINITY, encode_basestring, encode_basestring_ascii
from typing import Any

try:
    import orjson
except ImportError:  # not installed: the C encoder alone
    orjson = None  # type: ignore[assignment]

__all__ = [
    "ORJSON_PASSTHROUGH",
    "compact_encoder",
    "dumps_indented",
    "enum_or_str",
    "json_copy",
    "orjson",
]

# what orjson must refuse (for the caller to treat otherwise): dataclasses, datetimes, and
# subclasses of str, int, dict and list
ORJSON_PASSTHROUGH = (
    0
    if orjson is None
    else orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


# what an encoder made once must write exactly as JSONEncoder does before it is used
_SAMPLE = {
    "b": [1, 2.5, None, True, 'é\n"', float("inf"), (3, "t")],
    "a": {"z": {}, "y": [], "é": -0.0},
    "c": object,
    "d": {7: 1e300, 8: None},
}


def enum_or_str(o: Any) -> Any:
    """The `default` of the compact encoders: what json writes for a value it has no rule for.
    An Enum member is written as its value (as json itself does for members of int, str and
    float enums, and as orjson does for every enum); anything else as `str()` of it."""
    return o.value if isinstance(o, enum.Enum) else str(o)


def compact_encoder(
    *, sort_keys: bool, separators: tuple[str, str], ensure_ascii: bool, finite: bool = False
) -> Callable[[Any], str]:
    """`json.JSONEncoder(sort_keys=…, separators=…, ensure_ascii=…, default=enum_or_str)
    .encode`, the same text, with json's C encoder made once instead of on every call; with
    compact separators, the same JSON value, through orjson where it can (`_orjson_encoder`).

    `finite` (compact separators only): NaN and the infinities are written as null, as strict
    JSON (RFC 8259) has no other way to write them; for text read by other programs (a
    transcript line, a span attribute), where json's `NaN` would make the line unreadable.

    No check for circular references (a circular value is a RecursionError, not a
    ValueError): callers encode values they have just built or copied. Without the C encoder,
    or if it would not write the same text, this is JSONEncoder's own `encode`.
    """
    if finite and separators != (",", ":"):
        raise ValueError("finite text is written with compact separators only")
    reference = json.JSONEncoder(
        sort_keys=sort_keys, separators=separators, ensure_ascii=ensure_ascii, default=enum_or_str
    ).encode
    loose = _standard(reference, sort_keys, separators, ensure_ascii)
    standard = (lambda value: loose(_finite(value))) if finite else loose
    if orjson is None or separators != (",", ":"):
        return standard
    return _orjson_encoder(standard, sort_keys=sort_keys, ensure_ascii=ensure_ascii, finite=finite)


def _standard(
    reference: Callable[[Any], str],
    sort_keys: bool,
    separators: tuple[str, str],
    ensure_ascii: bool,
) -> Callable[[Any], str]:
    """`reference` through json's C encoder made once, when it writes the same text."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return reference
    item_sep, key_sep = separators
    strings = encode_basestring_ascii if ensure_ascii else encode_basestring
    try:
        encode = make(None, enum_or_str, strings, None, key_sep, item_sep, sort_keys, False, True)

        def c_json(value: Any) -> str:
            return "".join(encode(value, 0))

        if c_json(_SAMPLE) != reference(_SAMPLE) or c_json("é") != reference("é"):
            return reference
    except Exception:  # a Python whose C encoder takes other arguments
        return reference
    return c_json


def _finite(value: Any) -> Any:
    """`value` with NaN and the infinities as None (new containers on the way)."""
    if isinstance(value, float):
        return value if value - value == 0.0 else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, enum.Enum):
        return _finite(value.value)
    return value


def _orjson_encoder(
    standard: Callable[[Any], str], *, sort_keys: bool, ensure_ascii: bool, finite: bool
) -> Callable[[Any], str]:
    """`standard`'s JSON value, written by orjson when it writes that same value.

    orjson is told to refuse what json writes through `default` or its own rules (dataclasses,
    datetimes, subclasses of str, int, dict and list: `OPT_PASSTHROUGH_*`), and refuses
    non-string keys, integers beyond 64 bits and nesting deeper than 254 itself: the standard
    encoder writes those. Of what it accepts, it writes as json does every str, number, bool,
    None, dict, list, tuple (an array, as json's), Enum member (its value, as `enum_or_str`)
    and UUID (its text, as `str()`); only NaN and the infinities it writes otherwise, as null.
    So a text without `null` in it is json's value; one with `null` is read back, and if it
    does not read back equal, the standard encoder writes the value (perf, issue 19: reading
    every text back was ~5% of a node). Under `finite` null is what NaN should be, and under
    ensure_ascii a text with anything outside ASCII goes to the standard encoder too.

    The text can differ from the standard encoder's in how it writes a float under 1e-4
    (0.00001 and 1e-7 for 1e-05 and 1e-07) and in not escaping DEL; never in the value it reads
    back as, key order included (tests/unit/test_jsontext.py). An `orjson.Fragment` is written
    as the JSON text it holds.
    """
    assert orjson is not None
    option = ORJSON_PASSTHROUGH | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    dumps, loads, refused = orjson.dumps, orjson.loads, orjson.JSONEncodeError

    def fast(value: Any) -> str:
        try:
            raw = dumps(value, None, option)
        except refused:
            return standard(value)
        if ensure_ascii and not raw.isascii():
            return standard(value)
        if not finite and b"null" in raw and type(value) is not str and loads(raw) != value:
            return standard(value)
        return raw.decode()

    return fast


def json_copy(value: Any) -> Any:
    """`json.loads(json.dumps(value))`: what a JSON round trip makes of a value (TypeError or
    ValueError for what json cannot write). perf (issue 19): through orjson when its copy is
    equal to the value (so json's would be too), else through json itself."""
    if orjson is not None:
        try:
            copy = orjson.loads(orjson.dumps(value, None, ORJSON_PASSTHROUGH))
        except orjson.JSONEncodeError:
            pass
        else:
            if copy == value:
                return copy
    return json.loads(json.dumps(value))


def _float(o: float) -> str:
    if o != o:
        return "NaN"
    if o == INFINITY:
        return "Infinity"
    if o == -INFINITY:
        return "-Infinity"
    return float.__repr__(o)


def _key(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, float):
        return _float(k)
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    if isinstance(k, int):
        return int.__repr__(k)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")


def dumps_indented(value: Any, indent: int = 2) -> str:
    """`json.dumps(value, indent=indent, default=str)`, the same text."""
    out: list[str] = []
    app = out.append
    enc = encode_basestring_ascii
    step = " " * indent
    active: set[int] = set()

    def write(o: Any, pad: str) -> None:
        t = type(o)
        if t is str:
            app(enc(o))
        elif o is None:
            app("null")
        elif o is True:
            app("true")
        elif o is False:
            app("false")
        elif t is int:
            app(int.__repr__(o))
        elif t is float:
            app(_float(o))
        elif isinstance(o, dict):
            if not o:
                app("{}")
                return
            _enter(o)
            inner = pad + step
            head = "{\n" + inner
            for k, v in o.items():
                app(head + enc(_key(k)) + ": ")
                head = ",\n" + inner
                write(v, inner)
            app("\n" + pad + "}")
            active.discard(id(o))
        elif isinstance(o, list | tuple):
            if not o:
                app("[]")
                return
            _enter(o)
            inner = pad + step
            head = "[\n" + inner
            for v in o:
                app(head)
                head = ",\n" + inner
                write(v, inner)
            app("\n" + pad + "]")
            active.discard(id(o))
        elif isinstance(o, str):
            app(enc(o))
        elif isinstance(o, int):
            app(int.__repr__(o))
        elif isinstance(o, float):
            app(_float(o))
        else:
            write(str(o), pad)

    def _enter(o: Any) -> None:
        if id(o) in active:
            raise ValueError("Circular reference detected")
        active.add(id(o))

    write(value, "")
    return "".join(out)
