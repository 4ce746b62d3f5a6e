"""JSON text as `json.dumps(value, indent=2, default=str)` writes it, about twice as fast.

perf (issue 26): `--output json` prints a run's whole result; with `indent`, the standard
library encodes in Python through nested generators (its C encoder only writes compact text),
which cost a `flowrun execute` of a 500-node chain ~12 ms. This encoder writes the same text
byte for byte (tests/unit/test_jsontext.py holds it to that), strings and numbers through the
standard library's own functions; anything that is not JSON is written as `str()` of it.
"""

from __future__ import annotations

from json.encoder import INFINITY, encode_basestring_ascii
from typing import Any

__all__ = ["dumps_indented"]


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
