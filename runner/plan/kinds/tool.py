"""`tool:` nodes: a contract's implementation (Python `module:function`, or an MCP tool from the
lock), its argument and result schemas, idempotency key, preview and destination."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from runner.plan import schemas
from runner.plan.kinds.base import Kind, Site
from runner.plan.model import ToolStep
from runner.plan.names import did_you_mean, has_binding, path_refs
from runner.plan.tools import (
    ImplError,
    accepts_idempotency_key,
    derive_args_schema,
    derive_result_schema,
    import_callable,
)
from runner.spec.loader import PathKey
from runner.spec.models import ToolNode

if TYPE_CHECKING:
    from runner.plan.compiler import Compiler

Impl = tuple[Any, dict[str, Any], dict[str, Any] | None]  # callable, args schema, result schema


def tool_effect(c: Compiler, name: str) -> str:
    """A tool's effect as it will run: an MCP tool's comes from its lock unless the spec
    set it (tool_impl resolved it, or found it broken: then the spec's word)."""
    resolved = c.tool_cache.get(name)
    fn = resolved[0] if resolved is not None else None
    contract = getattr(fn, "contract", None)
    return str(getattr(contract, "effect", c.spec.tools[name].effect))


def tool_impl(c: Compiler, name: str) -> Impl | None:
    """(callable, args schema, result schema) for a tool contract, or None if it is broken."""
    cache = c.tool_cache
    if name in cache:
        return cache[name]
    contract = c.spec.tools[name]
    result: Impl | None = None
    if contract.mcp is not None:  # an MCP server's tool, resolved from the lock
        from runner.mcp.contracts import resolve as resolve_mcp

        cache[name] = resolve_mcp(c, name)
        return cache[name]
    assert contract.impl is not None
    try:
        fn = import_callable(contract.impl, c.loaded.directory)
    except ImplError as e:
        c.error(
            ("tools", name, "impl"),
            "unknown-impl",
            f"tool {name!r}: {e}",
            hint="impl is module:function, importable from the spec's folder or project root",
        )
    else:
        ok = True
        if contract.args is not None:
            ok = c.check_schema(contract.args, ("tools", name, "args"))
        if contract.result is not None:
            ok = c.check_schema(contract.result, ("tools", name, "result")) and ok
        if ok:
            args_schema = contract.args if contract.args is not None else derive_args_schema(fn)
            res = contract.result if contract.result is not None else derive_result_schema(fn)
            result = (fn, args_schema, res)
    if contract.compensate:
        try:
            import_callable(contract.compensate, c.loaded.directory)
        except ImplError as e:
            c.error(("tools", name, "compensate"), "unknown-impl", f"tool {name!r} compensate: {e}")
    cache[name] = result
    return result


def tool_result_schema(c: Compiler, name: str) -> Any:
    if name not in c.spec.tools:
        return None
    impl = tool_impl(c, name)
    return impl[2] if impl else None


def compile_tool(c: Compiler, site: Site, node: ToolNode) -> dict[str, Any] | None:
    step = _step(c, site, node)
    if step is None:
        return None
    fields: dict[str, Any] = {"tool": step, "output_schema": step.result_schema}
    if node.retry is None and step.contract.retry is not None:
        fields["retry"] = step.contract.retry
    if node.timeout is None:
        fields["timeout"] = step.contract.timeout
    return fields


def _step(c: Compiler, site: Site, node: ToolNode) -> ToolStep | None:
    if node.tool not in c.spec.tools:
        c.error(
            site.at("tool"),
            "unknown-tool",
            f"tool {node.tool!r} is not defined",
            hint=did_you_mean(node.tool, c.spec.tools) or "declare its contract under `tools`",
        )
        return None
    contract = c.spec.tools[node.tool]
    args = c.bound_value(
        node.args,
        site.at("args"),
        site.roots,
        node_id=site.node_id,
        deps=site.deps,
        locals_schema=site.locals_schema,
    )
    impl = tool_impl(c, node.tool)
    here = ("tools", node.tool)
    key = None
    if contract.idempotency_key is not None:
        key = c.value(contract.idempotency_key, (*here, "idempotency_key"))
        if key is not None:
            c.check_refs(
                [r for _, r in path_refs(key)],
                (*here, "idempotency_key"),
                frozenset({"args", "inputs"}),
                node_id=None,
                deps=None,
            )
    preview_fn = None
    if contract.preview is not None:
        try:
            preview_fn = import_callable(contract.preview, c.loaded.directory)
        except ImplError as e:
            c.error((*here, "preview"), "unknown-impl", f"tool {node.tool!r} preview: {e}")
            return None
    destination = None
    if contract.destination is not None:
        destination = c.value(contract.destination, (*here, "destination"))
        if destination is None:
            return None
        c.check_refs(
            [r for _, r in path_refs(destination)],
            (*here, "destination"),
            frozenset({"args", "inputs"}),
            node_id=None,
            deps=None,
        )
    if impl is None or args is None:
        return None
    fn, args_schema, result_schema = impl
    contract = getattr(fn, "contract", contract)  # an MCP tool's contract, from the lock
    _check_static_args(c, node, args_schema, site.path)
    return ToolStep(
        preview_fn=preview_fn,
        destination=destination,
        on_deny=node.on_deny,
        name=node.tool,
        contract=contract,
        fn=fn,
        is_async=inspect.iscoroutinefunction(fn),
        accepts_idempotency_key=accepts_idempotency_key(fn),
        args=args,
        args_schema=args_schema,
        result_schema=result_schema,
        idempotency_key=key,
    )


def _check_static_args(c: Compiler, node: ToolNode, schema: dict[str, Any], path: PathKey) -> None:
    """Rules unknown-arg, missing-arg and invalid-arg, on what is known before the run."""
    props = schema.get("properties")
    if isinstance(props, dict) and schema.get("additionalProperties") is False:
        for name in node.args:
            if name not in props:
                c.error(
                    (*path, "args", name),
                    "unknown-arg",
                    f"tool {node.tool!r} takes no argument {name!r}",
                    hint=did_you_mean(name, props)
                    or f"arguments: {', '.join(sorted(props)) or '(none)'}",
                    key=True,
                )
    for name in schema.get("required", []) or []:
        if name not in node.args:
            c.error(
                (*path, "args"),
                "missing-arg",
                f"tool {node.tool!r} needs argument {name!r}",
                key=True,
            )
    if isinstance(props, dict):
        for name, value in node.args.items():
            sub = props.get(name)
            if not isinstance(sub, dict) or has_binding(value):
                continue
            if "$defs" in schema:  # a parameter's `$ref`s point at the arguments' root
                sub = {**sub, "$defs": schema["$defs"]}
            errs = schemas.validation_errors(sub, value, limit=1)
            if errs:
                c.error(
                    (*path, "args", name),
                    "invalid-arg",
                    f"argument {name!r}: {errs[0].split(': ', 1)[-1]}",
                )


KIND = Kind(
    name="tool",
    spec_type=ToolNode,
    compile=compile_tool,
    output_schema=lambda c, node: tool_result_schema(c, node.tool),
)
