"""`${{ CEL }}` bindings inside YAML values, compiled once and evaluated per run."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from runner.expr.cel import (
    CelEvalError,
    CelSyntaxError,
    CompiledExpr,
    ExprError,
    Prepared,
    compile_cel,
    prepare,
)
from runner.expr.refs import Ref, cel_refs

__all__ = [
    "BindingError",
    "CompiledValue",
    "ExprSite",
    "compile_expr_or_binding",
    "compile_value",
    "format_path",
]

Path: TypeAlias = tuple[str | int, ...]

OPEN = "${{"
CLOSE = "}}"


class BindingError(ExprError):
    """A `${{ }}` that cannot be compiled; `path` locates the string inside the YAML value."""

    def __init__(self, message: str, offset: int = 0, path: Path = ()) -> None:
        super().__init__(message, offset)
        self.path = path


@dataclass(frozen=True)
class ExprSite:
    """One `${{ }}` expression: its text, where it starts in the YAML string, and where that is."""

    source: str
    offset: int  # offset of the expression text within the YAML string
    path: Path  # where inside the value (dict keys / list indexes)
    refs: tuple[Ref, ...] = field(default=(), compare=False)  # offsets within the YAML string


def format_path(path: Path) -> str:
    """`args.items[0].id`, for messages that say which field failed."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


# Compiled tree. Static subtrees stay as their original value, so evaluation copies nothing
# that has no binding in it.
@dataclass(frozen=True)
class _Whole:
    expr: CompiledExpr
    site: ExprSite


@dataclass(frozen=True)
class _Interp:
    parts: tuple[str | _Whole, ...]


@dataclass(frozen=True)
class _Dict:
    items: tuple[tuple[object, _Node], ...]


@dataclass(frozen=True)
class _List:
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Static:
    value: object


_Node: TypeAlias = "_Whole | _Interp | _Dict | _List | _Static"


class CompiledValue:
    """A YAML value with its bindings compiled; `evaluate` fills them in from an activation."""

    __slots__ = ("_root", "is_static", "refs", "sites")

    def __init__(self, root: _Node, sites: tuple[ExprSite, ...]) -> None:
        self._root = root
        self.sites: tuple[ExprSite, ...] = sites
        self.refs: tuple[Ref, ...] = tuple(r for s in sites for r in s.refs)
        self.is_static: bool = not sites

    def evaluate(self, activation: Mapping[str, object] | Prepared) -> object:
        """The value with every binding replaced; errors name the field that failed."""
        if len(self.sites) > 1 and not isinstance(activation, Prepared):
            activation = prepare(activation)  # convert once, not once per binding
        return _eval(self._root, activation)

    def __repr__(self) -> str:
        return f"CompiledValue(sites={self.sites!r})"


def compile_value(value: object) -> CompiledValue:
    """Compile every `${{ }}` in a nested YAML value (dict keys are never templated)."""
    sites: list[ExprSite] = []
    root = _compile(value, (), sites)
    return CompiledValue(root, tuple(sites))


def compile_expr_or_binding(text: str) -> CompiledExpr:
    """Compile a field that is always CEL (`when:`, `check:`), bare or wrapped in one `${{ }}`.

    A wrapper is blanked out with spaces instead of cut, so offsets in the returned source
    (and in syntax errors) are offsets in `text`.
    """
    if not text.lstrip().startswith(OPEN):
        return compile_cel(text)
    try:
        segments = _split(text, ())
    except BindingError as exc:
        raise CelSyntaxError(exc.message, exc.offset) from None
    if len(segments) != 1 or isinstance(segments[0], str):
        raise CelSyntaxError(
            f"expected one CEL expression, bare or wrapped in a single '{OPEN} {CLOSE}'",
            text.index(OPEN),
        )
    _, start, end = segments[0]
    inner_end = start + len(text[start:end].rstrip())
    try:
        return compile_cel(" " * start + text[start:end] + " " * (len(text) - end))
    except CelSyntaxError as exc:  # point at the end of the expression, not past the `}}`
        raise CelSyntaxError(exc.message, min(exc.offset, inner_end)) from None


def _compile(value: object, path: Path, sites: list[ExprSite]) -> _Node:
    if isinstance(value, str):
        return _compile_string(value, path, sites)
    if isinstance(value, Mapping):
        items = tuple((k, _compile(v, (*path, k), sites)) for k, v in value.items())
        if all(isinstance(node, _Static) for _, node in items):
            return _Static(value)
        return _Dict(items)
    if isinstance(value, list | tuple):
        elems = tuple(_compile(v, (*path, i), sites) for i, v in enumerate(value))
        if all(isinstance(node, _Static) for node in elems):
            return _Static(value)
        return _List(elems)
    return _Static(value)


def _compile_string(text: str, path: Path, sites: list[ExprSite]) -> _Node:
    if "${{" not in text:
        return _Static(text)
    segments = _split(text, path)
    parts: list[str | _Whole] = []
    for seg in segments:
        if isinstance(seg, str):
            parts.append(seg)
            continue
        _, start, end = seg
        raw = text[start:end]
        lead = len(raw) - len(raw.lstrip())
        source = raw.strip()
        offset = start + lead
        try:
            expr = compile_cel(source)
        except CelSyntaxError as exc:
            raise BindingError(exc.message, offset + exc.offset, path) from None
        refs = tuple(Ref(r.root, r.path, r.offset + offset, r.line) for r in cel_refs(source))
        site = ExprSite(source, offset, path, refs)
        sites.append(site)
        parts.append(_Whole(expr, site))
    if len(parts) == 1 and isinstance(parts[0], _Whole):
        return parts[0]
    if len(parts) == 1:  # only escapes: a literal after unescaping
        return _Static(parts[0])
    if all(isinstance(p, str) for p in parts):
        return _Static("".join(p for p in parts if isinstance(p, str)))
    return _Interp(tuple(parts))


_Segment: TypeAlias = "str | tuple[str, int, int]"


def _split(text: str, path: Path) -> list[_Segment]:
    """Split into literal text and `(marker, start, end)` expression spans.

    Whitespace around a lone binding is dropped, so `"  ${{ x }} "` is one typed value.
    Literal pieces are merged; `$${{` becomes a literal `${{`.
    """
    out: list[_Segment] = []
    literal: list[str] = []
    i = 0
    n = len(text)
    while True:
        j = text.find(OPEN, i)
        if j < 0:
            literal.append(text[i:])
            break
        if j > 0 and text[j - 1] == "$":
            literal.append(text[i : j - 1] + OPEN)
            i = j + len(OPEN)
            continue
        literal.append(text[i:j])
        end = _find_close(text, j + len(OPEN))
        if end < 0:
            raise BindingError(f"unterminated '{OPEN}' (missing '{CLOSE}')", j, path)
        if lit := "".join(literal):
            out.append(lit)
        literal = []
        out.append(("expr", j + len(OPEN), end))
        i = end + len(CLOSE)
        if i >= n:
            break
    if lit := "".join(literal):
        out.append(lit)
    exprs: list[_Segment] = [s for s in out if not isinstance(s, str)]
    if len(exprs) == 1 and all(isinstance(s, tuple) or not s.strip() for s in out):
        return exprs
    return out


_STRING_START = re.compile(r"""(?:[rR][bB]?|[bB][rR]?)?(?:'''|\"\"\"|'|")""")


def _find_close(text: str, i: int) -> int:
    """Index of the `}}` closing a binding, skipping string literals and nested map braces."""
    depth = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in "'\"rRbB":
            m = _STRING_START.match(text, i)
            if m and (c in "'\"" or not (text[i - 1].isalnum() or text[i - 1] == "_")):
                i = _skip_string(text, m.end(), m.group())
                if i < 0:
                    return -1
                continue
        if c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                if text.startswith(CLOSE, i):
                    return i
            else:
                depth -= 1
        i += 1
    return -1


def _skip_string(text: str, i: int, opener: str) -> int:
    quote = opener.lstrip("rRbB")
    raw = "r" in opener.lower()
    n = len(text)
    while i < n:
        if not raw and text[i] == "\\":
            i += 2
            continue
        if text.startswith(quote, i):
            return i + len(quote)
        if len(quote) == 1 and text[i] == "\n":
            return -1
        i += 1
    return -1


def _eval(node: _Node, activation: Mapping[str, object] | Prepared) -> object:
    if isinstance(node, _Static):
        return node.value
    if isinstance(node, _Whole):
        return _eval_site(node, activation)
    if isinstance(node, _Interp):
        return "".join(
            p if isinstance(p, str) else _stringify(_eval_site(p, activation)) for p in node.parts
        )
    if isinstance(node, _Dict):
        return {k: _eval(v, activation) for k, v in node.items}
    return [_eval(v, activation) for v in node.items]


def _eval_site(node: _Whole, activation: Mapping[str, object] | Prepared) -> object:
    try:
        return node.expr.evaluate(activation)
    except CelEvalError as exc:
        where = format_path(node.site.path)
        message = f"in {where}: {exc.message}" if where else exc.message
        raise CelEvalError(message, node.site.offset + exc.offset) from None


def _stringify(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, sort_keys=True, default=_json_default
        )
    except TypeError:  # map keys of mixed types cannot be sorted
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json_default(value: object) -> object:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, Sequence):
        return list(value)
    return str(value)
