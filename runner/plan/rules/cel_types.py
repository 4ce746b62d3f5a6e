"""CEL typed by the declared schemas: errors a run is certain to hit, reported at validate.

Types come from `inputs`, each node's output schema (`nodes.X.output`; null too, since a
skipped node has no output), `nodes.X.status` (a string), a map's item and index, a loop's
`previous` and `iteration`, and the policy request. What a schema does not say is `dyn` and
never reported (runner/expr/celtypes.py). Names, nodes and fields that do not exist are the
reference check's business (unknown-name, unknown-field), not this one's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from runner.errors import Diagnostic
from runner.expr import celtypes as ct
from runner.expr.bindings import CompiledValue, compile_expr_or_binding, compile_value, format_path
from runner.expr.cel import ExprError, registered_functions
from runner.plan.digraph import DiGraph
from runner.spec.loader import PathKey

RULES: dict[str, str] = {
    "unknown-function": "a CEL call to a function or method that does not exist",
    "cel-type": "a CEL operation that fails, or is always false, for the declared types",
    "condition-type": "a when, check, until or policy condition that cannot be a bool",
    "invalid-regex": "a matches() pattern that is not a valid regular expression",
    "arg-type": "a binding whose type does not match the tool argument or subflow input",
}

_BOOL_ONLY = frozenset({ct.BOOL})
_STRING = ct.Ty(frozenset({ct.STRING}))
_INT = ct.Ty(frozenset({ct.INT}))
_STRINGS = ct.Ty(frozenset({ct.LIST}), elem=_STRING)
_NODE_ERROR = ct.DYN

Scope = Callable[[str], "ct.Ty | None"]


def _output_ty(schema: Any) -> ct.Ty:
    if not isinstance(schema, dict) or not schema:
        return ct.DYN
    return ct.Ty(ct.schema_kinds(schema, schema) | {ct.NULL}, schema, schema)


def _views(outputs: Callable[[str], Any]) -> ct.Ty:
    """`nodes` (or a loop's `previous`): each id's view, its output typed by `outputs(id)`."""
    cache: dict[str, ct.Ty | None] = {}

    def lookup(node_id: str) -> ct.Ty | None:
        if node_id not in cache:
            schema = outputs(node_id)
            cache[node_id] = (
                None
                if schema is _MISSING
                else ct.view(
                    {"output": _output_ty(schema), "status": _STRING, "error": _NODE_ERROR}
                )
            )
        return cache[node_id]

    return ct.lazy_map(lookup)


_MISSING = object()


def _chain(names: Mapping[str, ct.Ty], outer: Scope) -> Scope:
    def scope(name: str) -> ct.Ty | None:
        found = names.get(name)
        return found if found is not None else outer(name)

    return scope


class _Check:
    def __init__(self, compiler: Any) -> None:
        self.c = compiler
        self.src = compiler.src
        self.functions = registered_functions()
        self.diags: list[Diagnostic] = []

    def report(self, path: PathKey, offset: int, p: ct.Problem) -> None:
        self.diags.append(self.src.diag(path, p.rule, p.message, hint=p.hint, offset=offset))

    def expr(
        self, source: str, path: PathKey, scope: Scope, *, base: int = 0, condition: bool = False
    ) -> ct.Ty:
        ty, problems = ct.check(
            source, scope, functions=self.functions, want=_BOOL_ONLY if condition else None
        )
        for p in problems:
            self.report(path, base + p.offset, p)
        return ty

    def value(
        self, cv: CompiledValue, raw: Any, path: PathKey, scope: Scope, target: Any = None
    ) -> list[ct.Ty]:
        """Check each binding of a value; with a `target` schema, its type against the slot."""
        out = []
        per_path: dict[tuple[Any, ...], int] = {}
        for site in cv.sites:
            per_path[site.path] = per_path.get(site.path, 0) + 1
        for site in cv.sites:
            ty = self.expr(site.source, (*path, *site.path), scope, base=site.offset)
            out.append(ty)
            if not isinstance(target, dict):
                continue
            slot = _slot(target, site.path)
            if slot is None:
                continue
            want = ct.schema_kinds(slot, target)
            if want == ct.ALL:
                continue
            text = _at(raw, site.path)
            whole = (
                per_path[site.path] == 1
                and isinstance(text, str)
                and text.strip().startswith("${{")
                and text.strip().endswith("}}")
            )
            got = ty.kinds if whole else frozenset({ct.STRING})
            if ty.dyn and whole:
                continue
            if got != {ct.NULL}:
                got = got - {ct.NULL}  # a skipped node's null output is the join's business
            if got & want:
                continue
            where = format_path(site.path)
            declared = slot.get("type")
            wanted = (
                " or ".join(declared)
                if isinstance(declared, list) and all(isinstance(t, str) for t in declared)
                else declared
                if isinstance(declared, str)
                else ct.describe(want)
            )
            what = "this binding gives" if whole else "text around a binding makes"
            self.diags.append(
                self.src.diag(
                    (*path, *site.path),
                    "arg-type",
                    f"{where!r} takes {wanted}, but {what} {ct.describe(got)}",
                    hint="convert it in the binding, e.g. string(x), int(x) or double(x)"
                    if whole
                    else "make the whole value one binding: '${{ ... }}'",
                    offset=site.offset,
                )
            )
        return out

    # -- nodes -----------------------------------------------------------------------------
    def node(self, pn: Any, path: PathKey, scope: Scope, node_scope: Callable[..., Scope]) -> None:
        if pn.when is not None:
            self.expr(pn.when.source, (*path, "when"), scope, condition=True)
        if pn.gate is not None:
            for i, (expr, _) in enumerate(pn.gate.checks):
                self.expr(expr.source, (*path, "gate", i, "check"), scope, condition=True)
        if pn.switch is not None:
            for i, (expr, _) in enumerate(pn.switch.cases):
                self.expr(expr.source, (*path, "switch", "cases", i, "when"), scope, condition=True)
        if pn.approval is not None and pn.approval.when is not None:
            self.expr(pn.approval.when.source, (*path, "approval", "when"), scope, condition=True)
        if pn.tool is not None:
            raw = getattr(pn.spec, "args", None)
            self.value(pn.tool.args, raw, (*path, "args"), scope, pn.tool.args_schema)
        if pn.flow is not None:
            raw = getattr(pn.spec, "inputs", None)
            self.value(pn.flow.inputs, raw, (*path, "inputs"), scope, pn.flow.plan.inputs_schema)
        if pn.map is not None:
            m = pn.map
            mpath = (*path, "map")
            tys = self.value(m.over, getattr(pn.spec.map, "over", None), (*mpath, "over"), scope)
            item = ct.DYN
            if len(m.over.sites) == 1 and tys:
                text = getattr(pn.spec.map, "over", None)
                if isinstance(text, str) and text.strip().startswith("${{"):
                    item = ct.element(tys[0])
            inner = _chain({m.as_: item, "index": _INT}, scope)
            self.node(m.inner, (*mpath, "node"), inner, node_scope)
        if pn.loop is not None:
            lp = pn.loop
            body = lp.body.nodes
            lpath = (*path, "loop")

            def body_output(bid: str) -> Any:
                bn = body.get(bid)
                return _MISSING if bn is None else _declared_output(bn)

            inner = node_scope(body_output)
            inner = _chain({"previous": _views(body_output), "iteration": _INT}, inner)
            for bid, bn in body.items():
                self.node(bn, (*lpath, "body", bid), inner, node_scope)
            self.expr(lp.until.source, (*lpath, "until"), inner, condition=True)


def _declared_output(pn: Any) -> Any:
    if pn.kind == "llm" and pn.output_schema is None:
        return {"type": "string"}
    return pn.output_schema


def _slot(schema: dict[str, Any], path: Iterable[str | int]) -> Any:
    """The sub-schema of an argument path (`to`, `items[0].id`), or None when not declared."""
    current: Any = schema
    for seg in path:
        current = ct.resolve(current, schema)
        if not isinstance(current, dict):
            return None
        if isinstance(seg, int):
            current = current.get("items")
            continue
        props = current.get("properties")
        if isinstance(props, dict) and seg in props:
            current = props[seg]
        elif isinstance(current.get("additionalProperties"), dict):
            current = current["additionalProperties"]
        else:
            return None
    current = ct.resolve(current, schema)
    return current if isinstance(current, dict) else None


def _at(value: Any, path: Iterable[str | int]) -> Any:
    for seg in path:
        try:
            value = value[seg]
        except (KeyError, IndexError, TypeError):
            return None
    return value


_REQUEST_STRINGS = (
    *("actor", "tenant", "workflow", "node", "tool", "effect", "classification"),
    *("destination", "now"),
)


def check(
    compiler: Any,
    graph: DiGraph[str],
    nodes: Mapping[str, Any],
    switches_of: Mapping[str, list[str]],
) -> list[Diagnostic]:
    spec = compiler.spec
    run = _Check(compiler)
    inputs = ct.ty_of_schema(spec.inputs)

    def top_output(node_id: str) -> Any:
        return compiler.output_schema(node_id) if node_id in spec.nodes else _MISSING

    def node_scope(extra: Callable[[str], Any] | None = None) -> Scope:
        def outputs(node_id: str) -> Any:
            if extra is not None:
                found = extra(node_id)
                if found is not _MISSING:
                    return found
            return top_output(node_id)

        return _chain({"inputs": inputs, "nodes": _views(outputs)}, lambda name: None)

    base = node_scope()
    for node_id, pn in nodes.items():
        run.node(pn, ("nodes", node_id), base, node_scope)
    for name, binding in spec.outputs.items():
        try:
            cv = compile_value(binding)
        except ExprError:
            continue  # reported as cel-syntax
        run.value(cv, binding, ("outputs", name), base)
    request = {name: _STRING for name in _REQUEST_STRINGS}
    request.update({"args": ct.Ty(frozenset({ct.MAP})), "scopes": _STRINGS, "tainted": _STRINGS})
    request["inputs"] = inputs
    policy_scope = _chain(request, lambda name: None)
    for i, p in enumerate(spec.policies):
        try:
            expr = compile_expr_or_binding(p.when)
        except ExprError:
            continue
        run.expr(expr.source, ("policies", i, "when"), policy_scope, condition=True)
    return run.diags
