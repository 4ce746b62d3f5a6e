"""Spec → Plan: resolve names, compile expressions, check references, build the graph."""

from __future__ import annotations

import difflib
import inspect
import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import networkx as nx

from runner.errors import Diagnostic, SpecError, errors_only
from runner.expr.bindings import BindingError, CompiledValue, compile_expr_or_binding, compile_value
from runner.expr.cel import CelSyntaxError, CompiledExpr, ExprError
from runner.expr.refs import Ref, cel_refs
from runner.expr.templates import PromptTemplate, TemplateError, compile_template, template_refs
from runner.plan import compose, schemas
from runner.plan.bundle import Bundle, BundleSources, DiskSources, Sources, file_key
from runner.plan.cost import estimate_cost
from runner.plan.model import (
    DEFAULT_MAX_TOKENS,
    NO_RETRY,
    ApprovalStep,
    GateStep,
    LLMStep,
    MapStep,
    Plan,
    PlanNode,
    Route,
    SwitchStep,
    ToolStep,
)
from runner.plan.rules import graph_rules
from runner.plan.taint import with_taint
from runner.plan.tools import (
    ImplError,
    accepts_idempotency_key,
    derive_args_schema,
    derive_result_schema,
    import_callable,
)
from runner.policy import REQUEST_FIELDS, CedarPolicies, PolicySet, Rule
from runner.spec import LoadedSpec
from runner.spec.loader import PathKey
from runner.spec.models import (
    ApprovalNode,
    FlowNode,
    GateNode,
    LLMNode,
    LoopNode,
    MapNode,
    ModelConfig,
    SwitchNode,
    ToolNode,
    node_kind,
)

NODE_ROOTS = frozenset({"inputs", "nodes"})


def did_you_mean(name: str, options: Iterable[str]) -> str | None:
    near = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"did you mean {near[0]!r}?" if near else None


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
    # cache of child plans and composite output schemas (runner/plan/compose.py)
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
        self._tool_cache: dict[str, tuple[Any, dict[str, Any], dict[str, Any] | None] | None] = {}

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

    def warn(self, path: PathKey, rule: str, message: str, **kw: Any) -> None:
        self.diags.append(self.src.diag(path, rule, message, severity="warning", **kw))

    # -- routes ------------------------------------------------------------------------------
    def resolve_routes(self, profile: str | None) -> dict[str, Route]:
        base: dict[str, ModelConfig] = {}
        for alias, route in self.spec.models.items():
            base[alias] = route if isinstance(route, ModelConfig) else ModelConfig(model=route)
        if profile is not None:
            for alias, route in self.spec.profiles.get(profile, {}).items():
                if isinstance(route, ModelConfig):
                    base[alias] = route
                else:
                    # a bare model id in a profile keeps the alias's parameters, swaps the model
                    old = base.get(alias)
                    base[alias] = (
                        old.model_copy(update={"model": route, "fallbacks": []})
                        if old
                        else ModelConfig(model=route)
                    )
        return {a: Route(alias=a, config=c) for a, c in base.items()}

    def check_profiles(self) -> None:
        for pname, aliases in self.spec.profiles.items():
            for alias in aliases:
                if alias not in self.spec.models:
                    self.error(
                        ("profiles", pname, alias),
                        "unknown-model",
                        f"profile {pname!r} routes alias {alias!r}, which `models` does not define",
                        hint=did_you_mean(alias, self.spec.models)
                        or "define the alias under `models` first",
                        key=True,
                    )
        if self.profile is not None and self.profile not in self.spec.profiles:
            options = sorted(self.spec.profiles)
            self.error(
                ("profiles",),
                "unknown-profile",
                f"--profile {self.profile!r} is not defined in this spec",
                hint=did_you_mean(self.profile, options)
                or (
                    f"defined profiles: {', '.join(options)}"
                    if options
                    else "this spec defines no profiles"
                ),
                key=True,
            )

    def model_path(self, model: str) -> PathKey:
        """Where a litellm model id is written (chosen profile first), for diagnostics."""
        tables: list[tuple[PathKey, Mapping[str, Any]]] = []
        if self.profile in self.spec.profiles:
            tables.append((("profiles", self.profile), self.spec.profiles[self.profile]))
        tables.append((("models",), self.spec.models))
        for prefix, table in tables:
            for alias, route in table.items():
                if route == model:
                    return (*prefix, alias)
                if isinstance(route, ModelConfig):
                    if route.model == model:
                        return (*prefix, alias, "model")
                    if model in route.fallbacks:
                        return (*prefix, alias, "fallbacks", route.fallbacks.index(model))
        return ("models",)

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
                self.diags.append(
                    Diagnostic(
                        file=file,
                        line=max(e.line, 1),
                        col=1,
                        rule="template-syntax",
                        message=e.message,
                    )
                )
            else:
                line, col = self.src.expr_pos(path, 0)
                p = self.src.values.get(tuple(path))
                if p is not None and p.style in ("|", ">"):
                    line = p.line + max(e.line, 1)
                self.diags.append(
                    Diagnostic(
                        file=self.src.path,
                        line=line,
                        col=col,
                        rule="template-syntax",
                        message=e.message,
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
        """Check names and fields of every reference; add referenced nodes to deps.

        `template` is the Jinja source the refs come from (they carry a line, not an offset);
        `file` is where that source lives when it is not the spec (a prompt_file).
        """
        for ref in refs:
            at: dict[str, Any] = {"offset": ref.offset}
            if template is not None:
                at = {"offset": _template_offset(template, ref), "file": file, "text": template}
            if ref.root not in roots:
                self.error(
                    path,
                    "unknown-name",
                    f"unknown name {ref.root!r}",
                    hint=did_you_mean(ref.root, roots)
                    or f"known names here: {', '.join(sorted(roots))}",
                    **at,
                )
                continue
            if ref.root == "inputs":
                self._check_schema_path(self.spec.inputs, ref.path, "inputs", path, at)
            elif ref.root == "nodes":
                if not ref.path or not isinstance(ref.path[0], str):
                    self.error(
                        path,
                        "dynamic-ref",
                        "nodes must be referenced by a literal id (nodes.<id>.output...)",
                        **at,
                    )
                    continue
                target = ref.path[0]
                if target not in self.spec.nodes:
                    self.error(
                        path,
                        "unknown-node",
                        f"node {target!r} is not defined",
                        hint=did_you_mean(target, self.node_ids),
                        **at,
                    )
                    continue
                if target == node_id:
                    self.error(
                        path, "self-reference", f"node {node_id!r} refers to its own result", **at
                    )
                    continue
                if deps is not None:
                    deps.add(target)
                if len(ref.path) < 2:
                    continue
                attr = ref.path[1]
                if attr not in schemas.NODE_ATTRS:
                    self.error(
                        path,
                        "unknown-field",
                        f"nodes.{target} has no attribute {attr!r}",
                        hint=did_you_mean(str(attr), schemas.NODE_ATTRS)
                        or "use nodes.<id>.output, nodes.<id>.status or nodes.<id>.error",
                        **at,
                    )
                    continue
                if attr == "output":
                    self._check_schema_path(
                        self.output_schema(target), ref.path[2:], f"nodes.{target}.output", path, at
                    )
            elif locals_schema is not None and ref.root in locals_schema:
                self._check_schema_path(locals_schema[ref.root], ref.path, ref.root, path, at)

    def _check_schema_path(
        self,
        schema: Any,
        fields: tuple[str | int, ...],
        label: str,
        path: PathKey,
        at: dict[str, Any],
    ) -> None:
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
        self.error(path, "unknown-field", f"{prefix} has no {what} in its schema", hint=hint, **at)

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
        cache = self._out_cache
        if node_id not in cache:
            cache[node_id] = self._output_schema(self.spec.nodes[node_id], inner=False)
        return cache[node_id]

    def _output_schema(self, node: Any, *, inner: bool) -> Any:
        if isinstance(node, LLMNode):
            return node.output if node.output is not None else {"type": "string"}
        if isinstance(node, ToolNode):
            return self.tool_result_schema(node.tool)
        if isinstance(node, GateNode):
            return schemas.GATE_OUTPUT
        if isinstance(node, SwitchNode):
            return schemas.SWITCH_OUTPUT
        if isinstance(node, MapNode):
            inner_schema = self._output_schema(node.map.node, inner=True)
            return {
                "type": "array",
                "items": compose.map_item_schema(inner_schema, compose.is_collect(node)),
            }
        if isinstance(node, FlowNode | LoopNode):
            return compose.output_schema(self, node)
        if isinstance(node, ApprovalNode):
            return schemas.approval_output(node.approval.decision)
        return None

    # -- tools -------------------------------------------------------------------------------
    def _effect(self, name: str) -> str:
        """A tool's effect as it will run: an MCP tool's comes from its lock unless the spec
        set it (tool_impl resolved it, or found it broken: then the spec's word)."""
        resolved = self._tool_cache.get(name)
        fn = resolved[0] if resolved is not None else None
        contract = getattr(fn, "contract", None)
        return str(getattr(contract, "effect", self.spec.tools[name].effect))

    def tool_impl(self, name: str) -> tuple[Any, dict[str, Any], dict[str, Any] | None] | None:
        """(callable, args schema, result schema) for a tool contract, or None if it is broken."""
        cache = self._tool_cache
        if name in cache:
            return cache[name]
        contract = self.spec.tools[name]
        result: tuple[Any, dict[str, Any], dict[str, Any] | None] | None = None
        if contract.mcp is not None:  # an MCP server's tool, resolved from the lock
            from runner.mcp.contracts import resolve as resolve_mcp

            cache[name] = resolve_mcp(self, name)
            return cache[name]
        assert contract.impl is not None
        try:
            fn = import_callable(contract.impl, self.loaded.directory)
        except ImplError as e:
            self.error(
                ("tools", name, "impl"),
                "unknown-impl",
                f"tool {name!r}: {e}",
                hint="impl is module:function, importable from the spec's folder or project root",
            )
        else:
            ok = True
            if contract.args is not None:
                ok = self.check_schema(contract.args, ("tools", name, "args"))
            if contract.result is not None:
                ok = self.check_schema(contract.result, ("tools", name, "result")) and ok
            if ok:
                args_schema = contract.args if contract.args is not None else derive_args_schema(fn)
                res = contract.result if contract.result is not None else derive_result_schema(fn)
                result = (fn, args_schema, res)
        if contract.compensate:
            try:
                import_callable(contract.compensate, self.loaded.directory)
            except ImplError as e:
                self.error(
                    ("tools", name, "compensate"), "unknown-impl", f"tool {name!r} compensate: {e}"
                )
        cache[name] = result
        return result

    def tool_result_schema(self, name: str) -> Any:
        if name not in self.spec.tools:
            return None
        impl = self.tool_impl(name)
        return impl[2] if impl else None

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
        kind = node_kind(node)
        for i, need in enumerate(node.needs):
            if need == node_id:
                self.error((*path, "needs", i), "self-reference", f"node {node_id!r} needs itself")
            elif need not in self.spec.nodes:
                self.error(
                    (*path, "needs", i),
                    "unknown-node",
                    f"node {need!r} is not defined",
                    hint=did_you_mean(need, self.node_ids),
                )
            else:
                deps.add(need)
        when = None
        if node.when is not None:
            when = self.cel(node.when, (*path, "when"))
            if when is not None:
                self.check_refs(
                    expr_refs(node.when, when),
                    (*path, "when"),
                    roots,
                    node_id=node_id,
                    deps=deps,
                    locals_schema=locals_schema,
                )
        common: dict[str, Any] = dict(
            id=node_id,
            kind=kind,
            spec=node,
            when=when,
            join=node.join,
            retry=node.retry or NO_RETRY,
            timeout=node.timeout,
        )
        ok = True
        if isinstance(node, LLMNode):
            llm = self._llm(node_id, node, path, routes, roots, locals_schema, deps)
            ok = llm is not None
            common["llm"] = llm
            common["output_schema"] = node.output
        elif isinstance(node, ToolNode):
            tool = self._tool(node_id, node, path, roots, locals_schema, deps)
            ok = tool is not None
            common["tool"] = tool
            common["output_schema"] = tool.result_schema if tool else None
            if tool and node.retry is None and tool.contract.retry is not None:
                common["retry"] = tool.contract.retry
            if tool and node.timeout is None:
                common["timeout"] = tool.contract.timeout
        elif isinstance(node, GateNode):
            checks: list[tuple[CompiledExpr, str]] = []
            for i, c in enumerate(node.gate):
                expr = self.cel(c.check, (*path, "gate", i, "check"))
                if expr is None:
                    ok = False
                    continue
                self.check_refs(
                    expr_refs(c.check, expr),
                    (*path, "gate", i, "check"),
                    roots,
                    node_id=node_id,
                    deps=deps,
                    locals_schema=locals_schema,
                )
                checks.append((expr, c.message))
            common["gate"] = GateStep(checks=tuple(checks), on_fail=node.on_fail)
            common["output_schema"] = schemas.GATE_OUTPUT
        elif isinstance(node, SwitchNode):
            cases: list[tuple[CompiledExpr, tuple[str, ...]]] = []
            for i, case in enumerate(node.switch.cases):
                expr = self.cel(case.when, (*path, "switch", "cases", i, "when"))
                if expr is None:
                    ok = False
                    continue
                self.check_refs(
                    expr_refs(case.when, expr),
                    (*path, "switch", "cases", i, "when"),
                    roots,
                    node_id=node_id,
                    deps=deps,
                    locals_schema=locals_schema,
                )
                self._targets(node_id, case.then, (*path, "switch", "cases", i, "then"))
                cases.append((expr, tuple(case.then)))
            self._targets(node_id, node.switch.default, (*path, "switch", "default"))
            common["switch"] = SwitchStep(cases=tuple(cases), default=tuple(node.switch.default))
            common["output_schema"] = schemas.SWITCH_OUTPUT
        elif isinstance(node, MapNode):
            m = self._map(node_id, node, path, routes, roots, deps)
            ok = m is not None
            common["map"] = m
            common["output_schema"] = {
                "type": "array",
                "items": compose.map_item_schema(
                    m.inner.output_schema if m else None, compose.is_collect(node)
                ),
            }
        elif isinstance(node, FlowNode):
            fs = compose.compile_flow(self, node_id, node, path, roots, locals_schema, deps)
            ok = fs is not None
            common["flow"] = fs
            common["output_schema"] = compose.flow_output_schema(fs.plan) if fs else None
        elif isinstance(node, LoopNode):
            ls = compose.compile_loop(self, node_id, node, path, routes, roots, locals_schema, deps)
            ok = ls is not None
            common["loop"] = ls
            common["output_schema"] = compose.output_schema(self, node) if ls else None
        elif isinstance(node, ApprovalNode):
            a = self._approval(node_id, node, path, roots, locals_schema, deps)
            ok = a is not None
            common["approval"] = a
            common["output_schema"] = schemas.approval_output(node.approval.decision)
        if not ok:
            return None
        return PlanNode(deps=(), switches=(), **common)

    def _approval(
        self,
        node_id: str,
        node: ApprovalNode,
        path: PathKey,
        roots: frozenset[str],
        locals_schema: Mapping[str, Any] | None,
        deps: set[str],
    ) -> ApprovalStep | None:
        spec = node.approval
        ok = True
        when = None
        if spec.when is not None:
            when = self.cel(spec.when, (*path, "approval", "when"))
            if when is None:
                ok = False
            else:
                self.check_refs(
                    expr_refs(spec.when, when),
                    (*path, "approval", "when"),
                    roots,
                    node_id=node_id,
                    deps=deps,
                    locals_schema=locals_schema,
                )
        summary = None
        if spec.summary is not None:
            summary = self.template(spec.summary, (*path, "approval", "summary"))
            if summary is None:
                ok = False
            else:
                self.check_refs(
                    template_refs(spec.summary),
                    (*path, "approval", "summary"),
                    roots,
                    node_id=node_id,
                    deps=deps,
                    template=spec.summary,
                    locals_schema=locals_schema,
                )
        if spec.decision is not None and not self.check_schema(
            spec.decision, (*path, "approval", "decision")
        ):
            ok = False
        if not ok:
            return None
        return ApprovalStep(
            when=when,
            summary=summary,
            assignees=tuple(spec.assignees),
            timeout=spec.timeout,
            on_timeout=spec.on_timeout,
            decision_schema=spec.decision,
        )

    def _targets(self, switch_id: str, targets: list[str], path: PathKey) -> None:
        for i, t in enumerate(targets):
            if t == switch_id:
                self.error(
                    (*path, i), "self-reference", f"switch {switch_id!r} lists itself as a branch"
                )
            elif t not in self.spec.nodes:
                self.error(
                    (*path, i),
                    "unknown-node",
                    f"node {t!r} is not defined",
                    hint=did_you_mean(t, self.node_ids),
                )

    def _llm(
        self,
        node_id: str,
        node: LLMNode,
        path: PathKey,
        routes: Mapping[str, Route],
        roots: frozenset[str],
        locals_schema: Mapping[str, Any] | None,
        deps: set[str],
    ) -> LLMStep | None:
        ok = True
        route = routes.get(node.llm)
        if route is None:
            self.error(
                (*path, "llm"),
                "unknown-model",
                f"model alias {node.llm!r} is not defined",
                hint=did_you_mean(node.llm, routes) or "define it under `models`",
            )
            ok = False
        if node.output is not None and not self.check_schema(
            node.output, (*path, "output"), llm_output=True
        ):
            ok = False
        prompt: PromptTemplate | None = None
        if node.prompt is not None and node.prompt_file is not None:
            self.error(
                (*path, "prompt_file"),
                "invalid-value",
                "give either `prompt` or `prompt_file`, not both",
                key=True,
            )
            ok = False
        elif node.prompt is not None:
            prompt = self.template(node.prompt, (*path, "prompt"))
            if prompt is not None:
                self.check_refs(
                    template_refs(node.prompt),
                    (*path, "prompt"),
                    roots,
                    node_id=node_id,
                    deps=deps,
                    template=node.prompt,
                    locals_schema=locals_schema,
                )
        elif node.prompt_file is not None:
            try:
                text = self.files.read(file_key(self.base, node.prompt_file))
            except (OSError, UnicodeDecodeError) as e:
                reason = e.strerror if isinstance(e, OSError) else "not UTF-8"
                self.error(
                    (*path, "prompt_file"),
                    "file-not-found",
                    f"cannot read prompt file {node.prompt_file!r}: {reason}",
                )
                ok = False
            else:
                shown = str(Path(self.src.path).parent / node.prompt_file)
                prompt = self.template(text, (*path, "prompt_file"), file=shown)
                if prompt is not None:
                    self.check_refs(
                        template_refs(text),
                        (*path, "prompt_file"),
                        roots,
                        node_id=node_id,
                        deps=deps,
                        template=text,
                        file=shown,
                        locals_schema=locals_schema,
                    )
        else:
            self.error(
                path, "missing-key", f"LLM node {node_id!r} needs a `prompt` or `prompt_file`"
            )
            ok = False
        system = None
        if node.system is not None:
            system = self.template(node.system, (*path, "system"))
            if system is not None:
                self.check_refs(
                    template_refs(node.system),
                    (*path, "system"),
                    roots,
                    node_id=node_id,
                    deps=deps,
                    template=node.system,
                    locals_schema=locals_schema,
                )
        if (
            not ok
            or prompt is None
            or route is None
            or (node.system is not None and system is None)
        ):
            return None
        max_tokens = node.max_tokens or route.config.max_tokens or DEFAULT_MAX_TOKENS
        return LLMStep(
            alias=node.llm,
            route=route,
            prompt=prompt,
            system=system,
            output_schema=node.output,
            max_tokens=max_tokens,
            temperature=node.temperature
            if node.temperature is not None
            else route.config.temperature,
            max_attempts=node.max_attempts,
        )

    def _tool(
        self,
        node_id: str,
        node: ToolNode,
        path: PathKey,
        roots: frozenset[str],
        locals_schema: Mapping[str, Any] | None,
        deps: set[str],
    ) -> ToolStep | None:
        if node.tool not in self.spec.tools:
            self.error(
                (*path, "tool"),
                "unknown-tool",
                f"tool {node.tool!r} is not defined",
                hint=did_you_mean(node.tool, self.spec.tools)
                or "declare its contract under `tools`",
            )
            return None
        contract = self.spec.tools[node.tool]
        args = self.bound_value(
            node.args,
            (*path, "args"),
            roots,
            node_id=node_id,
            deps=deps,
            locals_schema=locals_schema,
        )
        impl = self.tool_impl(node.tool)
        key = None
        if contract.idempotency_key is not None:
            key = self.value(contract.idempotency_key, ("tools", node.tool, "idempotency_key"))
            if key is not None:
                self.check_refs(
                    [r for _, r in path_refs(key)],
                    ("tools", node.tool, "idempotency_key"),
                    frozenset({"args", "inputs"}),
                    node_id=None,
                    deps=None,
                )
        preview_fn = None
        if contract.preview is not None:
            try:
                preview_fn = import_callable(contract.preview, self.loaded.directory)
            except ImplError as e:
                self.error(
                    ("tools", node.tool, "preview"),
                    "unknown-impl",
                    f"tool {node.tool!r} preview: {e}",
                )
                return None
        destination = None
        if contract.destination is not None:
            destination = self.value(contract.destination, ("tools", node.tool, "destination"))
            if destination is None:
                return None
            self.check_refs(
                [r for _, r in path_refs(destination)],
                ("tools", node.tool, "destination"),
                frozenset({"args", "inputs"}),
                node_id=None,
                deps=None,
            )
        if impl is None or args is None:
            return None
        fn, args_schema, result_schema = impl
        contract = getattr(fn, "contract", contract)  # an MCP tool's contract, from the lock
        self._check_static_args(node, args_schema, path)
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

    def _check_static_args(self, node: ToolNode, schema: dict[str, Any], path: PathKey) -> None:
        props = schema.get("properties")
        if isinstance(props, dict) and schema.get("additionalProperties") is False:
            for name in node.args:
                if name not in props:
                    self.error(
                        (*path, "args", name),
                        "unknown-arg",
                        f"tool {node.tool!r} takes no argument {name!r}",
                        hint=did_you_mean(name, props)
                        or f"arguments: {', '.join(sorted(props)) or '(none)'}",
                        key=True,
                    )
        for name in schema.get("required", []) or []:
            if name not in node.args:
                self.error(
                    (*path, "args"),
                    "missing-arg",
                    f"tool {node.tool!r} needs argument {name!r}",
                    key=True,
                )
        if isinstance(props, dict):
            for name, value in node.args.items():
                sub = props.get(name)
                if not isinstance(sub, dict) or _has_binding(value):
                    continue
                if "$defs" in schema:  # a parameter's `$ref`s point at the arguments' root
                    sub = {**sub, "$defs": schema["$defs"]}
                errs = schemas.validation_errors(sub, value, limit=1)
                if errs:
                    self.error(
                        (*path, "args", name),
                        "invalid-arg",
                        f"argument {name!r}: {errs[0].split(': ', 1)[-1]}",
                    )

    def _map(
        self,
        node_id: str,
        node: MapNode,
        path: PathKey,
        routes: Mapping[str, Route],
        roots: frozenset[str],
        deps: set[str],
    ) -> MapStep | None:
        spec = node.map
        over = self.bound_value(
            spec.over, (*path, "map", "over"), roots, node_id=node_id, deps=deps
        )
        item_schema: Any = {}
        if over is not None:
            item_schema = self._check_map_over(over, spec.over, (*path, "map", "over"))
        inner_roots = roots | {spec.as_, "index"}
        locals_schema = {spec.as_: item_schema, "index": {"type": "integer"}}
        inner = self.compile_node(
            node_id,
            spec.node,
            (*path, "map", "node"),
            routes,
            roots=inner_roots,
            locals_schema=locals_schema,
            deps=deps,
        )
        if over is None or inner is None:
            return None
        return MapStep(
            over=over,
            as_=spec.as_,
            max_items=spec.max_items,
            max_concurrency=spec.max_concurrency,
            inner=inner,
        )

    def _check_map_over(self, over: CompiledValue, raw: str, path: PathKey) -> Any:
        """Fail `map` over a value whose schema says it is not an array; return the item schema."""
        if over.is_static:
            value = over.evaluate({})
            if not isinstance(value, list):
                what = "a string" if isinstance(value, str) else f"a {type(value).__name__}"
                self.error(
                    path,
                    "map-not-array",
                    f"map over {what} ({value!r}); `over` must be a list or a binding to one",
                    hint='e.g. over: "${{ nodes.search.output }}" or over: [a, b, c]',
                )
            return {}
        refs = list(over.refs)
        whole = raw.strip().startswith("${{") and raw.strip().endswith("}}")
        if len(over.sites) != 1 or not whole or len(refs) != 1:
            return {}
        ref = refs[0]
        site = over.sites[0]
        if site.source.strip() != _ref_text(ref):
            return {}
        if ref.root == "inputs":
            schema: Any = self.spec.inputs
            fields = ref.path
            label = "inputs"
        elif (
            ref.root == "nodes"
            and len(ref.path) >= 2
            and ref.path[0] in self.spec.nodes
            and ref.path[1] == "output"
        ):
            schema = self.output_schema(str(ref.path[0]))
            fields = ref.path[2:]
            label = f"nodes.{ref.path[0]}.output"
        else:
            return {}
        bad, sub = schemas.walk(schema, fields)
        if bad is not None:
            return {}
        is_array = schemas.is_array_schema(sub)
        if is_array is False:
            self.error(
                path,
                "map-not-array",
                f"map over {_ref_text(ref)}, whose schema type is {sub.get('type')!r},"
                " not an array",
                hint=f"point `over` at a list inside {label}",
                offset=site.offset,
            )
            return {}
        items = sub.get("items") if isinstance(sub, dict) else None
        return items if isinstance(items, dict) else {}

    # -- whole spec --------------------------------------------------------------------------
    def compile(self) -> Plan:
        spec = self.spec
        self.check_profiles()
        self.check_schema(spec.inputs, ("inputs",))
        routes = self.resolve_routes(self.profile if self.profile in spec.profiles else None)
        nodes: dict[str, PlanNode] = {}
        deps_of: dict[str, set[str]] = {}
        for node_id, node in spec.nodes.items():
            deps: set[str] = set()
            pn = self.compile_node(
                node_id,
                node,
                ("nodes", node_id),
                routes,
                roots=NODE_ROOTS,
                locals_schema=None,
                deps=deps,
            )
            deps_of[node_id] = deps
            if pn is not None:
                nodes[node_id] = pn
        switches_of: dict[str, list[str]] = {}
        for node_id, pn in nodes.items():
            if pn.switch is not None:
                for t in sorted(pn.switch.targets, key=lambda n: self.order_index.get(n, 0)):
                    if t in spec.nodes:
                        switches_of.setdefault(t, []).append(node_id)
                        deps_of[t].add(node_id)
        outputs: dict[str, CompiledValue] = {}
        for name, binding in spec.outputs.items():
            cv = self.bound_value(binding, ("outputs", name), NODE_ROOTS, node_id=None, deps=None)
            if cv is not None:
                outputs[name] = cv
        graph: nx.DiGraph = nx.DiGraph()
        graph.add_nodes_from(self.node_ids)
        for node_id in self.node_ids:
            for d in sorted(deps_of.get(node_id, ()), key=lambda n: self.order_index.get(n, 0)):
                if d in spec.nodes:
                    graph.add_edge(d, node_id)
        self.diags.extend(graph_rules(self, graph, nodes, switches_of))
        nodes = with_taint(nodes, graph, self.order_index)
        policy = self.compile_policies()
        # every compiled step is useful only if the whole spec compiled
        errors = errors_only(self.diags)
        if errors:
            raise SpecError(errors)
        order = tuple(nx.lexicographical_topological_sort(graph, key=lambda n: self.order_index[n]))
        final: dict[str, PlanNode] = {}
        for node_id in order:
            pn = nodes[node_id]
            deps_sorted = tuple(sorted(deps_of[node_id], key=lambda n: self.order_index[n]))
            if pn.map is not None:  # each item reads the nodes its map node needs
                inner = _replace(pn.map.inner, deps=deps_sorted)
                pn = _replace(pn, map=dc_replace(pn.map, inner=inner))
            final[node_id] = _replace(
                pn, deps=deps_sorted, switches=tuple(switches_of.get(node_id, ()))
            )
        dependants = {
            n: tuple(sorted(graph.successors(n), key=lambda x: self.order_index[x])) for n in order
        }
        cost = estimate_cost(final)
        warnings = [d for d in self.diags if d.severity != "error"]
        for model in cost.unpriced_models:
            warnings.append(
                self.src.diag(
                    self.model_path(model),
                    "no-price",
                    f"litellm's price map has no price for {model!r}; its cost counts as $0",
                    hint="check the model id, or use a `local/` model (free) if it runs here",
                    severity="warning",
                )
            )
        return Plan(
            loaded=self.loaded,
            profile=self.profile,
            nodes=final,
            order=order,
            graph=graph,
            outputs=outputs,
            routes=routes,
            budget=spec.budget,
            inputs_schema=spec.inputs,
            cost=cost,
            warnings=tuple(sorted(warnings)),
            dependants=dependants,
            policy=policy,
        )

    def compile_policies(self) -> PolicySet:
        """Policy rules (CEL over the request) and Cedar files, checked before any call."""
        spec = self.spec
        rules: list[Rule] = []
        seen: dict[str, int] = {}
        for i, p in enumerate(spec.policies):
            path: PathKey = ("policies", i)
            if p.id in seen:
                self.error(
                    (*path, "id"),
                    "duplicate-policy-id",
                    f"policy id {p.id!r} is used twice (first at policies[{seen[p.id]}])",
                    hint="decisions are recorded by id: give every rule its own",
                )
            seen.setdefault(p.id, i)
            when = self.cel(p.when, (*path, "when"))
            if when is None:
                continue
            self.check_refs(
                expr_refs(p.when, when), (*path, "when"), REQUEST_FIELDS, node_id=None, deps=None
            )
            rules.append(Rule(id=p.id, when=when, effect=p.effect, reason=p.reason))
        cedar = None
        if spec.policy_files:
            texts = []
            for i, name in enumerate(spec.policy_files):
                try:
                    text = self.files.read(file_key(self.base, name))
                except (OSError, UnicodeDecodeError) as e:
                    why = e.strerror if isinstance(e, OSError) else "not UTF-8"
                    self.error(
                        ("policy_files", i),
                        "file-not-found",
                        f"cannot read policy file {name!r}: {why}",
                    )
                    continue
                try:
                    CedarPolicies.parse(text)
                except ValueError as e:
                    self.error(("policy_files", i), "cedar-syntax", f"{name}: {e}")
                    continue
                texts.append(text)
            if texts:
                cedar = CedarPolicies.parse("\n".join(texts))
        writes = [n for n in spec.tools if self._effect(n) == "write"]
        allows = any(p.effect == "allow" for p in spec.policies) or bool(spec.policy_files)
        if writes and spec.policy_default.write == "deny" and not allows:
            self.warn(
                ("tools", writes[0]),
                "write-never-allowed",
                f"no policy allows write tool {writes[0]!r}, and writes are denied by default",
                hint="add a rule with `effect: allow` for it, or set policy_default.write: allow",
                key=True,
            )
        errors = errors_only(self.diags)
        if errors:
            raise SpecError(errors)
        return PolicySet(rules=tuple(rules), default=spec.policy_default, cedar=cedar)


def expr_refs(raw: str, expr: CompiledExpr) -> list[Ref]:
    """References of a condition with offsets into the YAML string it was written in."""
    base = max(raw.find(expr.source), 0)
    return [dc_replace(r, offset=base + r.offset) for r in cel_refs(expr.source)]


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _template_offset(template: str, ref: Ref) -> int:
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


def _has_binding(value: Any) -> bool:
    if isinstance(value, str):
        return "${{" in value
    if isinstance(value, dict):
        return any(_has_binding(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_binding(v) for v in value)
    return False


def _ref_text(ref: Ref) -> str:
    out = ref.root
    for p in ref.path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _replace(pn: PlanNode, **changes: Any) -> PlanNode:
    return dc_replace(pn, **changes)


def compile_plan(loaded: LoadedSpec, profile: str | None = None) -> Plan:
    """Compile a loaded spec for one profile; raises SpecError listing every problem.

    The files it names are read from disk; the plan carries them as its bundle."""
    sources = DiskSources.for_spec(loaded.source.path, loaded.source.text)
    plan = Compiler(loaded, profile, sources=sources).compile()
    return dc_replace(plan, bundle=sources.bundle())


def compile_bundle(bundle: Bundle, path: str, profile: str | None = None) -> Plan:
    """Compile a run's own bundle, never the files on disk; `path` names the entry spec."""
    from runner.spec import load_spec_text

    loaded = load_spec_text(bundle.entry_text, path)
    plan = Compiler(loaded, profile, sources=BundleSources(bundle)).compile()
    return dc_replace(plan, bundle=bundle)


def spec_digest(loaded: LoadedSpec) -> str:
    import hashlib

    return hashlib.sha256(loaded.source.text.encode()).hexdigest()


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
