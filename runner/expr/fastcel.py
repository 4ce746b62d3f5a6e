"""A Python fast path for the simplest CEL expressions; the Rust extension stays the authority.

perf (issue 11): the `cel` extension converts every activation value into CEL on each call by
trying a chain of failing extractions (a string costs ~2 µs, a small nested map ~15 µs), so a
binding such as `nodes.a.output.i + 1` cost ~18 µs a node and a policy rule ~6 µs a call.
Expressions made only of names, member selection, indexing, literals, `has()`, `!`, `-`,
`+`, `-`, comparisons, `in`, `&&`, `||` and `?:` are compiled here into Python closures.

Soundness rule: a closure either returns exactly what the extension would return, or `NO`,
and the caller then asks the extension (which also produces every error message). So the
closures only answer on plain values whose CEL meaning is certain: ints within int64, same-type
comparisons, no NaN ordering, checked overflow; anything else gives `NO`. And only when the
whole activation is made of values the extension converts without error (`plain_activation`),
since the extension converts every variable, used or not, and fails on any it cannot convert.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Final

__all__ = ["NO", "FastExpr", "compile_fast", "plain_activation", "plain_value"]


class _No:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO"


NO: Final = _No()
"""Returned when the fast path cannot answer; the extension must evaluate instead."""

_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_U64_END: Final = 2**64

_Fn = Callable[[Mapping[str, Any]], Any]


# ---------------------------------------------------------------------------------------------
# values: what the extension converts, and what it hands back


def _plain_str(s: str) -> bool:
    if s.isascii():
        return True
    try:
        s.encode("utf-8")  # lone surrogates cannot become a Rust string
    except UnicodeEncodeError:
        return False
    return True


def _plain(v: Any) -> bool:
    t = type(v)
    if t is str:
        return v.isascii() or _plain_str(v)
    if t is int:
        if _I64_MIN <= v < _U64_END:
            return True
        try:  # the extension falls back to a double, which overflows past ~1.8e308
            float(v)
        except OverflowError:
            return False
        return True
    if t is dict:
        for k, x in v.items():
            tk = type(k)
            if tk is str:
                if not (k.isascii() or _plain_str(k)):
                    return False
            elif tk is int:
                if not _I64_MIN <= k < _U64_END:
                    return False
            elif tk is not bool:
                return False
            tx = type(x)
            if tx is str:
                if not (x.isascii() or _plain_str(x)):
                    return False
            elif not (tx is bool or tx is float or x is None) and not _plain(x):
                return False
        return True
    if t is bool or t is float or v is None:
        return True
    if t is list or t is tuple:
        return all(_plain(x) for x in v)
    return False  # bytes, datetimes, mappings, callables, objects: the extension decides


def plain_value(v: object) -> bool:
    """True when the extension certainly converts `v` (JSON-like values of exact types)."""
    try:
        return _plain(v)
    except RecursionError:
        return False


def plain_activation(act: Mapping[str, object]) -> bool:
    """True when every variable of `act` is a name the extension converts without error."""
    try:
        for k, v in act.items():
            if type(k) is not str:
                return False
            t = type(v)
            if t is str:
                if not (v.isascii() or _plain_str(v)):  # type: ignore[attr-defined, arg-type]
                    return False
            elif not (t is bool or v is None) and not _plain(v):
                return False
    except RecursionError:
        return False
    return True


def _out(v: Any) -> Any:
    """The value as the extension returns it: a fresh copy, CEL-converted (plain values only)."""
    t = type(v)
    if t is str or t is bool or t is float or v is None:
        return v
    if t is int:
        return v if _I64_MIN <= v < _U64_END else float(v)
    if t is list or t is tuple:
        return [_out(x) for x in v]
    # a dict: bool keys come back as ints (the extension tries int64 before bool)
    return {(int(k) if type(k) is bool else k): _out(x) for k, x in v.items()}


# ---------------------------------------------------------------------------------------------
# operators on plain values; each returns NO where CEL's answer is not certain


def _is_i64(v: Any) -> bool:
    return type(v) is int and _I64_MIN <= v <= _I64_MAX


_SCALARS = (str, bool, int, float, type(None))


def _eq(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is tb:
        if ta is str or ta is bool or ta is float or a is None:
            return a == b  # NaN == NaN is false in both
        if ta is int:
            return a == b if _is_i64(a) and _is_i64(b) else NO
        return NO  # lists and maps: deep, heterogeneous-numeric equality
    if a is None or b is None:
        return False
    if ta in _SCALARS and tb in _SCALARS:
        if (ta is int or ta is float) and (tb is int or tb is float):
            return NO  # CEL compares int and double numerically
        return False  # different kinds never equal (`true == 1` is false)
    return NO


def _ne(a: Any, b: Any) -> Any:
    r = _eq(a, b)
    return r if r is NO else not r


def _ordered(a: Any, b: Any) -> bool:
    ta = type(a)
    if ta is not type(b):
        return False
    if ta is str or ta is bool:
        return True
    if ta is int:
        return _is_i64(a) and _is_i64(b)
    return ta is float and a == a and b == b  # NaN has no order: the extension raises


def _lt(a: Any, b: Any) -> Any:
    return a < b if _ordered(a, b) else NO


def _le(a: Any, b: Any) -> Any:
    return a <= b if _ordered(a, b) else NO


def _gt(a: Any, b: Any) -> Any:
    return a > b if _ordered(a, b) else NO


def _ge(a: Any, b: Any) -> Any:
    return a >= b if _ordered(a, b) else NO


def _in(a: Any, b: Any) -> Any:
    tb = type(b)
    if tb is list or tb is tuple:
        for x in b:
            r = _eq(a, x)
            if r is NO or r:
                return r
        return False
    if tb is dict and type(a) is str:
        return a in b
    return NO


def _add(a: Any, b: Any) -> Any:
    ta = type(a)
    if ta is not type(b):
        return NO
    if ta is int:
        if _is_i64(a) and _is_i64(b):
            r = a + b
            return r if _I64_MIN <= r <= _I64_MAX else NO  # overflow: the extension raises
        return NO
    if ta is str or ta is float:
        return a + b
    return NO


def _sub(a: Any, b: Any) -> Any:
    ta = type(a)
    if ta is not type(b):
        return NO
    if ta is int:
        if _is_i64(a) and _is_i64(b):
            r = a - b
            return r if _I64_MIN <= r <= _I64_MAX else NO
        return NO
    if ta is float:
        return a - b
    return NO


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "==": _eq,
    "!=": _ne,
    "<": _lt,
    "<=": _le,
    ">": _gt,
    ">=": _ge,
    "in": _in,
    "+": _add,
    "-": _sub,
}


# ---------------------------------------------------------------------------------------------
# closures
#
# Each closure remembers how it was built (`_made`: its builder's name and arguments, closures
# among them), so a FastExpr pickles as that recipe and is built again without parsing
# (runner/plan/cache.py keeps compiled plans; parsing is most of a cold first evaluation).

_BUILDERS: dict[str, Callable[..., _Fn]] = {}


def _builder(make: Callable[..., _Fn]) -> Callable[..., _Fn]:
    name = make.__name__

    def build(*args: Any) -> _Fn:
        fn = make(*args)
        if not hasattr(fn, "_made"):  # _select may hand back _path's closure, made by _path
            fn._made = (name, args)  # type: ignore[attr-defined]
        return fn

    _BUILDERS[name] = build
    return build


def _recipe(part: Any) -> Any:
    """A closure, a list of closures, or a plain argument, as plain picklable data."""
    made = getattr(part, "_made", None)
    if made is not None:
        return ("fn", made[0], tuple(_recipe(a) for a in made[1]))
    if type(part) is list:
        return ("list", tuple(_recipe(a) for a in part))
    return ("value", part)


def _build(recipe: tuple[Any, ...]) -> Any:
    kind = recipe[0]
    if kind == "fn":
        return _BUILDERS[recipe[1]](*(_build(a) for a in recipe[2]))
    if kind == "list":
        return [_build(a) for a in recipe[1]]
    return recipe[1]


@_builder
def _const(value: Any) -> _Fn:
    def f(act: Mapping[str, Any]) -> Any:
        return value

    f._const = value  # type: ignore[attr-defined]
    return f


def _ident(name: str) -> _Fn:
    return _path(name, ())


@_builder
def _select(obj: _Fn, name: str) -> _Fn:
    root = getattr(obj, "_path", None)
    if root is not None:  # a chain of selects on a name: one closure walks it
        return _path(root[0], (*root[1], name))

    def f(act: Mapping[str, Any]) -> Any:
        v = obj(act)
        return v.get(name, NO) if type(v) is dict else NO

    return f


@_builder
def _path(name: str, keys: tuple[str, ...]) -> _Fn:
    def f(act: Mapping[str, Any]) -> Any:
        v = act.get(name, NO)
        for key in keys:
            if type(v) is not dict:
                return NO
            v = v.get(key, NO)
        return v

    f._path = (name, keys)  # type: ignore[attr-defined]
    return f


@_builder
def _index(obj: _Fn, key: _Fn) -> _Fn:
    def f(act: Mapping[str, Any]) -> Any:
        v = obj(act)
        if v is NO:
            return NO
        k = key(act)
        tv, tk = type(v), type(k)
        if tv is dict:
            return v.get(k, NO) if tk is str else NO
        if (tv is list or tv is tuple) and tk is int and 0 <= k < len(v):
            return v[k]
        return NO

    return f


@_builder
def _has(obj: _Fn, name: str) -> _Fn:
    def f(act: Mapping[str, Any]) -> Any:
        v = obj(act)
        return name in v if type(v) is dict else NO

    return f


@_builder
def _not(x: _Fn) -> _Fn:
    def f(act: Mapping[str, Any]) -> Any:
        v = x(act)
        return (not v) if type(v) is bool else NO

    return f


@_builder
def _neg(x: _Fn) -> _Fn:
    def f(act: Mapping[str, Any]) -> Any:
        v = x(act)
        if type(v) is float:
            return -v
        if _is_i64(v) and v != _I64_MIN:
            return -v
        return NO

    return f


@_builder
def _binary(op: str, left: _Fn, right: _Fn) -> _Fn:
    fn = _BINARY[op]
    if hasattr(right, "_const"):  # `x < 0`, `tool == "noop"`: no call for the literal
        c = right._const

        def g(act: Mapping[str, Any]) -> Any:
            a = left(act)
            return NO if a is NO else fn(a, c)

        return g

    def f(act: Mapping[str, Any]) -> Any:
        a = left(act)
        if a is NO:
            return NO
        b = right(act)
        if b is NO:
            return NO
        return fn(a, b)

    return f


# `&&` and `||` absorb errors the CEL way: `false && <error>` is false from either side.
@_builder
def _junction(left: _Fn, right: _Fn, absorbing: bool) -> _Fn:
    """`&&` (absorbing False) or `||` (absorbing True): the absorbing value from either side
    wins; both sides the other value gives that value; anything else is not decided here."""
    other = not absorbing

    def f(act: Mapping[str, Any]) -> Any:
        a = left(act)
        if a is absorbing:
            return absorbing
        b = right(act)
        if b is absorbing:
            return absorbing
        return other if a is other and b is other else NO

    return f


@_builder
def _cond(test: _Fn, yes: _Fn, no: _Fn) -> _Fn:
    def f(act: Mapping[str, Any]) -> Any:
        c = test(act)
        if c is True:
            return yes(act)
        if c is False:
            return no(act)
        return NO

    return f


@_builder
def _list(items: list[_Fn]) -> _Fn:
    def f(act: Mapping[str, Any]) -> Any:
        out = [i(act) for i in items]
        return NO if any(v is NO for v in out) else out

    return f


# ---------------------------------------------------------------------------------------------
# parser for the subset; anything else (calls, macros, `*`, escapes, uint, bytes...) -> None

_TOKEN = re.compile(
    r"""[ \t\r\n\f]*(?:
    (?P<float>\d+\.\d+)(?![\w.])
    |(?P<int>0|[1-9]\d*)(?![\w.])
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<str>"[^"\\\r\n]*"|'[^'\\\r\n]*')
    |(?P<op>==|!=|<=|>=|&&|\|\||[<>!+\-()\[\].?:,])
    )""",
    re.VERBOSE,
)
# names that are not plain variables in CEL (type names, literals, reserved words)
_NOT_NAMES = frozenset(
    {
        *("int", "uint", "double", "bool", "string", "bytes", "list", "map", "type", "dyn"),
        *("null_type", "timestamp", "duration", "true", "false", "null", "in", "as", "break"),
        *("const", "continue", "else", "for", "function", "if", "import", "let", "loop"),
        *("package", "namespace", "return", "var", "void", "while", "has"),
    }
)


class _Unsupported(Exception):
    pass


_END: Final = ("end", "")


class _Parser:
    def __init__(self, source: str) -> None:
        tokens: list[tuple[str, str]] = []
        match = _TOKEN.match
        pos = 0
        n = len(source)
        while True:
            m = match(source, pos)
            if m is None or m.end() == pos:
                if source[pos:].strip(" \t\r\n\f"):
                    raise _Unsupported
                break
            kind = m.lastgroup
            assert kind is not None
            tokens.append((kind, m.group(kind)))
            pos = m.end()
            if pos >= n:
                break
        tokens.append(_END)  # perf: every look-ahead is one index, never past the end
        self.tokens = tokens
        self.i = 0
        self.names: set[str] = set()

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, str]:
        tok = self.tokens[self.i]
        if tok is not _END:  # the end is taken as often as asked (and then refused)
            self.i += 1
        return tok

    def expect(self, op: str) -> None:
        if self.take() != ("op", op):
            raise _Unsupported

    def is_op(self, *ops: str) -> bool:
        tok = self.tokens[self.i]
        return tok[0] == "op" and tok[1] in ops

    def parse(self) -> _Fn:
        fn = self.expr()
        if self.tokens[self.i] is not _END:
            raise _Unsupported
        return fn

    def expr(self) -> _Fn:
        test = self.or_()
        if self.is_op("?"):
            self.take()
            yes = self.or_()
            self.expect(":")
            return _cond(test, yes, self.expr())
        return test

    def or_(self) -> _Fn:
        left = self.and_()
        while self.is_op("||"):
            self.take()
            left = _junction(left, self.and_(), True)
        return left

    def and_(self) -> _Fn:
        left = self.relation()
        while self.is_op("&&"):
            self.take()
            left = _junction(left, self.relation(), False)
        return left

    def relation(self) -> _Fn:
        left = self.calc()
        while self.is_op("==", "!=", "<", "<=", ">", ">=") or self.peek() == ("ident", "in"):
            op = self.take()[1]
            left = _binary(op, left, self.calc())
        return left

    def calc(self) -> _Fn:
        left = self.unary()
        while self.is_op("+", "-"):
            op = self.take()[1]
            left = _binary(op, left, self.unary())
        return left

    def unary(self) -> _Fn:
        if self.is_op("!"):
            self.take()
            return _not(self.unary())
        if self.is_op("-"):
            self.take()
            return _neg(self.unary())
        return self.member()[0]

    def member(self) -> tuple[_Fn, tuple[_Fn, str] | None]:
        """The member chain, and its last step when that is a field select (for `has()`)."""
        fn = self.primary()
        last: tuple[_Fn, str] | None = None
        while True:
            if self.is_op("."):
                self.take()
                kind, name = self.take()
                if kind != "ident" or name in _NOT_NAMES or self.is_op("("):
                    raise _Unsupported  # method calls and macros
                last = (fn, name)
                fn = _select(fn, name)
            elif self.is_op("["):
                self.take()
                key = self.expr()
                self.expect("]")
                last = None
                fn = _index(fn, key)
            else:
                return fn, last

    def primary(self) -> _Fn:
        kind, text = self.take()
        if kind == "int":
            value = int(text)
            if value > _I64_MAX:
                raise _Unsupported
            return _const(value)
        if kind == "float":
            return _const(float(text))
        if kind == "str":
            return _const(text[1:-1])
        if kind == "ident":
            if text in ("true", "false", "null"):
                return _const({"true": True, "false": False, "null": None}[text])
            if text == "has" and self.is_op("("):
                self.take()
                _, last = self.member()  # `has(a.b)`: one argument that ends in a select
                self.expect(")")
                if last is None:
                    raise _Unsupported
                return _has(*last)
            if text in _NOT_NAMES or self.is_op("("):
                raise _Unsupported
            self.names.add(text)
            return _ident(text)
        if kind == "op" and text == "(":
            inner_fn = self.expr()
            self.expect(")")
            return inner_fn
        if kind == "op" and text == "[":
            items: list[_Fn] = []
            if not self.is_op("]"):
                items.append(self.expr())
                while self.is_op(","):
                    self.take()
                    items.append(self.expr())
            self.expect("]")
            return _list(items)
        raise _Unsupported


class FastExpr:
    """A compiled closure and the variable names it reads."""

    __slots__ = ("fn", "names")

    def __init__(self, fn: _Fn, names: frozenset[str]) -> None:
        self.fn = fn
        self.names = names

    def __reduce__(self) -> tuple[Any, tuple[Any, frozenset[str]]]:
        return _rebuild, (_recipe(self.fn), self.names)

    def run(self, act: Mapping[str, Any], plain: bool = False) -> Any:
        """The value as the extension would return it, or NO.

        `plain`: the caller already knows `plain_activation(act)`; else it is checked here
        (after evaluating, so an expression the fast path cannot answer costs no walk).
        """
        v = self.fn(act)
        if v is NO or not (plain or plain_activation(act)):
            return NO
        return _out(v)


def _rebuild(recipe: tuple[Any, ...], names: frozenset[str]) -> FastExpr:
    return FastExpr(_build(recipe), names)


@lru_cache(maxsize=8192)
def compile_fast(source: str) -> FastExpr | None:
    """A fast closure for `source` (which the extension has already parsed), or None."""
    try:
        parser = _Parser(source)
        fn = parser.parse()
    except (_Unsupported, ValueError, RecursionError):
        return None
    return FastExpr(fn, frozenset(parser.names))
