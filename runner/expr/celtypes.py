"""Static types for CEL: the errors an expression is certain to hit, found before a run.

The `cel` extension compiles and evaluates but has no type checker, so a condition such as
`nodes.a.output.name < 3` or `size(x) > 0 && x.lenght() > 2` fails only when a run reaches it.
This module parses CEL (the full grammar the extension accepts; anything else is left alone)
and infers the set of kinds each subexpression can have from the JSON Schemas of the values
it reads. Soundness rule: a problem is reported only when it happens for *every* value the
declared types allow; a name or schema that says nothing is `dyn` and never reported.

JSON numbers are `int`, `uint` or `double` alike (a JSON `5.0` validates as an integer), so
mixing a schema number with a literal never counts as certain; literals are exact.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from runner.expr.refs import tokens

__all__ = [
    "DYN",
    "Problem",
    "Ty",
    "check",
    "describe",
    "element",
    "lazy_map",
    "parse",
    "resolve",
    "schema_kinds",
    "ty_of_schema",
    "view",
]

NULL, BOOL, INT, UINT, DOUBLE, STRING, BYTES = (
    "null",
    "bool",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
)
LIST, MAP, TIMESTAMP, DURATION, TYPE = "list", "map", "timestamp", "duration", "type"

Kinds = frozenset[str]
ALL: Kinds = frozenset(
    {NULL, BOOL, INT, UINT, DOUBLE, STRING, BYTES, LIST, MAP, TIMESTAMP, DURATION, TYPE}
)
NUM: Kinds = frozenset({INT, UINT, DOUBLE})
_K = frozenset


class Ty:
    """What a value can be: its kinds, and (for lists and maps) how to type what is inside.

    `schema`/`root`: the JSON Schema it comes from and the document its `$ref`s resolve in;
    `elem`: the element type of a list built by the expression; `fields`: member lookup for
    the activation's own objects (`nodes`, a node's view)."""

    __slots__ = ("elem", "fields", "kinds", "root", "schema")

    def __init__(
        self,
        kinds: Kinds,
        schema: Any = None,
        root: Any = None,
        elem: Ty | None = None,
        fields: Callable[[str], Ty | None] | None = None,
    ) -> None:
        self.kinds = kinds
        self.schema = schema
        self.root = root
        self.elem = elem
        self.fields = fields

    @property
    def dyn(self) -> bool:
        return self.kinds == ALL


DYN = Ty(ALL)
_BOOL = Ty(_K({BOOL}))
_INT = Ty(_K({INT}))
_STRING = Ty(_K({STRING}))
_TYPE = Ty(_K({TYPE}))


def describe(kinds: Kinds) -> str:
    """`int`, `string or null`, `number` (a JSON number: int or double): for messages."""
    if kinds >= {INT, DOUBLE}:
        rest = sorted(kinds - NUM)
        return " or ".join(["number", *rest])
    return " or ".join(sorted(kinds))


# -- schemas -----------------------------------------------------------------------------------

_TYPE_KINDS: dict[str, Kinds] = {
    "string": _K({STRING}),
    "integer": NUM,
    "number": NUM,
    "boolean": _K({BOOL}),
    "null": _K({NULL}),
    "array": _K({LIST}),
    "object": _K({MAP}),
}


def _value_kinds(v: object) -> Kinds:
    if v is None:
        return _K({NULL})
    if isinstance(v, bool):
        return _K({BOOL})
    if isinstance(v, int | float):
        return NUM
    if isinstance(v, str):
        return _K({STRING})
    if isinstance(v, list):
        return _K({LIST})
    if isinstance(v, dict):
        return _K({MAP})
    return ALL


def _pointer(root: Any, ref: str) -> Any:
    """The part of `root` a local `$ref` JSON pointer names (`#`, `#/a/b`), or None."""
    from urllib.parse import unquote

    if not ref.startswith("#"):
        return None
    frag = unquote(ref[1:])
    if frag and not frag.startswith("/"):
        return None  # an `$anchor`: not followed here, so the type says nothing
    current = root
    for raw in frag.split("/")[1:]:
        seg = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict) and seg in current:
            current = current[seg]
        elif isinstance(current, list) and seg.isdigit() and int(seg) < len(current):
            current = current[int(seg)]
        else:
            return None
    return current


def _resolve(schema: Any, root: Any, depth: int = 0) -> Any:
    """Follow `$ref`s (local only) to the schema they name; None when that cannot be done."""
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        if depth > 16:
            return None
        schema = _pointer(root, schema["$ref"])
        depth += 1
    return schema


_KINDS_MEMO: dict[tuple[int, int], tuple[Any, Any, Kinds]] = {}


def schema_kinds(schema: Any, root: Any = None, depth: int = 0) -> Kinds:
    """The kinds a value valid under `schema` can have (ALL when the schema does not say)."""
    if not isinstance(schema, dict) or depth > 16:
        return ALL
    key = (id(schema), id(root))
    hit = _KINDS_MEMO.get(key)
    if hit is not None and hit[0] is schema and hit[1] is root:
        return hit[2]
    kinds = _schema_kinds(schema, root if root is not None else schema, depth)
    if len(_KINDS_MEMO) > 20_000:
        _KINDS_MEMO.clear()
    _KINDS_MEMO[key] = (schema, root, kinds)
    return kinds


def _schema_kinds(schema: dict[str, Any], root: Any, depth: int) -> Kinds:
    if "$ref" in schema:
        target = _resolve(schema, root, depth)
        return schema_kinds(target, root, depth + 1) if isinstance(target, dict) else ALL
    kinds = ALL
    t = schema.get("type")
    if isinstance(t, str):
        kinds = _TYPE_KINDS.get(t, ALL)
    elif isinstance(t, list) and t and all(isinstance(x, str) and x in _TYPE_KINDS for x in t):
        kinds = _K().union(*(_TYPE_KINDS[x] for x in t))
    if "const" in schema:
        kinds &= _value_kinds(schema["const"])
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        kinds &= _K().union(*(_value_kinds(v) for v in enum))
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            kinds &= _K().union(*(schema_kinds(b, root, depth + 1) for b in branches))
    branches = schema.get("allOf")
    if isinstance(branches, list):
        for b in branches:
            kinds &= schema_kinds(b, root, depth + 1)
    return kinds or ALL  # a schema nothing satisfies: say nothing rather than everything


def ty_of_schema(schema: Any, root: Any = None) -> Ty:
    if not isinstance(schema, dict) or not schema:
        return DYN
    root = root if root is not None else schema
    return Ty(schema_kinds(schema, root), schema, root)


def _member(t: Ty, name: str) -> Ty:
    if t.fields is not None:
        return t.fields(name) or DYN
    schema = _resolve(t.schema, t.root)
    if not isinstance(schema, dict):
        return DYN
    props = schema.get("properties")
    if isinstance(props, dict) and name in props:
        return ty_of_schema(props[name], t.root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and not (isinstance(props, dict) and name in props):
        return ty_of_schema(extra, t.root)
    return DYN


def _element(t: Ty) -> Ty:
    """The type of a list's elements, or of a map's keys (what a macro variable ranges over)."""
    if t.elem is not None:
        return t.elem
    kinds = t.kinds - {NULL}
    if kinds == _K({MAP}) and t.schema is not None:
        return _STRING  # JSON object keys
    schema = _resolve(t.schema, t.root)
    if isinstance(schema, dict) and kinds == _K({LIST}):
        return ty_of_schema(schema.get("items"), t.root)
    return DYN


# -- parser ------------------------------------------------------------------------------------

_IDENT, _STRINGTOK, _INTTOK, _FLOATTOK, _OP, _OTHER = range(6)

# AST: tuples (tag, offset, ...); the offset points at the operator or name, for messages.
Node = tuple[Any, ...]


class _Unsupported(Exception):
    pass


_RELATIONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_PRECEDENCE = {
    "||": 1,
    "&&": 2,
    **dict.fromkeys(_RELATIONS, 3),
    **dict.fromkeys(("+", "-"), 4),
    **dict.fromkeys(("*", "/", "%"), 5),
}


class _Parser:
    def __init__(self, source: str) -> None:
        self.toks = tokens(source)
        self.i = 0
        self.source = source

    def peek(self) -> tuple[int, str]:
        if self.i < len(self.toks):
            t = self.toks[self.i]
            return t[0], t[1]
        return -1, ""

    def is_op(self, text: str) -> bool:
        k, t = self.peek()
        return k == _OP and t == text

    def take(self) -> Any:
        if self.i >= len(self.toks):
            raise _Unsupported
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, text: str) -> int:
        kind, t, off, _ = self.take()
        if kind != _OP or t != text:
            raise _Unsupported
        return int(off)

    def parse(self) -> Node:
        node = self.expr()
        if self.i != len(self.toks):
            raise _Unsupported
        return node

    def expr(self) -> Node:
        c = self.binary(1)
        if self.is_op("?"):
            off = self.take()[2]
            a = self.binary(1)
            self.expect(":")
            b = self.expr()
            return ("cond", off, c, a, b)
        return c

    def binary(self, lowest: int) -> Node:
        """Operators by precedence climbing: one call a level of nesting, not one a level of
        precedence (validate parses every expression of a spec)."""
        left = self.unary()
        toks = self.toks
        while self.i < len(toks):
            kind, text, off, _ = toks[self.i]
            prec = _PRECEDENCE.get(text) if kind == _OP or text == "in" else None
            if prec is None or prec < lowest:
                break
            self.i += 1
            left = ("bin", off, text, left, self.binary(prec + 1))
        return left

    def unary(self) -> Node:
        if self.is_op("!"):
            off = self.take()[2]
            return ("not", off, self.unary())
        if self.is_op("-"):
            off = self.take()[2]
            k, _ = self.peek()
            if k in (_INTTOK, _FLOATTOK):  # a negative literal, not a negation
                return self.member()
            return ("neg", off, self.unary())
        return self.member()

    def args(self, close: str) -> list[Node]:
        out: list[Node] = []
        if self.is_op(close):
            self.take()
            return out
        while True:
            out.append(self.expr())
            if self.is_op(","):
                self.take()
                if self.is_op(close):  # trailing comma
                    self.take()
                    return out
                continue
            self.expect(close)
            return out

    def member(self) -> Node:
        node = self.primary()
        toks = self.toks
        while self.i < len(toks):
            kind, text, off, _ = toks[self.i]
            if kind != _OP:
                break
            if text == ".":
                self.i += 1
                kind, name, off, _ = self.take()
                if kind != _IDENT:
                    raise _Unsupported
                if self.is_op("("):
                    self.i += 1
                    node = ("call", off, name, node, self.args(")"))
                else:
                    node = ("sel", off, node, name)
            elif text == "[":
                self.i += 1
                key = self.expr()
                self.expect("]")
                node = ("idx", off, node, key)
            elif text == "{":
                raise _Unsupported  # message construction: not used by flowrun
            else:
                break
        return node

    def primary(self) -> Node:
        kind, text, off, value = self.take()
        if kind == _INTTOK:
            return ("lit", off, UINT if text[-1] in "uU" else INT, value, text)
        if kind == _FLOATTOK:
            return ("lit", off, DOUBLE, None, text)
        if kind == _STRINGTOK:
            is_bytes = "b" in text[: len(text) - len(text.lstrip("rRbB"))].lower()
            return ("lit", off, BYTES if is_bytes else STRING, value, text)
        if kind == _IDENT:
            if text in ("true", "false"):
                return ("lit", off, BOOL, text == "true", text)
            if text == "null":
                return ("lit", off, NULL, None, text)
            if self.is_op("("):
                self.take()
                return ("call", off, text, None, self.args(")"))
            return ("id", off, text)
        if kind == _OP and text == ".":  # `.name`: a name from the root scope
            kind, name, _, _ = self.take()
            if kind != _IDENT:
                raise _Unsupported
            if self.is_op("("):
                self.take()
                return ("call", off, name, None, self.args(")"))
            return ("id", off, "." + name)
        if kind == _OP and text == "(":
            node = self.expr()
            self.expect(")")
            return node
        if kind == _OP and text == "[":
            return ("list", off, self.args("]"))
        if kind == _OP and text == "{":
            entries: list[tuple[Node, Node]] = []
            if self.is_op("}"):
                self.take()
                return ("map", off, entries)
            while True:
                k = self.expr()
                self.expect(":")
                entries.append((k, self.expr()))
                if self.is_op(","):
                    self.take()
                    if self.is_op("}"):
                        self.take()
                        return ("map", off, entries)
                    continue
                self.expect("}")
                return ("map", off, entries)
        raise _Unsupported


@lru_cache(maxsize=8192)
def parse(source: str) -> Node | None:
    """The expression's tree, or None when it uses something this parser does not know."""
    try:
        return _Parser(source).parse()
    except (_Unsupported, RecursionError, IndexError, ValueError):
        return None


# -- checking ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A certain error: `offset` into the expression source, and the rule it breaks."""

    offset: int
    rule: str
    message: str
    hint: str | None = None


# Conversions and other global functions: the kinds each accepts for its one argument, and
# the kinds of its result (what the extension has; anything else fails as undefined).
_GLOBALS: dict[str, tuple[Kinds, Kinds]] = {
    "size": (_K({STRING, BYTES, LIST, MAP}), _K({INT})),
    "int": (_K({INT, UINT, DOUBLE, STRING}), _K({INT})),
    "uint": (_K({INT, UINT, DOUBLE, STRING}), _K({UINT})),
    "double": (_K({INT, UINT, DOUBLE, STRING}), _K({DOUBLE})),
    "string": (_K({INT, UINT, DOUBLE, STRING, BYTES, TIMESTAMP, DURATION}), _K({STRING})),
    "bytes": (_K({STRING, BYTES}), _K({BYTES})),
    "timestamp": (_K({STRING}), _K({TIMESTAMP})),
    "duration": (_K({STRING}), _K({DURATION})),
    "type": (ALL, _K({TYPE})),
}
_TS_GETTERS = frozenset(
    {
        *("getFullYear", "getMonth", "getDayOfMonth", "getDate", "getDayOfWeek"),
        *("getDayOfYear", "getHours", "getMinutes", "getSeconds", "getMilliseconds"),
    }
)
_DURATION_GETTERS = frozenset({"getHours", "getMinutes", "getSeconds", "getMilliseconds"})
# Methods: receiver kinds, argument kinds, result kinds.
_METHODS: dict[str, tuple[Kinds, tuple[Kinds, ...], Kinds]] = {
    "size": (_K({STRING, BYTES, LIST, MAP}), (), _K({INT})),
    "contains": (_K({STRING}), (_K({STRING}),), _K({BOOL})),
    "startsWith": (_K({STRING}), (_K({STRING}),), _K({BOOL})),
    "endsWith": (_K({STRING}), (_K({STRING}),), _K({BOOL})),
    "matches": (_K({STRING}), (_K({STRING}),), _K({BOOL})),
    **{name: (_K({TIMESTAMP, DURATION}), (), _K({INT})) for name in _DURATION_GETTERS},
    **{name: (_K({TIMESTAMP}), (), _K({INT})) for name in _TS_GETTERS - _DURATION_GETTERS},
}
_TYPE_NAMES = frozenset(
    {"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type"}
)
KNOWN_FUNCTIONS = frozenset({*_GLOBALS, "dyn", "has", *_METHODS, *_MACROS})

# Binary operators: the (left, right) kind pairs that work, and the result kind of each.
_ARITH: dict[str, dict[tuple[str, str], str]] = {
    "+": {
        **{(k, k): k for k in (INT, UINT, DOUBLE, STRING, BYTES, LIST, DURATION)},
        (TIMESTAMP, DURATION): TIMESTAMP,
        (DURATION, TIMESTAMP): TIMESTAMP,
        (LIST, MAP): LIST,  # the extension appends the map's keys
    },
    "-": {
        **{(k, k): k for k in (INT, UINT, DOUBLE, DURATION)},
        (TIMESTAMP, TIMESTAMP): DURATION,
        (TIMESTAMP, DURATION): TIMESTAMP,
    },
    "*": {(k, k): k for k in (INT, UINT, DOUBLE)},
    "/": {(k, k): k for k in (INT, UINT, DOUBLE)},
    "%": {(k, k): k for k in (INT, UINT)},
}
# `-` on a bool negates it in the extension (`-true` is false), so bools are not reported.
_NEGATABLE = frozenset({INT, DOUBLE, BOOL})
_ORDERED = frozenset({INT, UINT, DOUBLE, STRING, BYTES, BOOL, TIMESTAMP, DURATION})


def _comparable(a: str, b: str) -> bool:
    """Can values of kinds a and b ever be equal (CEL: numbers compare across kinds)?"""
    return a == b or (a in NUM and b in NUM)


def _orderable(a: str, b: str) -> bool:
    return (a == b and a in _ORDERED) or (a in NUM and b in NUM)


_NUMERIC_HINT = "CEL does not convert between types: use int(x), double(x) or string(x)"


class _Checker:
    def __init__(
        self,
        scope: Callable[[str], Ty | None],
        functions: frozenset[str],
        problems: list[Problem],
    ) -> None:
        self.scope = scope
        self.functions = functions
        self.problems = problems
        self.locals: dict[str, Ty] = {}

    def fail(self, off: int, rule: str, message: str, hint: str | None = None) -> Ty:
        self.problems.append(Problem(off, rule, message, hint))
        return DYN

    def infer(self, n: Node) -> Ty:
        tag = n[0]
        if tag == "lit":
            return Ty(_K({n[2]}))
        if tag == "id":
            return self.ident(n[2])
        if tag == "sel":
            obj = self.infer(n[2])
            return _member(obj, n[3]) if MAP in obj.kinds else DYN
        if tag == "idx":
            return self.index(n)
        if tag == "call":
            return self.call(n)
        if tag == "list":
            items = [self.infer(x) for x in n[2]]
            elem = Ty(_K().union(*(t.kinds for t in items))) if items else DYN
            return Ty(_K({LIST}), elem=elem)
        if tag == "map":
            for k, v in n[2]:
                self.infer(k)
                self.infer(v)
            return Ty(_K({MAP}))
        if tag == "not":
            x = self.infer(n[2])
            if BOOL not in x.kinds:
                return self.fail(n[1], "cel-type", f"`!` needs a bool, not {describe(x.kinds)}")
            return _BOOL
        if tag == "neg":
            x = self.infer(n[2])
            signed = x.kinds & _NEGATABLE
            if not signed:
                what = describe(x.kinds)
                return self.fail(n[1], "cel-type", f"`-` needs a signed number, not {what}")
            return Ty(signed)
        if tag == "cond":
            c = self.infer(n[2])
            if BOOL not in c.kinds:
                self.fail(
                    n[1],
                    "cel-type",
                    f"the condition of `? :` must be a bool, not {describe(c.kinds)}",
                )
            a, b = self.infer(n[3]), self.infer(n[4])
            return a if a is b else Ty(a.kinds | b.kinds)
        if tag == "bin":
            return self.binary(n)
        return DYN

    def unbound(self, n: Node) -> bool:
        """True when a member chain starts at a name that is in no scope."""
        while n[0] in ("sel", "idx"):
            n = n[2]
        if n[0] != "id":
            return False
        name = n[2]
        return (
            name not in self.locals
            and self.scope(name.lstrip(".")) is None
            and name not in _TYPE_NAMES
        )

    def ident(self, name: str) -> Ty:
        if name in self.locals:
            return self.locals[name]
        found = self.scope(name.lstrip("."))
        if found is not None:
            return found
        if name in _TYPE_NAMES:
            return _TYPE
        return DYN  # an unknown name is reported by the reference check

    def index(self, n: Node) -> Ty:
        obj, key = self.infer(n[2]), n[3]
        kt = self.infer(key)
        if obj.dyn:
            return DYN
        if obj.kinds - {NULL} == _K({LIST}):
            if not kt.kinds & {INT, UINT}:
                return self.fail(
                    n[1], "cel-type", f"a list index must be an int, not {describe(kt.kinds)}"
                )
            return _element(obj)
        if obj.kinds == _K({MAP}) and key[0] == "lit" and key[2] == STRING:
            return _member(obj, key[3]) if isinstance(key[3], str) else DYN
        if not obj.kinds & {LIST, MAP}:
            return self.fail(n[1], "cel-type", f"{describe(obj.kinds)} cannot be indexed")
        return DYN

    def binary(self, n: Node) -> Ty:
        _, off, op, ln, rn = n
        left, right = self.infer(ln), self.infer(rn)
        if op in ("&&", "||"):
            for side in (left, right):
                if BOOL not in side.kinds:
                    self.fail(off, "cel-type", f"`{op}` needs bools, not {describe(side.kinds)}")
            return _BOOL
        if left.dyn or right.dyn:
            return _BOOL if op in _RELATIONS else DYN
        if op in ("==", "!="):
            if not any(_comparable(a, b) for a in left.kinds for b in right.kinds):
                always = "false" if op == "==" else "true"
                self.fail(
                    off,
                    "cel-type",
                    f"`{op}` compares {describe(left.kinds)} with {describe(right.kinds)}:"
                    f" always {always}",
                    _NUMERIC_HINT,
                )
            return _BOOL
        if op in ("<", "<=", ">", ">="):
            if not any(_orderable(a, b) for a in left.kinds for b in right.kinds):
                self.fail(
                    off,
                    "cel-type",
                    f"`{op}` cannot order {describe(left.kinds)} and {describe(right.kinds)}",
                    _NUMERIC_HINT,
                )
            return _BOOL
        if op == "in":
            if not right.kinds & {LIST, MAP}:
                self.fail(
                    off, "cel-type", f"`in` needs a list or a map, not {describe(right.kinds)}"
                )
            elif right.kinds - {NULL} == _K({LIST}):
                elem = _element(right)
                if not elem.dyn and not any(
                    _comparable(a, b) for a in left.kinds for b in elem.kinds
                ):
                    self.fail(
                        off,
                        "cel-type",
                        f"`in` looks for {describe(left.kinds)} in a list of"
                        f" {describe(elem.kinds)}: always false",
                        _NUMERIC_HINT,
                    )
            return _BOOL
        table = _ARITH[op]
        out = {table[(a, b)] for a in left.kinds for b in right.kinds if (a, b) in table}
        if not out:
            return self.fail(
                off,
                "cel-type",
                f"`{op}` is not defined for {describe(left.kinds)} and {describe(right.kinds)}",
                _NUMERIC_HINT,
            )
        joined: Ty | None = None
        if out == {LIST} and left.kinds - {NULL} == right.kinds - {NULL} == {LIST}:
            le, re_ = _element(left), _element(right)
            joined = le if le is re_ else Ty(le.kinds | re_.kinds)
        return Ty(_K(out), elem=joined)

    def call(self, n: Node) -> Ty:
        _, off, name, recv, args = n
        if name in self.functions:
            for a in args:
                self.infer(a)
            if recv is not None:
                self.infer(recv)
            return DYN
        if recv is None:
            if name == "has":
                if len(args) == 1 and args[0][0] == "sel":
                    self.infer(args[0][2])
                return _BOOL
            if name == "dyn" and len(args) == 1:
                self.infer(args[0])
                return DYN
            sig = _GLOBALS.get(name)
            if sig is None or len(args) != 1:
                if recv is None and name in _METHODS:
                    # a method called as a function: the extension only has the method form
                    return self.unknown(off, name, args, method_hint=True)
                return self.unknown(off, name, args)
            accepts, result = sig
            a = self.infer(args[0])
            if not a.kinds & accepts:
                return self.fail(
                    off,
                    "cel-type",
                    f"{name}() does not take {describe(a.kinds)}",
                    f"{name}() takes {describe(accepts)}",
                )
            return Ty(result)
        if name in _MACROS and args and args[0][0] == "id":
            return self.macro(n)
        if self.unbound(recv):  # `math.greatest(...)`: the reference check names `math`
            for a in args:
                self.infer(a)
            return DYN
        r = self.infer(recv)
        sig_m = _METHODS.get(name)
        if sig_m is None:
            for a in args:
                self.infer(a)
            methods = sorted(m for m, sig in _METHODS.items() if not r.dyn and sig[0] & r.kinds)
            near = difflib.get_close_matches(name, sorted({*_METHODS, *_MACROS}), n=1)
            hint = f"did you mean {near[0]!r}?" if near else None
            if methods and hint is None:
                hint = f"methods of {describe(r.kinds)}: {', '.join(methods)}"
            return self.fail(off, "unknown-function", f"unknown method {name!r}", hint)
        argtys = [self.infer(a) for a in args]
        accepts, params, result = sig_m
        if len(args) != len(params):
            return self.fail(
                off,
                "unknown-function",
                f"{name}() takes {len(params)} argument(s), not {len(args)}",
            )
        if not r.kinds & accepts:
            return self.fail(
                off,
                "cel-type",
                f"{describe(r.kinds)} has no method {name}()",
                f"{name}() is a method of {describe(accepts)}",
            )
        for a, p, node in zip(argtys, params, args, strict=True):
            if not a.kinds & p:
                return self.fail(off, "cel-type", f"{name}() does not take {describe(a.kinds)}")
            if name == "matches" and node[0] == "lit" and node[2] == STRING:
                problem = _regex_problem(node[4])
                if problem is not None:
                    hint = "matches() takes RE2 syntax: no lookaround, no backreferences"
                    self.fail(node[1], "invalid-regex", problem, hint)
        return Ty(result)

    def macro(self, n: Node) -> Ty:
        _, off, name, recv, args = n
        r = self.infer(recv)
        if not r.kinds & {LIST, MAP}:
            for a in args[1:]:
                self.infer(a)
            return self.fail(
                off, "cel-type", f"{name}() needs a list or a map, not {describe(r.kinds)}"
            )
        var = args[0][2]
        elem = _element(r) if r.kinds <= {LIST, MAP} else DYN
        saved = self.locals.get(var)
        self.locals[var] = elem
        try:
            bodies = [self.infer(a) for a in args[1:]]
        finally:
            if saved is None:
                self.locals.pop(var, None)
            else:
                self.locals[var] = saved
        predicates = bodies if name != "map" else bodies[:-1]
        for body, node in zip(predicates, args[1:], strict=False):
            if BOOL not in body.kinds:
                self.fail(
                    node[1],
                    "cel-type",
                    f"the predicate of {name}() must be a bool, not {describe(body.kinds)}",
                )
        if name == "map":
            return Ty(_K({LIST}), elem=bodies[-1] if bodies else DYN)
        if name == "filter":
            return Ty(_K({LIST}), elem=elem)
        return _BOOL

    def unknown(self, off: int, name: str, args: Iterable[Node], method_hint: bool = False) -> Ty:
        for a in args:
            self.infer(a)
        options = {*_GLOBALS, "has", "dyn", *self.functions} | (
            set(_METHODS) if method_hint else set()
        )
        near = difflib.get_close_matches(name, sorted(options), n=1)
        hint = (
            f"{name} is a method: write x.{name}(...)"
            if method_hint
            else (f"did you mean {near[0]!r}?" if near else None)
        )
        if hint is None:
            hint = "CEL functions here: " + ", ".join(sorted(_GLOBALS | {"has": 0}))
        return self.fail(off, "unknown-function", f"unknown function {name!r}", hint)


@lru_cache(maxsize=1024)
def _regex_problem(literal: str) -> str | None:
    """Why the extension rejects a `matches()` pattern literal (its own regex engine decides)."""
    from runner.expr.cel import _cel

    try:
        _cel.compile(f"''.matches({literal})").execute({})
    except Exception as exc:  # the extension's error types vary; its message says which
        text = str(exc)
        if "regex" not in text:
            return None
        detail = re.sub(r"\s+", " ", text.rsplit("error:", 1)[-1]).strip()
        detail = detail.split(". Check function")[0].strip()
        return f"invalid regular expression: {detail}"
    return None


def check(
    source: str,
    scope: Callable[[str], Ty | None],
    *,
    functions: frozenset[str] = frozenset(),
    want: Kinds | None = None,
) -> tuple[Ty, list[Problem]]:
    """Infer the type of `source` in `scope`; list the problems it is certain to have.

    `functions`: registered custom functions (their calls are `dyn`). `want`: the kinds the
    result must have (a condition wants bool); a result with none of them is a problem.
    """
    tree = parse(source)
    if tree is None:
        return DYN, []
    problems: list[Problem] = []
    try:
        ty = _Checker(scope, functions, problems).infer(tree)
    except RecursionError:
        return DYN, []
    if want is not None and not problems and not ty.dyn and not ty.kinds & want:
        offset = len(source) - len(source.lstrip())
        problems.append(
            Problem(
                offset,
                "condition-type",
                f"a condition must be a bool; this is {describe(ty.kinds)}",
                'compare it, e.g. `x > 0`, `x != ""` or `has(x.field)`',
            )
        )
    return ty, problems


def element(t: Ty) -> Ty:
    """The type of what a list holds (or a map's keys): what `map` and the macros range over."""
    return _element(t)


def resolve(schema: Any, root: Any) -> Any:
    """`schema` with its local `$ref`s followed (None when one cannot be)."""
    return _resolve(schema, root)


def view(fields: Mapping[str, Ty]) -> Ty:
    """A map whose members have known types (a node's `{output, status, error}` view)."""
    return Ty(_K({MAP}), fields=fields.get)


def lazy_map(lookup: Callable[[str], Ty | None]) -> Ty:
    return Ty(_K({MAP}), fields=lookup)
