"""Reference checks: every name an expression or template uses exists, with the fields it reads.

Rules: unknown-name, unknown-node, dynamic-ref, self-reference, unknown-field. A reference to a
node is also a dependency (the node runs after it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from runner.expr.refs import Ref
from runner.plan import schemas
from runner.plan.names import did_you_mean, template_offset
from runner.spec.loader import PathKey

if TYPE_CHECKING:
    from runner.plan.compiler import Compiler


def check_refs(
    c: Compiler,
    refs: Iterable[Ref],
    path: PathKey,
    roots: frozenset[str],
    *,
    node_id: str | None,
    deps: set[str] | None,
    template: str | None = None,
    file: str | None = None,
    locals_schema: Mapping[str, Any] | None = None,
) -> None:
    """Check names and fields of every reference; add referenced nodes to deps.

    `template` is the Jinja source the refs come from (they carry a line, not an offset);
    `file` is where that source lives when it is not the spec (a prompt_file).
    """
    for ref in refs:
        at: dict[str, Any] = {"offset": ref.offset}
        if template is not None:
            at = {"offset": template_offset(template, ref), "file": file, "text": template}
        if ref.root not in roots:
            c.error(
                path,
                "unknown-name",
                f"unknown name {ref.root!r}",
                hint=did_you_mean(ref.root, roots)
                or f"known names here: {', '.join(sorted(roots))}",
                **at,
            )
            continue
        if ref.root == "inputs":
            check_schema_path(c, c.spec.inputs, ref.path, "inputs", path, at)
        elif ref.root == "nodes":
            _check_node_ref(c, ref, path, node_id=node_id, deps=deps, at=at)
        elif locals_schema is not None and ref.root in locals_schema:
            check_schema_path(c, locals_schema[ref.root], ref.path, ref.root, path, at)


def _check_node_ref(
    c: Compiler,
    ref: Ref,
    path: PathKey,
    *,
    node_id: str | None,
    deps: set[str] | None,
    at: dict[str, Any],
) -> None:
    if not ref.path or not isinstance(ref.path[0], str):
        c.error(
            path,
            "dynamic-ref",
            "nodes must be referenced by a literal id (nodes.<id>.output...)",
            **at,
        )
        return
    target = ref.path[0]
    if target not in c.spec.nodes:
        c.error(
            path,
            "unknown-node",
            f"node {target!r} is not defined",
            hint=did_you_mean(target, c.node_ids),
            **at,
        )
        return
    if target == node_id:
        c.error(path, "self-reference", f"node {node_id!r} refers to its own result", **at)
        return
    if deps is not None:
        deps.add(target)
    if len(ref.path) < 2:
        return
    attr = ref.path[1]
    if attr not in schemas.NODE_ATTRS:
        c.error(
            path,
            "unknown-field",
            f"nodes.{target} has no attribute {attr!r}",
            hint=did_you_mean(str(attr), schemas.NODE_ATTRS)
            or "use nodes.<id>.output, nodes.<id>.status or nodes.<id>.error",
            **at,
        )
        return
    if attr == "output":
        check_schema_path(
            c, c.output_schema(target), ref.path[2:], f"nodes.{target}.output", path, at
        )


def check_schema_path(
    c: Compiler,
    schema: Any,
    fields: tuple[str | int, ...],
    label: str,
    path: PathKey,
    at: dict[str, Any],
) -> None:
    """Report the first field of `fields` that `schema` does not have (unknown-field)."""
    if not fields:
        return
    bad, _ = schemas.walk(schema, fields)
    if bad is None:
        return
    prefix = label + "".join(f"[{f}]" if isinstance(f, int) else f".{f}" for f in fields[:bad])
    seg = fields[bad]
    _, parent = schemas.walk(schema, fields[:bad])
    names = schemas.field_names(parent)
    hint = did_you_mean(str(seg), names) if names else None
    if hint is None and names:
        hint = f"{prefix} has: {', '.join(names)}"
    what = (
        f"index {seg}"
        if isinstance(seg, int) and seg >= 0
        else "items"
        if isinstance(seg, int)
        else f"field {seg!r}"
    )
    c.error(path, "unknown-field", f"{prefix} has no {what} in its schema", hint=hint, **at)
