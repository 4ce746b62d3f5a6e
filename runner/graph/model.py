"""The drawn graph of a spec: built from a Plan, or from raw YAML when it does not compile."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.plan.model import Plan, PlanNode

# Kinds as drawn: a tool node is split by its contract's effect; `approval` is drawn when present.
DRAWN_KINDS: tuple[str, ...] = (
    "llm",
    "read",
    "write",
    "gate",
    "approval",
    "switch",
    "map",
    "flow",
    "loop",
    "unknown",
)
GUARD_KINDS = frozenset({"gate", "approval"})
_RAW_KINDS = ("llm", "tool", "gate", "approval", "switch", "map", "flow", "loop")
_NODE_REF = re.compile(r"\bnodes\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True, kw_only=True)
class GNode:
    """One node as a reviewer sees it: its kind, what it calls, and whether it writes."""

    id: str
    kind: str  # one of DRAWN_KINDS
    write: bool = False  # a write tool, or a map over one
    alias: str | None = None
    models: tuple[str, ...] = ()
    tool: str | None = None
    when: str | None = None
    join: str = "all"
    # a subflow or loop: what it runs, drawn as a nested block (mermaid `subgraph`)
    detail: str | None = None
    children: Graph | None = None


@dataclass(frozen=True, kw_only=True, order=True)
class GEdge:
    src: str
    dst: str
    label: str = ""


@dataclass(kw_only=True)
class Graph:
    """Nodes in declaration order, labelled edges, and the guards each write node must pass."""

    nodes: dict[str, GNode]
    edges: list[GEdge]
    guards: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def ungated_writes(self) -> list[str]:
        return [n for n, g in self.guards.items() if not g]

    @property
    def guarding(self) -> frozenset[str]:
        """Gates and approvals that guard at least one write."""
        out: set[str] = set()
        for g in self.guards.values():
            out |= g
        return frozenset(out)


def must_pass(
    nodes: Mapping[str, GNode], preds: Mapping[str, Iterable[str]], order: Iterable[str]
) -> dict[str, frozenset[str]]:
    """Guards every run reaching a node has passed: dominators generalised to `join: all` nodes.

    A `join: all` node runs only after all its dependencies ran, so it has passed the guards of
    any of them (union); a `join: any` node or an entry only those common to all (intersection).
    On a graph of single-dependency nodes this is exactly the dominator set of a virtual root.
    """
    out: dict[str, frozenset[str]] = {}
    for n in order:
        sets: list[frozenset[str]] = []
        for p in preds.get(n, ()):
            own = frozenset({p}) if nodes[p].kind in GUARD_KINDS else frozenset()
            sets.append(out.get(p, frozenset()) | own)
        if not sets:
            out[n] = frozenset()
        elif nodes[n].join == "any":
            out[n] = frozenset.intersection(*sets)
        else:
            out[n] = frozenset.union(*sets)
    return out


def _guards(
    nodes: Mapping[str, GNode], edges: list[GEdge], order: list[str]
) -> dict[str, frozenset[str]]:
    preds: dict[str, list[str]] = {}
    for e in edges:
        preds.setdefault(e.dst, []).append(e.src)
    passed = must_pass(nodes, preds, order)
    return {n: passed.get(n, frozenset()) for n, g in nodes.items() if g.write}


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plan_node(pn: PlanNode) -> GNode:
    kind = pn.kind
    write = False
    alias = None
    models: tuple[str, ...] = ()
    tool = None
    inner = pn.map.inner if pn.map is not None else pn
    if inner.tool is not None:
        tool = inner.tool.name
        write = inner.tool.contract.effect == "write"
        if pn.kind == "tool":
            kind = "write" if write else "read"
    if inner.llm is not None:
        alias = inner.llm.alias
        models = inner.llm.route.models
    detail = None
    children = None
    if inner.flow is not None:
        shown = getattr(inner.spec, "flow", inner.flow.path)  # as written in the spec
        detail, children = f"flow {shown}", from_plan(inner.flow.plan)
    elif inner.loop is not None:
        lp = inner.loop
        detail = f"loop ≤{lp.max_iterations} until {_short(lp.until.source, 40)}"
        children = from_plan(lp.body)
    if kind not in DRAWN_KINDS:
        kind = "approval" if kind == "approval" else "unknown"
    when = pn.when.source if pn.when is not None else None
    return GNode(
        id=pn.id,
        kind=kind,
        write=write,
        alias=alias,
        models=models,
        tool=tool,
        when=when,
        join=pn.join,
        detail=detail,
        children=children,
    )


def from_plan(plan: Plan) -> Graph:
    """The drawn graph of a compiled plan: switch edges carry their case, `when` labels edges in."""
    ids = [n for n in plan.loaded.spec.nodes if n in plan.nodes] or list(plan.nodes)  # a body
    nodes = {n: _plan_node(plan.nodes[n]) for n in ids}
    case_label: dict[tuple[str, str], str] = {}
    for pn in plan.nodes.values():
        if pn.switch is None:
            continue
        for expr, targets in pn.switch.cases:
            for t in targets:
                case_label.setdefault((pn.id, t), _short(expr.source))
        for t in pn.switch.default:
            case_label.setdefault((pn.id, t), "default")
    edges = []
    for src, dst in plan.graph.edges:
        label = case_label.get((src, dst))
        if label is None:
            w = nodes[dst].when if dst in nodes else None
            label = f"when {_short(w)}" if w else ""
        edges.append(GEdge(src=src, dst=dst, label=label))
    index = {n: i for i, n in enumerate(plan.order)}
    edges.sort(key=lambda e: (index[e.src], index[e.dst]))
    return Graph(nodes=nodes, edges=edges, guards=_guards(nodes, edges, list(plan.order)))


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def from_raw(data: Any, prompts: Mapping[str, str] | None = None) -> Graph:
    """Best-effort graph of a spec that does not compile: kinds, needs, refs, switch edges."""
    raw_nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(raw_nodes, dict):
        return Graph(nodes={}, edges=[])
    tools = data.get("tools") if isinstance(data.get("tools"), dict) else {}
    models = data.get("models") if isinstance(data.get("models"), dict) else {}
    nodes: dict[str, GNode] = {}
    deps: dict[str, dict[str, str]] = {}
    for nid, body in raw_nodes.items():
        nid = str(nid)
        body = body if isinstance(body, dict) else {}
        kinds = [k for k in _RAW_KINDS if k in body]
        kind = kinds[0] if len(kinds) == 1 else "unknown"
        inner = body
        if (
            kind == "map"
            and isinstance(body.get("map"), dict)
            and isinstance(body["map"].get("node"), dict)
        ):
            inner = body["map"]["node"]
        tool = inner.get("tool") if isinstance(inner.get("tool"), str) else None
        contract = tools.get(tool) if tool else None
        write = isinstance(contract, dict) and contract.get("effect") == "write"
        if kind == "tool":
            kind = "write" if write else "read"
        alias = inner.get("llm") if isinstance(inner.get("llm"), str) else None
        route = models.get(alias) if alias else None
        route_models: tuple[str, ...] = ()
        if isinstance(route, str):
            route_models = (route,)
        elif isinstance(route, dict) and isinstance(route.get("model"), str):
            route_models = (route["model"], *_as_list(route.get("fallbacks")))
        when = body.get("when") if isinstance(body.get("when"), str) else None
        join = "any" if body.get("join") == "any" else "all"
        nodes[nid] = GNode(
            id=nid,
            kind=kind,
            write=write,
            alias=alias,
            models=route_models,
            tool=tool,
            when=when,
            join=join,
        )
        d: dict[str, str] = {n: "" for n in _as_list(body.get("needs"))}
        sw: dict[str, Any] = body["switch"] if isinstance(body.get("switch"), dict) else {}
        cases: list[Any] = sw["cases"] if isinstance(sw.get("cases"), list) else []
        texts = list(_strings({k: v for k, v in body.items() if k != "switch"}))
        texts += [
            c["when"] for c in cases if isinstance(c, dict) and isinstance(c.get("when"), str)
        ]
        if prompts and nid in prompts:
            texts.append(prompts[nid])
        for text in texts:
            for m in _NODE_REF.finditer(text):
                d.setdefault(m.group(1), "")
        deps[nid] = d
    for nid, body in raw_nodes.items():
        raw_sw = body.get("switch") if isinstance(body, dict) else None
        if not isinstance(raw_sw, dict):
            continue
        for case in raw_sw.get("cases") or []:
            if isinstance(case, dict):
                for t in _as_list(case.get("then")):
                    if t in deps:
                        deps[t].setdefault(str(nid), _short(str(case.get("when", ""))))
        for t in _as_list(raw_sw.get("default")):
            if t in deps:
                deps[t].setdefault(str(nid), "default")
    edges: list[GEdge] = []
    for nid, d in deps.items():
        for src, label in d.items():
            if src in nodes and src != nid:
                w = nodes[nid].when
                edges.append(
                    GEdge(src=src, dst=nid, label=label or (f"when {_short(w)}" if w else ""))
                )
    order = _topo(list(nodes), edges)
    return Graph(nodes=nodes, edges=edges, guards=_guards(nodes, edges, order))


def _topo(ids: list[str], edges: list[GEdge]) -> list[str]:
    """Declaration order made topological where possible; nodes on a cycle keep their place."""
    from runner.plan.digraph import DiGraph, is_dag, topological_sort

    g: DiGraph[str] = DiGraph()
    g.add_nodes_from(ids)
    g.add_edges_from((e.src, e.dst) for e in edges)
    if not is_dag(g):
        return ids
    index = {n: i for i, n in enumerate(ids)}
    return list(topological_sort(g, key=index.__getitem__))
