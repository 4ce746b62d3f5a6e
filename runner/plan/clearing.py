"""Which gate checks clear untrusted data, and which only mention it.

A check clears a value V only when it pins V to something the spec trusts, in a top-level
conjunct of the check (a conjunct under `||`, `!` or `?:` may not hold when the gate passes):

- `V == T` or `T == V`, and `V in T`: T is trusted (a literal, a literal list = an allowlist,
  or a trusted node output or input);
- a lookup in trusted data: `T.exists(x, x == V)`, `T.exists(x, x.id == V)`, `exists_one`
  (an equality or membership inside: `T.exists(x, x < V)` only says V is above one element);
- an ordered bound: `V < T`, `V <= T`, `V > T`, `V >= T` (for numbers and dates; a bound that
  is text, `V < 'zzz'` or `V < string(n)`, lets through any text that sorts below it);
- an anchored allowlist regex: `V.matches('^(a|b)$')`, without a wildcard (`.`, `[^…]`, `\\S`,
  `\\D`, `\\W`, `\\P{…}`, `\\C`, so no `[\\s\\S]` either) or the flags `s` and `m`;
- for every element of a list: `L.all(x, <one of the above on x or x.field>)` clears `L[*]`
  (or `L[*].field`); a check on `x` itself clears `L` as a whole.

Anything else that mentions V (`size(V) > 0`, `V != ''`, `has(V)`, `V.startsWith('x')`) is a
weak check: it is reported next to the diagnostic, with what would clear it. Which side is
trusted is decided by the caller, which knows the taint of the refs this module returns.

The classifier reads the token stream of runner/expr/refs.py (no second CEL parser): a check
is split at top-level `&&`, and each conjunct is matched against the shapes above.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from runner.expr.refs import _IDENT as IDENT
from runner.expr.refs import _OP as OP
from runner.expr.refs import _STRING as STRING
from runner.expr.refs import ANY_INDEX, Ref, cel_refs, tokens
from runner.expr.refs import _chain as chain_of  # the tokenizer and chain reader of refs.py

_Tok = tuple[int, str, int, object]
_RELATIONS = ("==", "<", "<=", ">", ">=", "in")
_LOOKUPS = ("exists", "exists_one")


@dataclass(frozen=True)
class Strong:
    """A conjunct that pins `value` to what `against` reads (trusted when none of it is tainted)."""

    value: Ref
    against: tuple[Ref, ...]
    how: str  # equality | allowlist | lookup | bound | regex
    text: str


@dataclass(frozen=True)
class Clearing:
    strong: tuple[Strong, ...]
    mentions: tuple[tuple[Ref, str], ...]  # every ref of every conjunct, with its text


def covers(v: Ref, r: Ref) -> bool:
    """`v` names `r` or a value that contains it (`nodes.a.output` covers `nodes.a.output.to`)."""
    if v.root != r.root or len(v.path) > len(r.path):
        return False
    if v.root == "nodes" and len(v.path) < 2:
        return False
    for a, b in zip(v.path, r.path, strict=False):
        if a == b or (a == ANY_INDEX and isinstance(b, int)):
            continue
        return False
    return True


def overlaps(a: Ref, b: Ref) -> bool:
    """Either ref names part of the other (a mention of one is about the other)."""
    if a.root != b.root:
        return False
    n = min(len(a.path), len(b.path))
    if a.root == "nodes" and n < 1:
        return False
    return all(x == y or ANY_INDEX in (x, y) for x, y in zip(a.path[:n], b.path[:n], strict=False))


@lru_cache(maxsize=8192)
def classify(source: str) -> Clearing:
    """The strong checks and the mentions of one gate check (cached: gates repeat)."""
    toks = list(tokens(source))  # the token stream the reference scan and CEL typing share
    strong: list[Strong] = []
    mentions: list[tuple[Ref, str]] = []
    for lo, hi, can_clear in _conjuncts(toks, 0, len(toks)):
        text = _text(source, toks, lo, hi)
        mentions.extend((r, text) for r in cel_refs(text))
        if can_clear:
            strong.extend(_strong(source, toks, lo, hi))
    return Clearing(tuple(strong), tuple(mentions))


# -- token spans -------------------------------------------------------------------------------


def _text(source: str, toks: list[_Tok], lo: int, hi: int) -> str:
    if lo >= hi:
        return ""
    end = toks[hi - 1][2] + len(toks[hi - 1][1])
    return source[toks[lo][2] : end]


def _split(toks: list[_Tok], lo: int, hi: int, seps: tuple[str, ...]) -> list[tuple[int, int]]:
    """Spans between top-level separators (`in` is an identifier token, the rest operators)."""
    out: list[tuple[int, int]] = []
    depth = 0
    start = lo
    for i in range(lo, hi):
        kind, text, _, _ = toks[i]
        if kind == OP and text in "([{":
            depth += 1
        elif kind == OP and text in ")]}":
            depth -= 1
        elif depth == 0 and text in seps and (kind == OP or (kind == IDENT and text == "in")):
            out.append((start, i))
            start = i + 1
    out.append((start, hi))
    return out


def _wrapped(toks: list[_Tok], lo: int, hi: int) -> bool:
    """The span is one parenthesised expression: `( … )`."""
    if hi - lo < 2 or toks[lo][1] != "(" or toks[hi - 1][1] != ")":
        return False
    depth = 0
    for i in range(lo, hi):
        if toks[i][0] == OP and toks[i][1] in "([{":
            depth += 1
        elif toks[i][0] == OP and toks[i][1] in ")]}":
            depth -= 1
            if depth == 0 and i != hi - 1:
                return False
    return True


def _conjuncts(toks: list[_Tok], lo: int, hi: int) -> list[tuple[int, int, bool]]:
    """Top-level conjuncts, each with whether it may clear (not under `||` or `?:`)."""
    while _wrapped(toks, lo, hi):
        lo, hi = lo + 1, hi - 1
    if len(_split(toks, lo, hi, ("||", "?"))) > 1:
        return [(lo, hi, False)]  # a disjunction or a conditional: it mentions, never clears
    out: list[tuple[int, int, bool]] = []
    parts = _split(toks, lo, hi, ("&&",))
    if len(parts) == 1:
        return [(lo, hi, True)]
    for a, b in parts:
        out.extend(_conjuncts(toks, a, b))
    return out


def _plain_ref(toks: list[_Tok], lo: int, hi: int) -> Ref | None:
    """The span is exactly one reference chain (`nodes.a.output.to`, `x.id`, `inputs['k']`)."""
    while _wrapped(toks, lo, hi):
        lo, hi = lo + 1, hi - 1
    if lo >= hi or toks[lo][0] != IDENT or toks[lo][1] in ("true", "false", "null", "in"):
        return None
    path, end = chain_of(toks, lo + 1)
    if end != hi:
        return None
    return Ref(toks[lo][1], path, toks[lo][2])


def _strong(source: str, toks: list[_Tok], lo: int, hi: int) -> list[Strong]:
    while _wrapped(toks, lo, hi):
        lo, hi = lo + 1, hi - 1
    if lo >= hi or toks[lo][1] == "!":
        return []
    text = _text(source, toks, lo, hi)
    parts = _split(toks, lo, hi, _RELATIONS)
    if len(parts) == 2:
        (a, b), (c, d) = parts
        op = toks[b][1]
        left, right = _plain_ref(toks, a, b), _plain_ref(toks, c, d)
        lrefs = tuple(cel_refs(_text(source, toks, a, b)))
        rrefs = tuple(cel_refs(_text(source, toks, c, d)))
        out: list[Strong] = []
        if op == "in":
            if left is not None:
                literal_list = toks[c][1] == "[" and not rrefs
                out.append(Strong(left, rrefs, "allowlist" if literal_list else "lookup", text))
            return out
        how = "equality" if op == "==" else "bound"
        if left is not None and (how == "equality" or not _text_bound(toks, c, d)):
            out.append(Strong(left, rrefs, how, text))
        if right is not None and (how == "equality" or not _text_bound(toks, a, b)):
            out.append(Strong(right, lrefs, how, text))
        return out
    if len(parts) > 2:
        return []
    return _call(source, toks, lo, hi, text)


def _call(source: str, toks: list[_Tok], lo: int, hi: int, text: str) -> list[Strong]:
    """`R.exists(x, …)`, `R.all(x, …)`, `V.matches('^…$')`, `matches(V, '^…$')`."""
    # a global `matches(V, 'regex')`
    if toks[lo][1] == "matches" and hi - lo >= 4 and toks[lo + 1][1] == "(":
        args = _split(toks, lo + 2, hi - 1, (",",))
        if len(args) == 2 and toks[hi - 1][1] == ")":
            v = _plain_ref(toks, *args[0])
            a, b = args[1]
            if v is not None and b - a == 1 and _allowlist_regex(toks[a]):
                return [Strong(v, (), "regex", text)]
        return []
    # a receiver chain, then `.method(`
    if toks[lo][0] != IDENT:
        return []
    path, j = chain_of(toks, lo + 1)
    if j + 3 > hi or toks[j][1] != "." or toks[j + 2][1] != "(" or toks[hi - 1][1] != ")":
        return []
    if not _wrapped(toks, j + 2, hi):
        return []
    receiver = Ref(toks[lo][1], path, toks[lo][2])
    method = toks[j + 1][1]
    args = _split(toks, j + 3, hi - 1, (",",))
    if method == "matches" and len(args) == 1:
        a, b = args[0]
        if b - a == 1 and _allowlist_regex(toks[a]):
            return [Strong(receiver, (), "regex", text)]
        return []
    if method not in (*_LOOKUPS, "all") or len(args) != 2:
        return []
    (va, vb), (ba, bb) = args
    if vb - va != 1 or toks[va][0] != IDENT:
        return []
    var = toks[va][1]
    out: list[Strong] = []
    for s in classify(_text(source, toks, ba, bb)).strong:
        against = tuple(r for r in s.against if r.root != var)
        if method == "all":
            if s.value.root == var and not any(r.root == var for r in s.against):
                elem = Ref(
                    receiver.root, (*receiver.path, ANY_INDEX, *s.value.path), receiver.offset
                )
                out.append(Strong(elem, against, s.how, text))
                if not s.value.path:  # every element pinned: the list holds only trusted values
                    out.append(Strong(receiver, against, s.how, text))
        elif s.how != "bound" and s.value.root != var and any(r.root == var for r in s.against):
            # (a bound on an element, `T.exists(x, x < V)`, only says V exceeds the smallest)
            # the value equals (or is bounded by) an element of the receiver: a lookup in it
            out.append(Strong(s.value, (receiver, *against), "lookup", text))
    return out


def _text_bound(toks: list[_Tok], lo: int, hi: int) -> bool:
    """The bound is text (`V < 'zzz'`, `V < string(n)`): strings order by their first letters,
    so any text below it passes. A string inside a call or an index (`timestamp('…')`,
    `inputs.limits['max']`) is not the bound itself."""
    while _wrapped(toks, lo, hi):
        lo, hi = lo + 1, hi - 1
    if lo < hi and toks[lo][1] == "string":
        return True
    depth = 0
    for kind, text, _, _ in toks[lo:hi]:
        if kind == OP and text in "([{":
            depth += 1
        elif kind == OP and text in ")]}":
            depth -= 1
        elif kind == STRING and depth == 0:
            return True
    return False


def _allowlist_regex(tok: _Tok) -> bool:
    """An anchored pattern that does not match arbitrary text (`^(alice|bob)$`, `^[0-9]{6}$`)."""
    if tok[0] != STRING or not isinstance(tok[3], str):
        return False
    pattern = tok[3]
    if not (pattern.startswith("^") and pattern.endswith("$") and not pattern.endswith("\\$")):
        return False
    return not _matches_anything(pattern) and not _top_level_alternation(pattern)


# escapes that stand for "almost any character": negated classes, any byte, any code point
_ANY_ESCAPES = frozenset("SDWPC")


def _matches_anything(pattern: str) -> bool:
    """The pattern has a wildcard: `.` (any character), a negated class (`[^@]`, `\\S`, `\\D`,
    `\\W`, `\\P{…}`, `\\C`), also inside a class (`[\\s\\S]`), or the flag `s` or `m`
    (`(?s)` lets `.` match newlines, `(?m)` lets `$` end any line)."""
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if pattern[i + 1 : i + 2] in _ANY_ESCAPES:
                return True
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "^":
                return True
            if pattern[i + 1 : i + 2] == "]":
                i += 1  # `[]…]`: the first `]` is a member
        elif ch == ".":
            return True
        elif ch == "(" and pattern[i + 1 : i + 2] == "?":
            flags = re.match(r"[A-Za-z-]*", pattern[i + 2 :])
            if flags is not None and ({"s", "m"} & set(flags.group())):
                return True
        i += 1
    return False


def _top_level_alternation(pattern: str) -> bool:
    """`^a|b$` is `(^a)|(b$)`: each branch is anchored at one end only."""
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return True
        i += 1
    return False
