"""Small helpers the compiler's parts share: suggestions, reference text and positions."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from runner.expr.bindings import CompiledValue
from runner.expr.cel import CompiledExpr
from runner.expr.refs import Ref, cel_refs

NODE_ROOTS = frozenset({"inputs", "nodes"})


def did_you_mean(name: str, options: Iterable[str]) -> str | None:
    near = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"did you mean {near[0]!r}?" if near else None


def expr_refs(raw: str, expr: CompiledExpr) -> list[Ref]:
    """References of a condition with offsets into the YAML string it was written in."""
    base = max(raw.find(expr.source), 0)
    return [replace(r, offset=base + r.offset) for r in cel_refs(expr.source)]


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def template_offset(template: str, ref: Ref) -> int:
    """Offset of a template reference: its root name, inside `{{ }}`/`{% %}`, on its line."""
    lines = template.split("\n")
    if not 1 <= ref.line <= len(lines):
        return 0
    start = sum(len(x) + 1 for x in lines[: ref.line - 1])
    text = lines[ref.line - 1]
    for m in _NAME.finditer(text):
        if m.group() != ref.root or text[: m.start()].endswith("."):
            continue
        first = ref.path[0] if ref.path else None
        if isinstance(first, str) and not re.match(
            rf"\s*\.\s*{re.escape(first)}\b", text[m.end() :]
        ):
            continue
        opened = max(text.rfind("{{", 0, m.start()), text.rfind("{%", 0, m.start()))
        closed = max(text.rfind("}}", 0, m.start()), text.rfind("%}", 0, m.start()))
        if opened > closed:
            return start + m.start()
    return start


def path_refs(cv: CompiledValue) -> Iterable[tuple[tuple[str | int, ...], Ref]]:
    """Each reference of a compiled value, with its path inside the value."""
    for site in cv.sites:
        for ref in site.refs:
            yield site.path, ref


def has_binding(value: Any) -> bool:
    if isinstance(value, str):
        return "${{" in value
    if isinstance(value, dict):
        return any(has_binding(v) for v in value.values())
    if isinstance(value, list):
        return any(has_binding(v) for v in value)
    return False


def ref_text(ref: Ref) -> str:
    out = ref.root
    for p in ref.path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def whole_ref(raw: Any, cv: CompiledValue) -> Ref | None:
    """The one reference a value is, when it is exactly `${{ <ref> }}` (its type is the ref's)."""
    refs = list(cv.refs)
    if (
        isinstance(raw, str)
        and raw.strip().startswith("${{")
        and raw.strip().endswith("}}")
        and len(cv.sites) == 1
        and len(refs) == 1
        and cv.sites[0].source.strip() == ref_text(refs[0])
    ):
        return refs[0]
    return None
