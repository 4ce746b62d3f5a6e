"""The compiler's core: its state for one spec, how it reports, and the expression helpers
every part uses. Node kinds (runner/plan/kinds/), rules (runner/plan/rules/), policies and the
whole-plan assembly (runner/plan/assemble.py) build on it."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from runner.errors import Diagnostic
from runner.expr.bindings import BindingError, CompiledValue, compile_expr_or_binding, compile_value
from runner.expr.cel import CelSyntaxError, CompiledExpr, ExprError
from runner.expr.refs import Ref
from runner.expr.templates import PromptTemplate, TemplateError, compile_template
from runner.plan import kinds, schemas
from runner.plan.bundle import DiskSources, Sources
from runner.plan.kinds.base import Site
from runner.plan.model import Plan, PlanNode, Route
from runner.plan.names import path_refs
from runner.plan.refs import check_refs
from runner.plan.routes import resolve_routes
from runner.spec import LoadedSpec
from runner.spec.loader import PathKey


@lru_cache(maxsize=2048)
def _template(source: str, name: str) -> PromptTemplate:
    return compile_template(source, name)


@dataclass
class Compiler:
    """Collects diagnostics while building plan parts, so that one run reports every problem."""

    loaded: LoadedSpec
    profile: str | None = None
    diags: list[Diagnostic] = field(default_factory=list)
    # subflows: the files being compiled above this one (resolved, shown), and a per-compile
    # cache of child plans and composite output schemas (runner/plan/kinds/flow.py, loop.py)
    flow_chain: tuple[tuple[str, str], ...] = ()
    flow_plans: dict[Any, Any] = field(default_factory=dict)
    # the files this spec names are read through `sources` (disk, recorded; or a run's bundle);
    # `spec_key` is this spec's key there (a subflow's differs from the entry's)
    sources: Sources | None = None
    spec_key: str | None = None

    def __post_init__(self) -> None:
        if self.sources is None:
            self.sources = DiskSources.for_spec(self.loaded.source.path, self.loaded.source.text)
        if self.spec_key is None:
            self.spec_key = self.sources.entry
        self.files: Sources = self.sources
        self.base = posixpath.dirname(self.spec_key)
        self.spec = self.loaded.spec
        self.src = self.loaded.source
        self.node_ids = list(self.spec.nodes)
        self.order_index = {n: i for i, n in enumerate(self.node_ids)}
        self._out_cache: dict[str, Any] = {}
        self.tool_cache: dict[str, tuple[Any, dict[str, Any], dict[str, Any] | None] | None] = {}

    def new(self, loaded: LoadedSpec, profile: str | None, **kw: Any) -> Compiler:
        """A compiler for a subflow or loop body, reading the same sources, sharing caches."""
        return Compiler(loaded, profile, sources=self.files, flow_plans=self.flow_plans, **kw)

    def compile(self) -> Plan:
        from runner.plan.assemble import assemble

        return assemble(self)

    # -- reporting ---------------------------------------------------------------------------
    def error(self, path: PathKey, rule: str, message: str, **kw: Any) -> None:
        file, text = kw.pop("file", None), kw.pop("text", None)
        if file is not None and text is not None and kw.get("offset") is not None:
            # a reference inside a prompt file: point into that file, not the spec
            before = text[: kw["offset"]]
            line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
            self.diags.append(
                Diagnostic(
                    file=file, line=line, col=col, rule=rule, message=message, hint=kw.get("hint")
                )
            )
            return
        self.diags.append(self.src.diag(path, rule, message, **kw))

    def resolve_routes(self, profile: str | None) -> dict[str, Route]:
        return resolve_routes(self.spec, profile)

    # -- expressions -------------------------------------------------------------------------
    def cel(self, text: str, path: PathKey) -> CompiledExpr | None:
        try:
            return compile_expr_or_binding(text)
        except (CelSyntaxError, BindingError, ExprError) as e:
            self.error(path, "cel-syntax", e.message, offset=e.offset)
            return None

    def value(self, value: Any, path: PathKey) -> CompiledValue | None:
        try:
            return compile_value(value)
        except BindingError as e:
            self.error((*path, *e.path), "cel-syntax", e.message, offset=e.offset)
            return None

    def bound_value(
        self,
        value: Any,
        path: PathKey,
        roots: frozenset[str],
        *,
        node_id: str | None,
        deps: set[str] | None,
        locals_schema: Mapping[str, Any] | None = None,
    ) -> CompiledValue | None:
        """Compile a value with `${{ }}` bindings and check every reference it makes."""
        cv = self.value(value, path)
        if cv is not None:
            for site_path, ref in path_refs(cv):
                self.check_refs(
                    [ref],
                    (*path, *site_path),
                    roots,
                    node_id=node_id,
                    deps=deps,
                    locals_schema=locals_schema,
                )
        return cv

    def template(
        self, text: str, path: PathKey, *, file: str | None = None
    ) -> PromptTemplate | None:
        try:
            return _template(text, file or "/".join(map(str, path)))
        except TemplateError as e:
            if file is not None:
                line, col, shown = max(e.line, 1), 1, file
            else:
                line, col = self.src.expr_pos(path, 0)
                p = self.src.values.get(tuple(path))
                if p is not None and p.style in ("|", ">"):
                    line = p.line + max(e.line, 1)
                shown = self.src.path
            self.diags.append(
                Diagnostic(
                    file=shown, line=line, col=col, rule="template-syntax", message=e.message
                )
            )
            return None

    def check_refs(
        self,
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
        """Check names and fields of every reference; add referenced nodes to deps."""
        check_refs(
            self,
            refs,
            path,
            roots,
            node_id=node_id,
            deps=deps,
            template=template,
            file=file,
            locals_schema=locals_schema,
        )

    # -- schemas -----------------------------------------------------------------------------
    def check_schema(self, schema: Any, path: PathKey, *, llm_output: bool = False) -> bool:
        found = schemas.schema_problem_at(schema)
        if found is not None:
            problem, where = found
            hint = None
            if where and where[-1] == "type":
                hint = (
                    "types are "
                    + ", ".join(schemas.JSON_TYPES)
                    + "; for a fixed set of values use `enum: [...]`"
                )
            rule = "schema-ref" if where and where[-1] == "$ref" else "invalid-json-schema"
            self.error((*path, *where), rule, problem, hint=hint, key=not where)
            return False
        if llm_output and isinstance(schema, dict) and schema.get("type") != "object":
            self.error(
                (*path, "type") if "type" in schema else path,
                "invalid-json-schema",
                "an LLM node's output schema must have `type: object`"
                " (structured output needs an object)",
                hint="wrap the value:"
                " {type: object, properties: {answer: ...}, required: [answer]}",
                key="type" not in schema,
            )
            return False
        return True

    def output_schema(self, node_id: str) -> Any:
        """The output type of a node of this spec, as references to it see it."""
        cache = self._out_cache
        if node_id not in cache:
            cache[node_id] = self.node_output_schema(self.spec.nodes[node_id])
        return cache[node_id]

    def node_output_schema(self, node: Any) -> Any:
        return kinds.output_schema(self, node)

    # -- nodes -------------------------------------------------------------------------------
    def compile_node(
        self,
        node_id: str,
        node: Any,
        path: PathKey,
        routes: Mapping[str, Route],
        *,
        roots: frozenset[str],
        locals_schema: Mapping[str, Any] | None,
        deps: set[str],
    ) -> PlanNode | None:
        site = Site(node_id, path, routes, roots, locals_schema, deps)
        return kinds.compile_node(self, site, node)
