"""Resolve tool implementations (`module:function`) and derive argument schemas from type hints."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

IDEMPOTENCY_PARAM = "idempotency_key"


class ImplError(Exception):
    """A tool implementation that cannot be imported or is not callable."""


def search_roots(spec_dir: Path) -> list[Path]:
    """Where `module:function` is looked up: spec folder, its ancestors to the root, the CWD."""
    roots = [spec_dir]
    for parent in spec_dir.parents:
        roots.append(parent)
        if (parent / "pyproject.toml").exists() or (parent / ".git").exists():
            break
    roots.append(Path.cwd())
    seen: list[Path] = []
    for r in roots:
        if r not in seen:
            seen.append(r)
    return seen


@contextlib.contextmanager
def on_import_path(roots: list[Path]) -> Iterator[None]:
    added = [str(r) for r in roots if str(r) not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for a in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(a)


def import_callable(ref: str, spec_dir: Path) -> Callable[..., Any]:
    module_name, _, attr = ref.partition(":")
    with on_import_path(search_roots(spec_dir)):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            raise ImplError(f"cannot import module {module_name!r} ({e.msg})") from None
        except Exception as e:  # a tool module that fails on import is the user's bug to see
            raise ImplError(f"importing {module_name!r} failed: {type(e).__name__}: {e}") from None
        except SystemExit as e:  # `sys.exit()` at import must not end flowrun with its code
            raise ImplError(
                f"importing {module_name!r} called sys.exit({e.code!r});"
                " a tool module must not exit"
            ) from None
    fn = getattr(module, attr, None)
    if fn is None:
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        import difflib

        near = difflib.get_close_matches(attr, names, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ImplError(f"module {module_name!r} has no attribute {attr!r}{hint}")
    if not callable(fn):
        raise ImplError(f"{ref!r} is not callable")
    return typing.cast(Callable[..., Any], fn)


# perf (issue 11): inspect.signature per tool node was 7% of validating a 2,000-node spec;
# the answer is kept per callable object (held strongly, so an id is never reused)
_ACCEPTS_KEY: dict[Callable[..., Any], bool] = {}


def accepts_idempotency_key(fn: Callable[..., Any]) -> bool:
    try:
        return _ACCEPTS_KEY[fn]
    except (KeyError, TypeError):  # TypeError: an unhashable callable, never cached
        pass
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    accepts = IDEMPOTENCY_PARAM in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    try:
        if len(_ACCEPTS_KEY) > 4096:
            _ACCEPTS_KEY.clear()
        _ACCEPTS_KEY[fn] = accepts
    except TypeError:
        pass
    return accepts


def derive_args_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """JSON Schema of a callable's keyword arguments from its hints (engine params excluded)."""
    sig = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    props: dict[str, Any] = {}
    defs: dict[str, Any] = {}
    required: list[str] = []
    extra = False
    for name, p in sig.parameters.items():
        if name == IDEMPOTENCY_PARAM:
            continue
        if p.kind is p.VAR_KEYWORD:
            extra = True
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        hint = hints.get(name, Any)
        try:
            schema = TypeAdapter(hint).json_schema()
        except Exception:
            schema = {}
        if p.default is not inspect.Parameter.empty:
            try:
                TypeAdapter(hint).dump_python(p.default, mode="json")
                schema = {**schema, "default": p.default}
            except Exception:
                pass
        else:
            required.append(name)
        schema.pop("title", None)
        props[name] = _hoist_defs(schema, defs)
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": extra}
    if required:
        out["required"] = required
    if defs:
        out["$defs"] = defs
    return out


def _hoist_defs(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Move a parameter schema's `$defs` to the arguments schema's root, where its `$ref`s point.

    Two parameters may bring different definitions under one name: the later one is renamed
    and its references rewritten, so every `#/$defs/...` resolves to what pydantic meant.
    """
    own = schema.pop("$defs", None)
    if not own:
        return schema
    renames: dict[str, str] = {}
    for name, definition in own.items():
        new = name
        n = 2
        while new in defs and defs[new] != definition:
            new = f"{name}_{n}"
            n += 1
        renames[name] = new
    if any(old != new for old, new in renames.items()):
        text = json.dumps({"schema": schema, "defs": own})
        for old, new in renames.items():
            text = text.replace(f'"#/$defs/{old}"', f'"#/$defs/{new}"')
        moved = json.loads(text)
        schema, own = moved["schema"], moved["defs"]
    for name, definition in own.items():
        defs[renames[name]] = definition
    return schema


def derive_result_schema(fn: Callable[..., Any]) -> dict[str, Any] | None:
    try:
        hint = typing.get_type_hints(fn).get("return")
    except Exception:
        return None
    if hint is None or hint is Any:
        return None
    try:
        schema = TypeAdapter(hint).json_schema()
    except Exception:
        return None
    return schema
