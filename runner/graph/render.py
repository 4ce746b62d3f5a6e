"""Mermaid, Graphviz dot and text renderings of a drawn graph; PR comments show mermaid."""

from __future__ import annotations

from collections.abc import Mapping

from runner.graph.model import GEdge, GNode, Graph

# mermaid shapes per drawn kind: (open, close)
_MERMAID_SHAPE: dict[str, tuple[str, str]] = {
    "llm": ('("', '")'),
    "read": ('(["', '"])'),
    "write": ('[["', '"]]'),
    "gate": ('{{"', '"}}'),
    "approval": ('[/"', '"\\]'),
    "switch": ('{"', '"}'),
    "map": ('>"', '"]'),
    "flow": ('[["', '"]]'),
    "loop": ('[["', '"]]'),
    "unknown": ('["', '"]'),
}
_DOT_SHAPE: dict[str, str] = {
    "llm": "box, style=rounded",
    "read": 'box, style="rounded,dashed"',
    "write": "box3d",
    "gate": "hexagon",
    "approval": "trapezium",
    "switch": "diamond",
    "map": "cds",
    "flow": "folder",
    "loop": "folder",
    "unknown": "box",
}
_CLASSDEFS = {
    "llm": "fill:#e8f0fe,stroke:#3b6fd4",
    "read": "fill:#eef7ee,stroke:#3c8d3c",
    "write": "fill:#fde2e1,stroke:#c62828,stroke-width:2px",
    "ungated": "fill:#ffcdd2,stroke:#b71c1c,stroke-width:4px",
    "guard": "fill:#fff3c4,stroke:#b38600,stroke-width:2px",
    "added": "stroke:#2e7d32,stroke-width:3px",
    "removed": "stroke:#9e9e9e,stroke-width:2px,stroke-dasharray:5 5,color:#9e9e9e",
    "changed": "stroke:#ef6c00,stroke-width:3px",
}
# edge status → mermaid arrow
_ARROW = {"": "-->", "same": "-->", "added": "==>", "removed": "-.->", "changed": "==>"}


def mermaid_text(text: str) -> str:
    """Text safe inside a quoted mermaid label: entity codes for the characters the parser reads."""
    out = []
    for ch in text:
        if ch == '"':
            out.append("#quot;")
        elif ch == "#":
            out.append("#35;")
        elif ch == "&":
            out.append("#amp;")
        elif ch == "<":
            out.append("#lt;")
        elif ch == ">":
            out.append("#gt;")
        elif ch in "\r\n":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def _mid(node_id: str) -> str:
    """Node ids are prefixed: mermaid keywords such as `end` or `graph` are valid flowrun ids."""
    return "n_" + node_id


def label_lines(node: GNode, ungated: bool = False) -> list[str]:
    lines = [node.id]
    if node.kind == "llm" or (node.kind == "map" and node.alias):
        route = " → ".join(node.models[:1]) if node.models else "?"
        lines.append(f"llm {node.alias}: {route}")
    elif node.tool:
        effect = "write" if node.write else "read"
        lines.append(f"{'map ' if node.kind == 'map' else ''}tool {node.tool} ({effect})")
    elif node.detail:
        lines.append(f"{'map ' if node.kind == 'map' else ''}{node.detail}")
    else:
        lines.append(node.kind)
    if ungated:
        lines.append("UNGATED WRITE")
    return lines


def _classes(node: GNode, graph: Graph) -> list[str]:
    out = []
    if node.write:
        out.append("ungated" if not graph.guards.get(node.id) else "write")
    elif node.id in graph.guarding:
        out.append("guard")
    elif node.kind in ("llm", "read"):
        out.append(node.kind)
    return out


def to_mermaid(
    graph: Graph,
    *,
    node_status: Mapping[str, str] | None = None,
    edge_status: Mapping[GEdge, str] | None = None,
    title: str | None = None,
) -> str:
    """A flowchart; with statuses (added/removed/changed) it draws a diff on the union graph."""
    lines = []
    if title:
        lines += ["---", f"title: {title.replace(chr(10), ' ')}", "---"]
    lines.append("flowchart TD")
    for cls, style in _CLASSDEFS.items():
        lines.append(f"  classDef {cls} {style}")
    ungated = set(graph.ungated_writes)
    assigned: dict[str, list[str]] = {}
    for node in graph.nodes.values():
        open_, close = _MERMAID_SHAPE.get(node.kind, _MERMAID_SHAPE["unknown"])
        parts = label_lines(node, node.id in ungated)
        status = (node_status or {}).get(node.id, "")
        if status in ("added", "removed", "changed"):
            parts[0] = f"{parts[0]} ({status})"
        text = "<br/>".join(mermaid_text(p) for p in parts)
        if node.children is not None:
            lines.extend(_mermaid_block(_mid(node.id), text, node.children, "  "))
            continue
        lines.append(f"  {_mid(node.id)}{open_}{text}{close}")
        for cls in [*_classes(node, graph), *([status] if status in _CLASSDEFS else [])]:
            assigned.setdefault(cls, []).append(_mid(node.id))
    for edge in graph.edges:
        status = (edge_status or {}).get(edge, "")
        arrow = _ARROW.get(status, "-->")
        label = edge.label
        if status in ("added", "removed"):
            label = f"{status}: {label}" if label else status
        text = f'|"{mermaid_text(label)}"|' if label else ""
        lines.append(f"  {_mid(edge.src)} {arrow}{text} {_mid(edge.dst)}")
    for cls, ids in assigned.items():
        lines.append(f"  class {','.join(ids)} {cls}")
    return "\n".join(lines) + "\n"


def _mermaid_block(mid: str, title: str, graph: Graph, indent: str) -> list[str]:
    """A subflow or loop as a `subgraph` holding its own nodes (ids prefixed with its own)."""
    out = [f'{indent}subgraph {mid}["{title}"]', f"{indent}  direction TB"]
    for node in graph.nodes.values():
        cid = f"{mid}__{node.id}"
        text = "<br/>".join(mermaid_text(p) for p in label_lines(node))
        if node.children is not None:
            out.extend(_mermaid_block(cid, text, node.children, indent + "  "))
            continue
        open_, close = _MERMAID_SHAPE.get(node.kind, _MERMAID_SHAPE["unknown"])
        out.append(f"{indent}  {cid}{open_}{text}{close}")
    for edge in graph.edges:
        label = f'|"{mermaid_text(edge.label)}"|' if edge.label else ""
        out.append(f"{indent}  {mid}__{edge.src} -->{label} {mid}__{edge.dst}")
    out.append(f"{indent}end")
    return out


def _dot_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: Graph, *, name: str = "flowrun") -> str:
    """Graphviz: shapes per kind, write nodes red, guarding gates gold, ungated writes bold."""
    ungated = set(graph.ungated_writes)
    lines = [f"digraph {_dot_str(name)} {{", "  rankdir=TB;", '  node [fontname="Helvetica"];']
    for node in graph.nodes.values():
        attrs = [f"label={_dot_str(chr(10).join(label_lines(node, node.id in ungated)))}"]
        attrs.append(f"shape={_DOT_SHAPE.get(node.kind, 'box')}")
        if node.write:
            color = "#c62828"
            attrs.append(f'color="{color}"')
            attrs.append(f"penwidth={4 if node.id in ungated else 2}")
        elif node.id in graph.guarding:
            attrs.append('color="#b38600", penwidth=2')
        lines.append(f"  {_dot_str(node.id)} [{', '.join(attrs)}];")
    for edge in graph.edges:
        label = f" [label={_dot_str(edge.label)}]" if edge.label else ""
        lines.append(f"  {_dot_str(edge.src)} -> {_dot_str(edge.dst)}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_text(graph: Graph) -> str:
    """One line per node with its kind and inputs; then the writes and the guards they pass."""
    lines = []
    incoming: dict[str, list[GEdge]] = {}
    for e in graph.edges:
        incoming.setdefault(e.dst, []).append(e)
    width = max((len(n) for n in graph.nodes), default=0)
    for node in graph.nodes.values():
        detail = label_lines(node)[1]
        deps = ", ".join(
            f"{e.src} [{e.label}]" if e.label else e.src for e in incoming.get(node.id, [])
        )
        lines.append(
            f"{node.id:<{width}}  {node.kind:<8} {detail}" + (f"  ← {deps}" if deps else "")
        )
    if graph.guards:
        lines.append("")
        lines.append("writes:")
        for w, g in graph.guards.items():
            lines.append(
                f"  {w}: "
                + (
                    f"guarded by {', '.join(sorted(g))}"
                    if g
                    else "UNGATED (no gate or approval on every path)"
                )
            )
    return "\n".join(lines) + "\n"
