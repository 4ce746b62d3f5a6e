"""Reference chains (`nodes.x.output.a`) read off CEL tokens, fast enough for huge specs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["ANY_INDEX", "Ref", "cel_refs", "free_roots"]

ANY_INDEX = -1
"""Path element for a dynamic index (`xs[i]`): any element; the chain stops there."""


@dataclass(frozen=True)
class Ref:
    """A name an expression reads, with the constant member/index path that follows it."""

    root: str
    path: tuple[str | int, ...]
    offset: int
    line: int = 0


# Bodies: a raw string ends at its first matching quote; others honour backslash escapes.
_RAW_STR = (
    r"""(?:[rR][bB]?|[bB][rR])(?:'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'[^'\n\r]*'|"[^"\n\r]*")"""
)
_STR = (
    r"""[bB]?(?:'''(?:\\[\s\S]|[^\\])*?'''|\"\"\"(?:\\[\s\S]|[^\\])*?\"\"\""""
    r"""|'(?:\\.|[^\\'\n\r])*'|"(?:\\.|[^\\"\n\r])*")"""
)
# Whitespace is swallowed in front of each token; identifiers come first because they are
# the most common token (the lookahead leaves `r"..."` and `b"..."` to the string branch).
_TOKEN = re.compile(
    rf"""\s*(?:
    (?P<ident>(?!(?:[rR][bB]?|[bB][rR]?)['"])[A-Za-z_][A-Za-z0-9_]*)
    |(?P<num>0[xX][0-9a-fA-F]+[uU]?|\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+
        |\.\d+(?:[eE][+-]?\d+)?|\d+[uU]?)
    |(?P<op>==|!=|<=|>=|&&|\|\||[-+*/%<>!?:.,()\[\]{{}}])
    |(?P<str>{_RAW_STR}|{_STR})
    |(?P<badstr>(?:[rRbB]{{1,2}})?['"][\s\S]*)
    |(?P<other>\S)
    )""",
    re.VERBOSE,
)

# `in` is an operator; the rest are CEL's reserved words and literals.
_RESERVED = frozenset(
    {
        *("true", "false", "null", "in", "as", "break", "const", "continue", "else", "for"),
        *("function", "if", "import", "let", "loop", "package", "namespace", "return", "var"),
        *("void", "while"),
    }
)
_LITERAL_WORDS = frozenset(("true", "false", "null"))
_MACROS = frozenset(("all", "exists", "exists_one", "map", "filter"))

# Token kinds, kept as small ints for speed.
_IDENT, _STRING, _INT, _FLOAT, _OP, _OTHER = range(6)
_Token = tuple[int, str, int, object]  # kind, text, offset, literal value


def cel_refs(source: str) -> list[Ref]:
    """Every free name in `source` with its constant path; macro variables and calls excluded."""
    return list(_cel_refs(source))


def free_roots(source: str) -> set[str]:
    """The free names an expression reads, for checking them against what a context allows."""
    return {ref.root for ref in _cel_refs(source)}


@lru_cache(maxsize=8192)
def tokens(source: str) -> tuple[_Token, ...]:
    """The tokens of a CEL source, cached: the reference scan and the type check share them."""
    return tuple(_tokenize(source))


@lru_cache(maxsize=8192)
def _cel_refs(source: str) -> tuple[Ref, ...]:
    toks = tokens(source)
    n = len(toks)
    refs: list[Ref] = []
    brackets: list[str] = []
    scopes: list[tuple[str, int]] = []  # (macro variable, bracket depth that closes it)
    i = 0
    while i < n:
        kind, text, start, _ = toks[i]
        if kind == _OP:
            if text in "([{":
                brackets.append(text)
            elif text in ")]}" and brackets:
                brackets.pop()
                while scopes and scopes[-1][1] > len(brackets):
                    scopes.pop()
            i += 1
            continue
        if kind != _IDENT or text in _RESERVED:
            i += 1
            continue
        nxt = toks[i + 1][1] if i + 1 < n and toks[i + 1][0] == _OP else ""
        leading_dot = i > 0 and toks[i - 1][1] == "." and toks[i - 1][0] == _OP
        if leading_dot and _ends_operand(toks, i - 2):
            # A member name; a macro call on it binds its first argument.
            if (
                text in _MACROS
                and nxt == "("
                and i + 3 < n
                and toks[i + 2][0] == _IDENT
                and toks[i + 3][1] == ","
            ):
                scopes.append((toks[i + 2][1], len(brackets) + 1))
            i += 1
            continue
        if nxt == "(":  # a function call such as size(x) or has(a.b)
            i += 1
            continue
        root = "." + text if leading_dot else text
        if any(name == root for name, _ in scopes):
            i += 1
            continue
        path, i = _chain(toks, i + 1)
        refs.append(Ref(root, path, start - 1 if leading_dot else start))
    return tuple(refs)


def _ends_operand(toks: Sequence[_Token], j: int) -> bool:
    if j < 0:
        return False
    kind, text, _, _ = toks[j]
    if kind == _IDENT:
        return text not in _RESERVED or text in _LITERAL_WORDS
    if kind == _OP:
        return text in ")]}"
    return kind != _OTHER


def _chain(toks: Sequence[_Token], j: int) -> tuple[tuple[str | int, ...], int]:
    """Read `.name` / `[const]` after a root; return the path and the first unread token."""
    n = len(toks)
    path: list[str | int] = []
    while j < n:
        kind, text, _, _ = toks[j]
        if kind != _OP:
            break
        if text == "." and j + 1 < n and toks[j + 1][0] == _IDENT:
            if j + 2 < n and toks[j + 2][1] == "(" and toks[j + 2][0] == _OP:
                break  # a method call: the receiver is the reference
            path.append(toks[j + 1][1])
            j += 2
        elif text == "[":
            if (
                j + 2 < n
                and toks[j + 1][0] in (_STRING, _INT)
                and toks[j + 1][3] is not None
                and toks[j + 2][1] == "]"
            ):
                value = toks[j + 1][3]
                assert isinstance(value, str | int)
                path.append(value)
                j += 3
            else:
                path.append(ANY_INDEX)
                break  # the index expression is scanned for its own references
        else:
            break
    return tuple(path), j


def _tokenize(source: str) -> list[_Token]:
    toks: list[_Token] = []
    append = toks.append
    for m in _TOKEN.finditer(source):
        group = m.lastgroup
        if group == "ident":
            append((_IDENT, m.group(group), m.start(group), None))
        elif group == "op":
            append((_OP, m.group(group), m.start(group), None))
        elif group == "str":
            text = m.group(group)
            append((_STRING, text, m.start(group), _string_value(text)))
        elif group == "num":
            append(_number(m.group(group), m.start(group)))
        elif group is not None:
            append((_OTHER, m.group(group), m.start(group), None))
    return toks


def _number(text: str, start: int) -> _Token:
    body = text.rstrip("uU")
    if body[:2] in ("0x", "0X"):
        return (_INT, text, start, int(body, 16))
    if body.isdigit():
        return (_INT, text, start, int(body))
    return (_FLOAT, text, start, None)


_ESCAPE = re.compile(
    r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([0-3][0-7]{2})|(.))", re.S
)
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
    "?": "?",
}


def _string_value(text: str) -> str | None:
    """The value of a string literal; None for bytes literals (not usable as a map key here)."""
    prefix_len = 0
    raw = False
    while text[prefix_len] not in "'\"":
        if text[prefix_len] in "bB":
            return None
        raw = True
        prefix_len += 1
    body = text[prefix_len:]
    quote = 3 if body[:3] in ("'''", '"""') else 1
    body = body[quote:-quote]
    return body if raw else _ESCAPE.sub(_unescape, body)


def _unescape(m: re.Match[str]) -> str:
    hex2, hex4, hex8, octal, simple = m.groups()
    if simple is not None:
        return _SIMPLE_ESCAPES.get(simple, "\\" + simple)
    code = int(hex2 or hex4 or hex8, 16) if octal is None else int(octal, 8)
    try:
        return chr(code)
    except (ValueError, OverflowError):
        return m.group()
