"""Jinja2 prompt templates in a sandbox: strict about names, inert toward untrusted values."""

from __future__ import annotations

import difflib
import json
import re
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache, partial
from types import TracebackType
from typing import cast

import jinja2
from jinja2 import nodes as jn
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from runner.expr.cel import ExprError
from runner.expr.refs import ANY_INDEX, Ref

__all__ = [
    "ENV",
    "PromptTemplate",
    "TemplateError",
    "compile_template",
    "data_block",
    "template_refs",
    "tojson",
]


class TemplateError(ExprError):
    """A prompt that does not compile or render; `line` is 1-based in the template (0: unknown)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message, 0)
        self.line = line


class _UndefinedAccess(jinja2.UndefinedError):
    """Carries what was looked up, so the message can name the whole path."""

    def __init__(self, message: str | None = None, *, obj: object, name: object) -> None:
        super().__init__(message)
        self.obj = obj
        self.name = name


class _Undefined(jinja2.StrictUndefined):
    """StrictUndefined whose error remembers the object and name that were missing."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: object = missing,
        name: str | None = None,
        exc: type[jinja2.TemplateRuntimeError] = jinja2.UndefinedError,
    ) -> None:
        if exc is jinja2.UndefinedError:
            exc = cast(
                type[jinja2.TemplateRuntimeError], partial(_UndefinedAccess, obj=obj, name=name)
            )
        super().__init__(hint, obj, name, exc)


class _Environment(ImmutableSandboxedEnvironment):
    """Sandbox where `x.key` on a mapping reads the key, as in CEL, even when a method shares
    its name (`output.items` is the field, not `dict.items`)."""

    def getattr(self, obj: object, attribute: str) -> object:
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)


def tojson(value: object) -> str:
    """Compact, key-sorted JSON, so a prompt is byte-identical for equal data (cache, replay)."""
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


_DATA_TAG = re.compile(r"<(\s*/?\s*)(data)", re.IGNORECASE)
_DATA_NAME = re.compile(r"[^A-Za-z0-9_.:-]")


def data_block(value: object, name: str = "data") -> str:
    """Fence untrusted text so the model can tell it from instructions; it cannot close the
    fence early because any `<data` / `</data` inside is defused."""
    text = value if isinstance(value, str) else tojson(value)
    text = _DATA_TAG.sub(r"&lt;\1\2", text)
    label = _DATA_NAME.sub("_", str(name)) or "data"
    return f'<data name="{label}">\n{text}\n</data>'


def _finalize(value: object) -> object:
    """Print maps, lists, booleans and null as JSON, like `${{ }}` interpolation does."""
    if value is None or isinstance(value, bool | Mapping | list | tuple):
        return tojson(value)
    return value


ENV = _Environment(
    undefined=_Undefined,
    autoescape=False,
    keep_trailing_newline=True,
    finalize=_finalize,
)
ENV.filters["tojson"] = tojson
ENV.filters["data"] = data_block
ENV.globals["data"] = data_block

# Names a template can use without the context providing them.
_BUILTIN_NAMES = frozenset(ENV.globals) | {"loop", "self", "super", "caller", "varargs", "kwargs"}
_TEMPLATE_FILE = "<template>"


@dataclass(frozen=True)
class PromptTemplate:
    """A checked prompt; rendering never re-parses the values it is given.

    Code generation (~2 ms a template) waits for the first render, so loading a spec with
    thousands of prompts pays only for parsing and checking them.
    """

    source: str
    name: str = "<prompt>"
    _compiled: list[jinja2.Template] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def render(self, context: Mapping[str, object]) -> str:
        """Render with `context`; undefined names and sandbox violations become TemplateError."""
        try:
            if not self._compiled:
                self._compiled.append(ENV.from_string(self.source))
            return self._compiled[0].render(context)
        except _UndefinedAccess as exc:
            line = _error_line(exc.__traceback__)
            raise TemplateError(_undefined_message(exc, context), line) from None
        except SecurityError as exc:
            raise TemplateError(f"unsafe access: {exc}", _error_line(exc.__traceback__)) from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(exc.message or "syntax error", exc.lineno) from None
        except jinja2.TemplateError as exc:
            line = _error_line(exc.__traceback__)
            raise TemplateError(str(exc) or type(exc).__name__, line) from None
        except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
            line = _error_line(exc.__traceback__)
            raise TemplateError(f"{type(exc).__name__}: {exc}", line) from None


def compile_template(source: str, name: str = "<prompt>") -> PromptTemplate:
    """Check a prompt at load time; syntax errors and unknown filters carry the 1-based line."""
    try:
        _check(_parse(source))
    except RecursionError:
        raise TemplateError(_TOO_DEEP, 1) from None
    return PromptTemplate(source, name)


@lru_cache(maxsize=8192)
def _parse(source: str) -> jn.Template:
    """Parse once for both checking and reference extraction (callers must not mutate it)."""
    try:
        return ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error", exc.lineno) from None
    except RecursionError:
        raise TemplateError(_TOO_DEEP, 1) from None


_TOO_DEEP = "the template nests blocks too deeply to compile; flatten it"


_OTHER_TEMPLATE = (jn.Include, jn.Import, jn.FromImport, jn.Extends)


def _check(tree: jn.Template) -> None:
    """Catch what jinja would only report at code generation or at run time: unknown filters
    and tests, and a tag that reads another template (a prompt is one text, there is none)."""
    for other in tree.find_all(_OTHER_TEMPLATE):
        kind = type(other).__name__.lower()
        tag = "from ... import" if isinstance(other, jn.FromImport) else kind
        raise TemplateError(
            f"{{% {tag} %}} reads another template, and a prompt has none to read; "
            "write the text into this prompt (a macro defined here can be reused)",
            other.lineno,
        )
    for node in tree.find_all((jn.Filter, jn.Test)):
        assert isinstance(node, jn.Filter | jn.Test)
        known = ENV.tests if isinstance(node, jn.Test) else ENV.filters
        if node.name not in known:
            kind = "test" if isinstance(node, jn.Test) else "filter"
            near = difflib.get_close_matches(node.name, list(known), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise TemplateError(f"unknown {kind} {node.name!r}{hint}", node.lineno)


def _error_line(tb: TracebackType | None) -> int:
    line = 0
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == _TEMPLATE_FILE:
            line = lineno
    return line


def _undefined_message(exc: _UndefinedAccess, context: Mapping[str, object]) -> str:
    if exc.obj is missing:
        return f"undefined name {exc.name!r}"
    where = _path_to(exc.obj, context)
    if where is None:
        return str(exc.message)
    if isinstance(exc.name, str) and re.fullmatch(r"[A-Za-z_]\w*", exc.name):
        return f"undefined name '{where}.{exc.name}'"
    return f"undefined name '{where}[{exc.name!r}]'"


def _path_to(target: object, context: Mapping[str, object], limit: int = 10_000) -> str | None:
    """Find where `target` sits in the context (by identity), to name it in a message."""
    queue: list[tuple[object, str]] = [(v, str(k)) for k, v in context.items()]
    seen = 0
    while queue and seen < limit:
        obj, where = queue.pop(0)
        seen += 1
        if obj is target:
            return where
        if isinstance(obj, Mapping):
            for k, v in obj.items():
                key = f".{k}" if isinstance(k, str) and k.isidentifier() else f"[{k!r}]"
                queue.append((v, where + key))
        elif isinstance(obj, list | tuple):
            queue.extend((v, f"{where}[{i}]") for i, v in enumerate(obj))
    return None


def template_refs(source: str) -> list[Ref]:
    """Names and constant paths a template reads from its context (names it binds excluded)."""
    tree = _parse(source)
    refs: list[Ref] = []
    _RefWalker(refs).visit_body(tree.body, set())
    return refs


class _RefWalker:
    """Scope-aware walk: loop targets, `set`, macro and `with` names hide context names."""

    def __init__(self, out: list[Ref]) -> None:
        self.out = out

    def visit_body(self, body: list[jn.Node], scope: set[str]) -> None:
        # `set` binds for the statements after it in the same body; copy so it stays local.
        local = set(scope)
        for node in body:
            self.visit(node, local)

    def visit(self, node: jn.Node, scope: set[str]) -> None:
        handler = _HANDLERS.get(type(node))
        if handler is not None:
            handler(self, node, scope)
            return
        for child in node.iter_child_nodes():
            self.visit(child, scope)

    # Expressions -------------------------------------------------------------------------

    def name(self, node: jn.Node, scope: set[str]) -> None:
        assert isinstance(node, jn.Name)
        if node.ctx == "load" and node.name not in scope and node.name not in _BUILTIN_NAMES:
            self.out.append(Ref(node.name, (), 0, node.lineno))

    def chain(self, node: jn.Node, scope: set[str], drop_last: bool = False) -> None:
        path: list[str | int] = []
        cur: jn.Node = node
        while True:
            if isinstance(cur, jn.Getattr):
                path.append(cur.attr)
                cur = cur.node
            elif isinstance(cur, jn.Getitem):
                arg = cur.arg
                const = arg.value if isinstance(arg, jn.Const) else None
                if isinstance(const, str | int) and not isinstance(const, bool):
                    path.append(const)
                else:
                    # a dynamic index ends the constant path: keep only what precedes it
                    path = [ANY_INDEX]
                    self.visit(arg, scope)
                cur = cur.node
            else:
                break
        path.reverse()
        if drop_last and path and path[-1] != ANY_INDEX:
            path.pop()
        if isinstance(cur, jn.Name):
            if cur.ctx == "load" and cur.name not in scope and cur.name not in _BUILTIN_NAMES:
                self.out.append(Ref(cur.name, tuple(path), 0, node.lineno))
        else:
            self.visit(cur, scope)

    def getattr_(self, node: jn.Node, scope: set[str]) -> None:
        self.chain(node, scope)

    def call(self, node: jn.Node, scope: set[str]) -> None:
        assert isinstance(node, jn.Call)
        if isinstance(node.node, jn.Getattr):
            self.chain(node.node, scope, drop_last=True)  # `x.items()`: x is the reference
        else:
            self.visit(node.node, scope)
        for child in (*node.args, *node.kwargs, node.dyn_args, node.dyn_kwargs):
            if child is not None:
                self.visit(child, scope)

    # Statements that bind names ----------------------------------------------------------

    def for_(self, node: jn.Node, scope: set[str]) -> None:
        assert isinstance(node, jn.For)
        self.visit(node.iter, scope)
        inner = scope | _stored(node.target)
        if node.test is not None:
            self.visit(node.test, inner)
        self.visit_body(node.body, inner)
        self.visit_body(node.else_, scope)

    def assign(self, node: jn.Node, scope: set[str]) -> None:
        assert isinstance(node, jn.Assign)
        self.visit(node.node, scope)
        scope |= _stored(node.target)

    def assign_block(self, node: jn.Node, scope: set[str]) -> None:
        assert isinstance(node, jn.AssignBlock)
        if node.filter is not None:
            self.visit(node.filter, scope)
        self.visit_body(node.body, scope)
        scope |= _stored(node.target)

    def macro(self, node: jn.Node, scope: set[str]) -> None:
        assert isinstance(node, jn.Macro)
        for default in node.defaults:
            self.visit(default, scope)
        scope.add(node.name)
        self.visit_body(node.body, scope | {a.name for a in node.args})

    def call_block(self, node: jn.Node, scope: set[str]) -> None:
        assert isinstance(node, jn.CallBlock)
        self.visit(node.call, scope)
        for default in node.defaults:
            self.visit(default, scope)
        self.visit_body(node.body, scope | {a.name for a in node.args})

    def with_(self, node: jn.Node, scope: set[str]) -> None:
        assert isinstance(node, jn.With)
        for value in node.values:
            self.visit(value, scope)
        inner = set(scope)
        for target in node.targets:
            inner |= _stored(target)
        self.visit_body(node.body, inner)


def _stored(target: jn.Node) -> set[str]:
    return {n.name for n in _walk(target) if isinstance(n, jn.Name)}


def _walk(node: jn.Node) -> Iterator[jn.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


_HANDLERS: dict[type[jn.Node], Callable[[_RefWalker, jn.Node, set[str]], None]] = {
    jn.Name: _RefWalker.name,
    jn.Getattr: _RefWalker.getattr_,
    jn.Getitem: _RefWalker.getattr_,
    jn.Call: _RefWalker.call,
    jn.For: _RefWalker.for_,
    jn.Assign: _RefWalker.assign,
    jn.AssignBlock: _RefWalker.assign_block,
    jn.Macro: _RefWalker.macro,
    jn.CallBlock: _RefWalker.call_block,
    jn.With: _RefWalker.with_,
}
