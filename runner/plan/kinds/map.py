"""`map:` nodes: one inner node run for each item of a list, with `as` and `index` in scope."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.expr.bindings import CompiledValue
from runner.plan import schemas
from runner.plan.kinds.base import Kind, Site
from runner.plan.model import MapStep
from runner.plan.names import ref_text, whole_ref
from runner.spec.loader import PathKey
from runner.spec.models import MapNode

if TYPE_CHECKING:
    from runner.plan.compiler import Compiler

RESERVED_AS = frozenset({"inputs", "nodes", "previous", "index"})


def map_item_schema(inner: Any, collect: bool) -> Any:
    """A map item's type: the inner output, or `{ok, output, error}` under `collect`."""
    if not collect:
        return inner or {}
    return {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "output": inner or {},
            "error": {"type": ["string", "null"]},
        },
        "required": ["ok", "output", "error"],
        "additionalProperties": False,
    }


def is_collect(node: Any) -> bool:
    return isinstance(node, MapNode) and node.map.on_item_failure == "collect"


def _array_of(inner: Any, node: MapNode) -> dict[str, Any]:
    return {"type": "array", "items": map_item_schema(inner, is_collect(node))}


def compile_map(c: Compiler, site: Site, node: MapNode) -> dict[str, Any] | None:
    spec = node.map
    if spec.as_ in RESERVED_AS:
        # the item would hide the run's own names inside the map (the taint proof, and a
        # reader, would take `inputs.x` for an input)
        c.error(
            site.at("map", "as"),
            "invalid-value",
            f"map `as: {spec.as_}` would hide `{spec.as_}` inside the map; name the item otherwise",
            hint="e.g. as: item (the default) or as: ticket",
        )
        return None
    where = site.at("map", "over")
    over = c.bound_value(spec.over, where, site.roots, node_id=site.node_id, deps=site.deps)
    item_schema: Any = {}
    if over is not None:
        item_schema = _check_over(c, over, spec.over, where)
    inner = c.compile_node(
        site.node_id,
        spec.node,
        site.at("map", "node"),
        site.routes,
        roots=site.roots | {spec.as_, "index"},
        locals_schema={spec.as_: item_schema, "index": {"type": "integer"}},
        deps=site.deps,
    )
    if over is None or inner is None:
        return None
    step = MapStep(
        over=over,
        as_=spec.as_,
        max_items=spec.max_items,
        max_concurrency=spec.max_concurrency,
        inner=inner,
    )
    return {"map": step, "output_schema": _array_of(inner.output_schema, node)}


def _check_over(c: Compiler, over: CompiledValue, raw: Any, path: PathKey) -> Any:
    """Rule map-not-array: `over` whose schema says it is not an array; returns the item schema."""
    if over.is_static:
        value = over.evaluate({})
        if not isinstance(value, list):
            what = "a string" if isinstance(value, str) else f"a {type(value).__name__}"
            c.error(
                path,
                "map-not-array",
                f"map over {what} ({value!r}); `over` must be a list or a binding to one",
                hint='e.g. over: "${{ nodes.search.output }}" or over: [a, b, c]',
            )
        return {}
    ref = whole_ref(raw, over)
    if ref is None:
        return {}
    if ref.root == "inputs":
        schema: Any = c.spec.inputs
        fields = ref.path
        label = "inputs"
    elif (
        ref.root == "nodes"
        and len(ref.path) >= 2
        and ref.path[0] in c.spec.nodes
        and ref.path[1] == "output"
    ):
        schema = c.output_schema(str(ref.path[0]))
        fields = ref.path[2:]
        label = f"nodes.{ref.path[0]}.output"
    else:
        return {}
    bad, sub = schemas.walk(schema, fields)
    if bad is not None:
        return {}
    if schemas.is_array_schema(sub) is False:
        c.error(
            path,
            "map-not-array",
            f"map over {ref_text(ref)}, whose schema type is {sub.get('type')!r}, not an array",
            hint=f"point `over` at a list inside {label}",
            offset=over.sites[0].offset,
        )
        return {}
    items = sub.get("items") if isinstance(sub, dict) else None
    return items if isinstance(items, dict) else {}


KIND = Kind(
    name="map",
    spec_type=MapNode,
    compile=compile_map,
    output_schema=lambda c, node: _array_of(c.node_output_schema(node.map.node), node),
)
