"""Static provenance: which node outputs carry untrusted data, through what, and where it lands.

Sources: results of tools whose contract says `trust: untrusted`, and, in a subflow, the
inputs its parent binds from untrusted data. Taint then follows the data: an LLM node whose
prompt reads tainted output, a tool any of whose arguments is bound from tainted data (a tool
launders nothing unless its contract declares `sanitizer: <reason>`), every item of a map over a
tainted list, a loop body node across iterations (`previous.<id>`), and a subflow's outputs
when what they are computed from is tainted in the child. Gates, switches and approvals produce
trusted values. Control flow (`when`, switch cases) does not taint: see docs/security.md.

Each tainted value carries its chain: the nodes it passed through from its source, labelled
`node` at the top level, `loop.node` in a loop body and `flow:node` in a subflow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from runner.expr.refs import ANY_INDEX, Ref
from runner.expr.templates import PromptTemplate, template_refs
from runner.plan.clearing import classify, covers, overlaps
from runner.plan.digraph import DiGraph, is_dag, topological_sort
from runner.plan.gating import guards
from runner.plan.model import FlowStep, LLMStep, PlanNode, ToolStep

Chain = tuple[str, ...]


@dataclass(frozen=True)
class Sources:
    """What is untrusted in one scope, each name with the chain it came through."""

    nodes: Mapping[str, Chain] = field(default_factory=dict)
    inputs: Mapping[str, Chain] = field(default_factory=dict)
    locals: Mapping[str, Chain] = field(default_factory=dict)  # map items (`item`, `as:`)
    previous: Mapping[str, Chain] = field(default_factory=dict)  # a loop body's last pass
    # subflow inputs the parent checked before binding them: input name -> by what
    cleared: Mapping[str, str] = field(default_factory=dict)


def ref_chain(ref: Ref, src: Sources) -> Chain | None:
    """The chain of a reference when it reads untrusted data, else None."""
    head = ref.path[0] if ref.path else None
    if ref.root in src.locals:  # a map's `as:` name hides whatever else it names
        return src.locals[ref.root]
    if ref.root == "nodes":
        return src.nodes.get(head) if isinstance(head, str) else None
    if ref.root == "inputs":
        if head is None:
            return next(iter(src.inputs.values()), None)
        return src.inputs.get(head) if isinstance(head, str) else None
    if ref.root == "previous":
        return src.previous.get(head) if isinstance(head, str) else None
    return src.locals.get(ref.root)


def hits(refs: Iterable[Ref], src: Sources) -> list[tuple[Ref, Chain]]:
    out = []
    for r in refs:
        c = ref_chain(r, src)
        if c is not None:
            out.append((r, c))
    return out


Guard = tuple[str, PlanNode]  # label, node


class _Lazy:
    """Guards worked out on first use: most nodes of a big spec read no untrusted data, and
    the guard sets of a long chain are large."""

    __slots__ = ("_f", "_v")

    def __init__(self, f: Callable[[], tuple[Guard, ...]]) -> None:
        self._f = f
        self._v: tuple[Guard, ...] | None = None

    def get(self) -> tuple[Guard, ...]:
        if self._v is None:
            self._v = self._f()
        return self._v

    def __iter__(self) -> Iterator[Guard]:
        return iter(self.get())

    def __bool__(self) -> bool:
        return bool(self.get())


def _guards_of(
    graph: DiGraph[str], nodes: Mapping[str, PlanNode], prefix: str, outer: Iterable[Guard]
) -> Callable[[str], _Lazy]:
    """For each node of a scope, its guards (the outer ones first), computed when asked."""
    table: dict[str, frozenset[str]] | None = None

    def own(n: str) -> tuple[Guard, ...]:
        nonlocal table
        if table is None:
            table = guards(graph, nodes)
        mine = tuple((prefix + x, nodes[x]) for x in sorted(table.get(n, ())) if x in nodes)
        return (*outer, *mine)

    return lambda n: _Lazy(lambda: own(n))


def _open(
    refs: Iterable[Ref], src: Sources, guard_nodes: Iterable[Guard], pn: PlanNode
) -> Chain | None:
    """The chain of the first untrusted value among `refs` that no guard before `pn` clears:
    a value pinned to trusted data by a gate is trusted from there on, for every node after."""
    for r in refs:
        c = ref_chain(r, src)
        if c is not None and clearer(_item_ref(pn, r), guard_nodes, src)[0] is None:
            return c
    return None


def _template_refs(step: LLMStep) -> list[Ref]:
    refs = list(template_refs(step.prompt.source))
    if step.system is not None:
        refs += template_refs(step.system.source)
    return refs


def _with_item(
    pn: PlanNode, src: Sources, guard_nodes: Iterable[Guard]
) -> tuple[PlanNode, Sources]:
    """A map's inner node and the scope it runs in (the item is untrusted when `over` is)."""
    if pn.map is None:
        return pn, src
    item = _open(pn.map.over.refs, src, guard_nodes, pn)
    if item is None:
        return pn.map.inner, src
    return pn.map.inner, replace(src, locals={**src.locals, pn.map.as_: item})


def node_taint(
    pn: PlanNode, src: Sources, label: str, guard_nodes: Iterable[Guard] = ()
) -> Chain | None:
    """The chain of a node's output when it carries untrusted data.

    A tool's result is untrusted when the contract says so or when any argument is (a tool
    launders nothing unless it states `sanitizer:`); in a map, the item is one of the values
    the inner node reads, whatever its kind.
    """
    if pn.kind in ("gate", "switch", "approval"):
        return None
    inner, isrc = _with_item(pn, src, guard_nodes)
    refs: Iterable[Ref] = ()
    if inner.tool is not None:
        if inner.tool.contract.trust == "untrusted":
            return (label,)
        refs = () if sanitizes(inner.tool) else inner.tool.args.refs
    elif inner.llm is not None:
        refs = _template_refs(inner.llm)
    elif inner.flow is not None:
        child = flow_sources(inner.flow, isrc, guard_nodes, pn)
        cp = inner.flow.plan
        inside = replace(child, nodes=scope_taint(cp.nodes, cp.graph, child, f"{label}:"))
        for cv in cp.outputs.values():
            c = _open(cv.refs, inside, (), inner)
            if c is not None:
                return (*c, label)
        return None
    elif inner.loop is not None:
        body = loop_taint(inner, isrc, label, guard_nodes)
        for bid in inner.loop.body.order:
            if bid in body:
                return (*body[bid], label)
        return None
    c = _open(refs, isrc, guard_nodes, pn)
    return None if c is None else (*c, label)


def sanitizes(step: ToolStep) -> bool:
    """The contract states why the tool's result is trusted: a blank reason states nothing."""
    return bool((step.contract.sanitizer or "").strip())


def flow_sources(
    flow: FlowStep, src: Sources, guard_nodes: Iterable[Guard] = (), pn: PlanNode | None = None
) -> Sources:
    """A subflow's scope: each input the parent binds from untrusted data is a source, marked
    as checked (with what checked it) when the parent's guards clear every value it reads."""
    inputs: dict[str, Chain] = {}
    cleared: dict[str, str] = {}
    open_: set[str] = set()  # inputs with a value no guard clears, in any of their sites
    for site in flow.inputs.sites:
        if not site.path:
            continue
        name = str(site.path[0])
        found = hits(site.refs, src)
        if not found:
            continue
        by = [clearer(r if pn is None else _item_ref(pn, r), guard_nodes, src)[0] for r, _ in found]
        if all(by):
            inputs.setdefault(name, found[0][1])
            cleared.setdefault(name, str(by[0]))
        else:  # `{a: <cleared>, b: <not>}`: the input is open, its chain the open value's
            if name not in open_:
                inputs[name] = found[by.index(None)][1]
            open_.add(name)
    return Sources(inputs=inputs, cleared={k: v for k, v in cleared.items() if k not in open_})


def scope_taint(
    nodes: Mapping[str, PlanNode],
    graph: DiGraph[str],
    src: Sources,
    prefix: str = "",
    outer_guards: Iterable[Guard] = (),
) -> dict[str, Chain]:
    """Every tainted node of one scope (and the outer ones it sees), with its chain."""
    out: dict[str, Chain] = dict(src.nodes)
    if not is_dag(graph):
        return out
    guards_of = _guards_of(graph, nodes, prefix, outer_guards)
    for n in topological_sort(graph):
        pn = nodes.get(n)
        if pn is None:
            continue
        c = node_taint(pn, replace(src, nodes=out), prefix + n, guards_of(n))
        if c is not None:
            out[n] = c
    return out


def loop_taint(
    pn: PlanNode, src: Sources, label: str, guard_nodes: Iterable[Guard] = ()
) -> dict[str, Chain]:
    """Body nodes tainted in some pass: what a pass reads of the last one (`previous.<id>`)
    carries its taint, so the body is walked until nothing new is tainted."""
    assert pn.loop is not None
    body = pn.loop.body
    previous: dict[str, Chain] = {}
    for _ in range(len(body.nodes) + 1):
        t = scope_taint(
            body.nodes, body.graph, replace(src, previous=previous), f"{label}.", guard_nodes
        )
        now = {b: t[b] for b in body.nodes if b in t}
        if now.keys() == previous.keys():
            return now
        previous = now
    return previous


def tainted_nodes(
    graph: DiGraph[str], nodes: Mapping[str, PlanNode], outer: Iterable[str] = ()
) -> set[str]:
    """Nodes whose output carries untrusted data (`outer`: tainted nodes around a loop body)."""
    src = Sources(nodes={n: (n,) for n in outer})
    return set(scope_taint(nodes, graph, src))


def write_step(pn: PlanNode) -> ToolStep | None:
    """The write tool a node calls (directly or per map item), if any."""
    step = tool_step(pn)
    if step is not None and step.contract.effect == "write":
        return step
    return None


def tool_step(pn: PlanNode) -> ToolStep | None:
    return pn.tool if pn.tool is not None else (pn.map.inner.tool if pn.map is not None else None)


def _item_ref(pn: PlanNode, ref: Ref) -> Ref:
    """`item.to` in a map over exactly `L` is `L[*].to`, which a gate before the map can check."""
    if pn.map is None or ref.root != pn.map.as_:
        return ref
    over = pn.map.over
    refs = list(over.refs)
    if len(over.sites) != 1 or len(refs) != 1:
        return ref
    lst = refs[0]
    text = lst.root + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in lst.path)
    if over.sites[0].source.strip() != text:
        return ref
    return Ref(lst.root, (*lst.path, ANY_INDEX, *ref.path), ref.offset)


def tainted_args(pn: PlanNode, src: Sources) -> dict[str, list[tuple[Ref, Chain]]]:
    """For a tool node: each argument bound from untrusted data, with its refs and chains."""
    step = tool_step(pn)
    if step is None:
        return {}
    _, isrc = _with_item(pn, src, ())
    out: dict[str, list[tuple[Ref, Chain]]] = {}
    for site in step.args.sites:
        if site.path:
            found = [(_item_ref(pn, r), c) for r, c in hits(site.refs, isrc)]
            if found:
                out.setdefault(str(site.path[0]), []).extend(found)
    return out


# -- checks: which guard clears a tainted value ------------------------------------------------


@dataclass(frozen=True)
class TaintPath:
    """One untrusted value reaching one write argument, and what (if anything) checks it."""

    chain: Chain  # source … write argument, e.g. ("fetch", "summarize", "child:pay.args.to")
    ref: Ref  # what the argument is bound from, in the write's own scope
    write: str  # the write node's label
    arg: str
    where: tuple[Any, ...]  # the spec path to report at (in the top-level file)
    checked_by: str | None
    weak: tuple[str, ...] = ()  # checks that mention the value without clearing it


def clearer(ref: Ref, guard_nodes: Iterable[Guard], src: Sources) -> tuple[str | None, list[str]]:
    """What clears `ref` among the guards ("gate 'g': check; …"), and the weak checks on it."""
    weak: list[str] = []
    if ref.root == "inputs" and ref.path and str(ref.path[0]) in src.cleared:
        return src.cleared[str(ref.path[0])], weak
    for label, g in guard_nodes:
        if g.approval is not None and g.approval.when is None:
            if _shows(g.approval.summary, ref):
                return f"approval {label!r}", weak
            weak.append(f"approval {label!r}")  # asks without showing the value
    strong: list[str] = []
    for label, g in guard_nodes:
        if g.gate is None:
            continue
        for expr, _ in g.gate.checks:
            cl = classify(expr.source)
            for s in cl.strong:
                by = f"gate {label!r}: {s.text}"
                pinned = covers(s.value, ref) and all(ref_chain(t, src) is None for t in s.against)
                if pinned and by not in strong:
                    strong.append(by)
            for r, text in cl.mentions:
                if overlaps(r, ref) and f"gate {label!r}: {text}" not in weak:
                    weak.append(f"gate {label!r}: {text}")
    if strong:
        return "; ".join(strong), weak
    return None, weak


def _shows(summary: PromptTemplate | None, ref: Ref) -> bool:
    """The approval's summary prints the value (or a whole that contains it): a person who
    approves a payment to a payee they were not shown has not checked the payee."""
    return summary is not None and any(covers(r, ref) for r in template_refs(summary.source))


def taint_paths(
    nodes: Mapping[str, PlanNode],
    graph: DiGraph[str],
    order: Iterable[str],
    src: Sources,
    *,
    outer_guards: Iterable[Guard] = (),
    prefix: str = "",
    base: tuple[Any, ...] = ("nodes",),
    fixed: tuple[Any, ...] | None = None,
) -> Iterator[TaintPath]:
    """Every path from an untrusted source to a write argument in a scope and those inside it.

    Reported at `base + (node,)` in the top-level file, or at `fixed` (the flow node that
    runs a subflow: its lines are in another file). Writes with no guard at all and no
    `ungated:` statement are left to ungated-write.
    """
    taint = scope_taint(nodes, graph, src, prefix, outer_guards)
    scope = replace(src, nodes=taint)
    guards_of = _guards_of(graph, nodes, prefix, outer_guards)
    for n in order:
        pn = nodes.get(n)
        if pn is None:
            continue
        label = prefix + n
        here = fixed if fixed is not None else (*base, n)
        guard_nodes = guards_of(n)
        inner, isrc = _with_item(pn, scope, ())
        if inner.loop is not None:
            body = inner.loop.body
            previous = loop_taint(inner, isrc, label, guard_nodes)
            yield from taint_paths(
                body.nodes,
                body.graph,
                body.order,
                replace(isrc, previous=previous),
                outer_guards=guard_nodes,
                prefix=f"{label}.",
                base=(*here, "loop", "body"),
                fixed=fixed,
            )
            continue
        if inner.flow is not None:
            child = flow_sources(inner.flow, isrc, guard_nodes, pn)
            cp = inner.flow.plan
            yield from taint_paths(
                cp.nodes, cp.graph, cp.order, child, prefix=f"{label}:", fixed=here
            )
            continue
        if write_step(pn) is None:
            continue
        if not guard_nodes and not getattr(pn.spec, "ungated", None):
            continue  # reported by ungated-write
        for arg, found in sorted(tainted_args(pn, scope).items()):
            for ref, chain in found:
                by, weak = clearer(ref, guard_nodes, scope)
                yield TaintPath(
                    chain=(*chain, f"{label}.args.{arg}"),
                    ref=ref,
                    write=label,
                    arg=arg,
                    where=here,
                    checked_by=by,
                    weak=tuple(weak),
                )


def plan_taint_paths(
    nodes: Mapping[str, PlanNode], graph: DiGraph[str], order: Iterable[str]
) -> list[TaintPath]:
    return list(taint_paths(nodes, graph, order, Sources()))


def with_taint(
    nodes: Mapping[str, PlanNode], graph: DiGraph[str], order_index: Mapping[str, int]
) -> dict[str, PlanNode]:
    """The same nodes, each tool step knowing which of its arguments are tainted (policies read
    them as `tainted`), down into the subflows the parent passes untrusted data to."""
    return _retaint(nodes, graph, Sources())


def _retaint(
    nodes: Mapping[str, PlanNode], graph: DiGraph[str], src: Sources
) -> dict[str, PlanNode]:
    scope = replace(src, nodes=scope_taint(nodes, graph, src))
    out: dict[str, PlanNode] = {}
    for n, pn in nodes.items():
        args = tuple(sorted(tainted_args(pn, scope)))
        if pn.tool is not None and args:
            pn = replace(pn, tool=replace(pn.tool, tainted_args=args))
        elif pn.map is not None and pn.map.inner.tool is not None and args:
            inner = replace(pn.map.inner, tool=replace(pn.map.inner.tool, tainted_args=args))
            pn = replace(pn, map=replace(pn.map, inner=inner))
        inner_node, isrc = _with_item(pn, scope, ())
        loop = inner_node.loop
        if loop is not None:  # the body reads outer nodes and, through `previous`, earlier passes
            bsrc = replace(isrc, previous=loop_taint(inner_node, isrc, n))
            body = replace(loop.body, nodes=_retaint(loop.body.nodes, loop.body.graph, bsrc))
            step_l = replace(loop, body=body)
            if pn.map is not None:
                pn = replace(pn, map=replace(pn.map, inner=replace(pn.map.inner, loop=step_l)))
            else:
                pn = replace(pn, loop=step_l)
        flow = inner_node.flow
        if flow is not None:
            child = flow_sources(flow, isrc)
            if child.inputs:  # the child's own plan already knows its own untrusted tools
                cp = flow.plan
                step = replace(flow, plan=replace(cp, nodes=_retaint(cp.nodes, cp.graph, child)))
                if pn.map is not None:
                    pn = replace(pn, map=replace(pn.map, inner=replace(pn.map.inner, flow=step)))
                else:
                    pn = replace(pn, flow=step)
        out[n] = pn
    return out
