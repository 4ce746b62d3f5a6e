"""CEL expressions compiled once at load time, evaluated with errors a user can act on."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.expr.fastcel import NO, FastExpr, compile_fast, plain_activation
from runner.expr.refs import cel_refs


def _load_extension() -> Any:
    """The compiled `cel.cel` module alone: the package's __init__ also imports its REPL
    (typer, prompt_toolkit, rich), which costs a quarter second on every `flowrun` start."""
    import importlib.machinery
    import importlib.util
    import sys

    if "cel" in sys.modules:
        return sys.modules["cel"]
    try:
        spec = importlib.util.find_spec("cel")
        folder = list(spec.submodule_search_locations or []) if spec else []
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            for base in folder:
                path = f"{base}/cel{suffix}"
                ext = importlib.util.spec_from_file_location("cel.cel", path)
                if ext is None or ext.loader is None:
                    continue
                try:
                    module = importlib.util.module_from_spec(ext)
                    ext.loader.exec_module(module)
                except (ImportError, OSError):
                    continue
                return module
    except (ImportError, ValueError):
        pass
    import cel

    return cel


_cel = _load_extension()

__all__ = [
    "CelEvalError",
    "CelSyntaxError",
    "CompiledExpr",
    "ExprError",
    "cel_type_name",
    "compile_cel",
    "register_function",
    "registered_functions",
    "truthy",
]


class ExprError(Exception):
    """Base of expression problems; `offset` (0-based, into the source) lets callers point."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class CelSyntaxError(ExprError):
    """An expression that does not parse; raised at load time, before any token is spent."""


class CelEvalError(ExprError):
    """An expression that failed on the values it was given."""


# Custom functions visible to every evaluation. Invariant: evaluate() reads this dict on every
# call, so a function registered after an expression was compiled is still seen.
_FUNCTIONS: dict[str, Callable[..., object]] = {}

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def register_function(name: str, fn: Callable[..., object]) -> None:
    """Make `fn` callable as `name(...)` (or `x.name(...)`) from every CEL expression."""
    if not _IDENT.match(name):
        raise ValueError(f"invalid CEL function name {name!r}")
    _FUNCTIONS[name] = _guarded(fn)


class _Failed:
    """Returned by a failing custom function: CEL cannot convert it, so evaluation stops
    without the extension printing the Python error to stderr."""


_FAILED = _Failed()
_last_failure = threading.local()


def _guarded(fn: Callable[..., object]) -> Callable[..., object]:
    @functools.wraps(fn)
    def call(*args: object) -> object:
        try:
            return fn(*args)
        except Exception as exc:
            _last_failure.exc = exc
            return _FAILED

    return call


def registered_functions() -> frozenset[str]:
    """Names of custom functions, so name checks do not flag them as unknown."""
    return frozenset(_FUNCTIONS)


class Prepared:
    """An activation converted to CEL values once, to evaluate many expressions against it.

    Converting a Python mapping costs ~25 µs an evaluation; a prepared one costs nothing more.
    perf (issue 11): when every value is plain (see fastcel), the conversion (which then
    cannot fail) waits until an expression the fast path cannot answer needs it; otherwise it
    happens here, as before, so a value the extension rejects still fails at the same point.
    """

    __slots__ = ("_context", "plain", "values")

    def __init__(self, values: Mapping[str, object]) -> None:
        self.values = values
        self.plain = plain_activation(values)
        self._context: Any = None if self.plain else self._convert()

    def _convert(self) -> Any:
        context = _cel.Context()
        for name, value in self.values.items():
            context.add_variable(name, value)
        for name, fn in _FUNCTIONS.items():
            context.add_function(name, fn)
        return context

    @property
    def context(self) -> Any:
        if self._context is None:
            self._context = self._convert()
        return self._context


def prepare(activation: Mapping[str, object]) -> Prepared:
    return Prepared(activation)


@dataclass(frozen=True)
class CompiledExpr:
    """A parsed CEL expression; immutable and shareable between runs and threads."""

    source: str
    _made: Any = field(repr=False, compare=False)  # the extension's program; None: not yet

    @property
    def _program(self) -> Any:
        """The extension's program (made at the first use when the expression was loaded from
        the plan cache: a simple expression the fast path answers never needs it)."""
        made = self._made
        if made is None:
            made = _compile_program(self.source)
            object.__setattr__(self, "_made", made)
        return made

    @functools.cached_property
    def _fast(self) -> FastExpr | None:
        """perf (issue 11): a Python closure for simple expressions (None: always the extension).

        Made at the first evaluation, not at compile time (issue 26): `flowrun validate`
        evaluates nothing, and parsing every expression once more cost it ~0.2 s on the
        2,000-node benchmark spec."""
        return compile_fast(self.source)

    def __reduce__(self) -> tuple[Any, tuple[str, FastExpr | None]]:
        """Pickled as its source and its fast closure (the compiled plan cache,
        runner/plan/cache.py), which pickles as the recipe it was built from: loaded, neither
        is parsed again; the extension's program is made again when first needed."""
        return _restore, (self.source, self._fast)

    def evaluate(self, activation: Mapping[str, object] | Prepared) -> object:
        """Evaluate against `activation`; every failure becomes a one-line CelEvalError."""
        fast = self._fast
        if fast is not None and (not _FUNCTIONS or fast.names.isdisjoint(_FUNCTIONS)):
            if isinstance(activation, Prepared):
                if activation.plain:
                    value = fast.run(activation.values, plain=True)
                    if value is not NO:
                        return value
            else:
                value = fast.run(activation)
                if value is not NO:
                    return value
        ctx: Any
        if isinstance(activation, Prepared):
            ctx, activation = activation.context, activation.values
        else:
            ctx = activation if type(activation) is dict else dict(activation)
            if _FUNCTIONS:
                ctx = {**ctx, **_FUNCTIONS}
        try:
            return self._program.execute(ctx)
        except Exception as exc:  # the extension raises many builtin types; none may leak
            failure: Exception | None = getattr(_last_failure, "exc", None)
            if failure is not None and "_Failed" in str(exc):
                _last_failure.exc = None
                m = _QUOTED.search(str(exc))
                name = m.group(1) if m else "?"
                message = f"function {name!r} failed: {type(failure).__name__}: {failure}"
                raise CelEvalError(message, _find_name(self.source, name)) from failure
            message, offset = _eval_message(exc, self.source)
            null = _null_output(self.source, activation)
            if null is not None:
                message = f"{null} is null (the node did not produce an output): {message}"
            raise CelEvalError(message, offset) from None


def _null_output(source: str, activation: Mapping[str, object]) -> str | None:
    """Name the `nodes.<id>.output` whose field was read while it is null (a skipped node)."""
    from runner.expr.refs import cel_refs

    nodes = activation.get("nodes")
    if not isinstance(nodes, dict):
        return None
    for ref in cel_refs(source):
        if ref.root != "nodes" or len(ref.path) < 3 or ref.path[1] != "output":
            continue
        view = nodes.get(ref.path[0])
        if isinstance(view, dict) and view.get("output") is None:
            status = view.get("status")
            return f"nodes.{ref.path[0]}.output" + (f" ({status})" if status else "")
    return None


def _restore(source: str, fast: FastExpr | None) -> CompiledExpr:
    expr = CompiledExpr(source, None)
    expr.__dict__["_fast"] = fast  # what the cached property would have computed
    return expr


def compile_cel(source: str) -> CompiledExpr:
    """Parse `source` once; syntax errors carry a 0-based offset into `source`."""
    return CompiledExpr(source, _compile_program(source))


@functools.lru_cache(maxsize=8192)
def _compile_program(source: str) -> Any:
    try:
        return _cel.compile(source)
    except ValueError as exc:
        message, offset = _syntax_message(str(exc), source)
        raise CelSyntaxError(message, offset) from None


def truthy(value: object) -> bool:
    """Accept only real booleans, so `when: nodes.x.output.count` is an error, not a guess."""
    if value is True or value is False:
        return value
    raise CelEvalError(f"condition must be a bool, got {cel_type_name(value)}")


def cel_type_name(value: object) -> str:
    """The CEL name of a Python value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes | bytearray):
        return "bytes"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, Mapping):
        return "map"
    return type(value).__name__


_ERROR_LOC = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")


def _syntax_message(text: str, source: str) -> tuple[str, int]:
    """Pick the most useful parser error and turn its line:col into an offset."""
    prefix = f"Failed to parse expression '{source}': "
    if text.startswith(prefix):
        text = text[len(prefix) :]
    errors = [m for m in (_ERROR_LOC.match(line) for line in text.splitlines()) if m]
    if not errors:
        first = text.splitlines()[0] if text else "invalid expression"
        return f"syntax error: {first}", 0
    chosen = next((m for m in errors if m.group(3).startswith("Syntax error:")), errors[0])
    line, col = int(chosen.group(1)), int(chosen.group(2))
    return _tidy_syntax(chosen.group(3)), _offset_of(source, line, col)


def _offset_of(source: str, line: int, col: int) -> int:
    offset = 0
    for _ in range(line - 1):
        nl = source.find("\n", offset)
        if nl < 0:
            break
        offset = nl + 1
    return min(offset + max(col - 1, 0), len(source))


_EXPECTING = re.compile(r" expecting (\{[^}]*\}|\S+)$")


def _tidy_syntax(text: str) -> str:
    text = text.removeprefix("Syntax error: ")
    expecting = _EXPECTING.search(text)
    if expecting and expecting.group(1).count(",") >= 3:
        # ANTLR lists every token that could follow; too long to help a person.
        text = text[: expecting.start()]
    text = re.sub(r"^(?:mismatched|extraneous) input ", "unexpected ", text)
    text = text.replace("'<EOF>'", "end of expression").replace("<EOF>", "end of expression")
    text = re.sub(r"^token recognition error at: '[rRbB]{0,2}['\"].*", "unterminated string", text)
    text = text.replace("token recognition error at: ", "unexpected character(s) ")
    return f"syntax error: {text}"


_QUOTED = re.compile(r"'([^']*)'")
_NUMERIC_HINT = "CEL does not convert int and double; use double(x) or int(x)"
_CONVERT_HINT = "CEL does not convert types; use string(x), int(x) or double(x)"
_PY_TO_CEL = {"float": "double", "str": "string", "NoneType": "null", "dict": "map"}


def _eval_message(exc: Exception, source: str) -> tuple[str, int]:
    """Map the extension's exception zoo onto short messages (and an offset when findable)."""
    text = str(exc)
    if isinstance(exc, KeyError):
        key = exc.args[0] if exc.args else "?"
        return f"no such key {key!r}", _find_key(source, key)
    if isinstance(exc, ZeroDivisionError):
        return ("modulo by zero" if "modulo" in text else "division by zero"), 0
    if isinstance(exc, IndexError):
        return text.split(". ")[0], 0
    if isinstance(exc, OverflowError):
        detail = text.split(". ")[0].rstrip(".").removeprefix("Arithmetic overflow ")
        return f"arithmetic overflow {detail}", 0
    if isinstance(exc, TypeError):
        if text.startswith("Unsupported operation: "):
            op = text.removeprefix("Unsupported operation: ").split(". ")[0]
            words = [_PY_TO_CEL.get(w, w) for w in op.split(" ")]
            numeric = {words[0], words[-1]} <= {"int", "double"}
            hint = _NUMERIC_HINT if numeric else _CONVERT_HINT
            return f"type mismatch: {' '.join(words)} ({hint})", 0
        if text.startswith("No such overload"):
            return (
                "type mismatch: no operator or function accepts these operand types "
                f"({_NUMERIC_HINT}; compare types with type(x))",
                0,
            )
        return f"type mismatch: {text.splitlines()[0] if text else 'bad operand'}", 0
    if text.startswith("Undefined variable or function: "):
        m = _QUOTED.search(text)
        name = m.group(1) if m else "?"
        return f"undefined name {name!r}", _find_name(source, name)
    if text.startswith("Function '"):
        m = _QUOTED.search(text)
        name = m.group(1) if m else "?"
        detail = text.split("' error: ", 1)[-1].split(". Check function arguments")[0]
        detail = detail.removeprefix("Python function call failed: ")
        return f"function {name!r} failed: {detail}", _find_name(source, name)
    if text.startswith("Conversion Error"):
        return "value cannot be used in CEL: " + text.split(": ", 1)[-1], 0
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"evaluation failed: {first}", 0


def _find_name(source: str, name: str) -> int:
    for ref in cel_refs(source):
        if ref.root == name:
            return ref.offset
    m = re.search(r"(?<![\w.])" + re.escape(name) + r"\s*\(", source)
    return m.start() if m else 0


def _find_key(source: str, key: object) -> int:
    if not isinstance(key, str):
        return 0
    pattern = r"\.\s*(" + re.escape(key) + r")\b|\[\s*[rR]?['\"](" + re.escape(key) + r")['\"]"
    m = re.search(pattern, source)
    if not m:
        return 0
    return m.start(1) if m.group(1) is not None else m.start(2) - 1
