"""The diff as a PR comment (risk flags, summary table, mermaid graph, details) and as JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from runner.diff.load import Side
from runner.graph.model import GEdge, Graph
from runner.graph.render import to_mermaid

MARKER = "<!-- flowrun-diff -->"  # lets a CI job find and update its own comment


def union_graph(
    base: Side, head: Side, result: Mapping[str, Any]
) -> tuple[Graph, dict[str, str], dict[GEdge, str]]:
    """Head's graph plus removed nodes and edges, each part with its status."""
    renamed = {r["from"]: r["to"] for r in result["nodes"]["renamed"]}
    nodes = dict(head.graph.nodes)
    status: dict[str, str] = {}
    for n in result["nodes"]["added"]:
        status[n["id"]] = "added"
    for n in result["nodes"]["changed"]:
        status[n["id"]] = "changed"
    for r in result["nodes"]["renamed"]:
        status.setdefault(r["to"], "changed")
    for p in result["prompts"]:
        status.setdefault(p["node"], "changed")
    for n in result["nodes"]["removed"]:
        node = base.graph.nodes.get(n["id"])
        if node is not None and n["id"] not in nodes:
            nodes[n["id"]] = node
            status[n["id"]] = "removed"
    edges: list[GEdge] = []
    estatus: dict[GEdge, str] = {}
    added = {(e["from"], e["to"]) for e in result["edges"]["added"]}
    changed = {(e["from"], e["to"]) for e in result["edges"]["changed"]}
    for e in head.graph.edges:
        edges.append(e)
        key = (e.src, e.dst)
        estatus[e] = "added" if key in added else "changed" if key in changed else "same"
    for e in result["edges"]["removed"]:
        src, dst = e["from"], e["to"]
        if src in nodes and dst in nodes:
            ge = GEdge(src=src, dst=dst, label=e["label"])
            edges.append(ge)
            estatus[ge] = "removed"
    guards = dict(head.graph.guards)
    for n, g in base.graph.guards.items():
        if status.get(n) == "removed":
            guards[n] = g
    _ = renamed
    return Graph(nodes=nodes, edges=edges, guards=guards), status, estatus


def diff_mermaid(base: Side, head: Side, result: Mapping[str, Any]) -> str:
    graph, status, estatus = union_graph(base, head, result)
    return to_mermaid(graph, node_status=status, edge_status=estatus)


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("|", "\\|").replace("\n", " ")


def _summary_rows(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    n, e = result["nodes"], result["edges"]
    rows: list[tuple[str, str]] = []

    def ids(items: Sequence[Mapping[str, Any]], key: str = "id") -> str:
        return ", ".join(f"`{i[key]}`" for i in items)

    if n["added"]:
        rows.append(("nodes added", ids(n["added"])))
    if n["removed"]:
        rows.append(("nodes removed", ids(n["removed"])))
    if n["renamed"]:
        rows.append(
            ("nodes renamed", ", ".join(f"`{r['from']}` → `{r['to']}`" for r in n["renamed"]))
        )
    if n["changed"]:
        rows.append(
            (
                "nodes changed",
                ", ".join(
                    f"`{c['id']}` ({', '.join(f['field'] for f in c['fields'])})"
                    for c in n["changed"]
                ),
            )
        )
    edge_count = sum(len(e[k]) for k in e)
    if edge_count:
        rows.append(("edges", f"+{len(e['added'])} −{len(e['removed'])} ~{len(e['changed'])}"))
    if result["prompts"]:
        rows.append(
            ("prompts", ", ".join(f"`{p['node']}.{p['field']}`" for p in result["prompts"]))
        )
    for s in result["schemas"]:
        rows.append(
            (
                f"schema `{s['where']}`",
                f"**{s['class']}**: "
                + "; ".join(f"{c['path']} {c['change']}" for c in s["changes"]),
            )
        )
    for r in result["routes"]:
        if "alias" not in r:
            rows.append((f"profile `{r['profile']}`", r["change"]))
            continue
        text = f"{_models(r['before'])} → {_models(r['after'])}"
        pc = r.get("price_change")
        if pc:
            pin, pout = _signed(pc["input_per_mtok"]), _signed(pc["output_per_mtok"])
            text += f" (per 1M tokens: in {pin}, out {pout})"
        rows.append((f"route `{r['alias']}` [{r['profile']}]", text))
    for b in result["budget"]:
        rows.append(
            (
                f"budget.{b['field']}",
                f"{b['before']} → {_limit(b['after'])} ({b['direction']})",
            )
        )
    for p in result["policies"]:
        rows.append((f"policy `{p['id']}`", f"{p['change']}, {p['class']}"))
    for t in result["tools"]:
        detail = t["change"]
        if "effect" in t:
            detail += f", effect {t['effect']}"
        if t.get("fields"):
            detail += ": " + ", ".join(t["fields"])
        rows.append((f"tool `{t['tool']}`", detail))
    for w in result["writes"]:
        rows.append(
            (
                f"write `{w['node']}`",
                f"{w['change']}; guards {_guards(w.get('guards_before'))} → "
                f"{_guards(w.get('guards_after'))}",
            )
        )
    for s in result["sections"]:
        rows.append((f"`{s['section']}`", "changed"))
    for profile, c in result["cost"].items():
        if c["change"] or c["before"] is None or c["after"] is None:
            rows.append(
                (f"worst-case cost [{profile}]", f"{_usd(c['before'])} → {_usd(c['after'])}")
            )
    return rows


def _limit(v: Any) -> str:
    return "no limit" if v is None else str(v)


def _absent(side: Side) -> str:
    return "" if side.exists else " (absent)"


def _models(models: Sequence[str] | None) -> str:
    return "(none)" if not models else "`" + " → ".join(models) + "`"


def _guards(g: Sequence[str] | None) -> str:
    return "(absent)" if g is None else ("none" if not g else ", ".join(g))


def _signed(v: float) -> str:
    return f"{'+' if v >= 0 else '−'}${abs(v):g}"


def _usd(v: float | None) -> str:
    return "n/a" if v is None else f"${v:.6f}"


def to_markdown(
    base: Side, head: Side, result: Mapping[str, Any], *, title: str | None = None
) -> str:
    """A PR comment: risk flags first, then a summary table, the graph, and the details folded."""
    lines = [f"### flowrun diff: `{title or head.label}`", ""]
    lines.append(f"base `{base.label}`{_absent(base)} → head `{head.label}`{_absent(head)}")
    lines.append("")
    if not base.exists and head.exists:
        lines += ["**New spec.**", ""]
    elif base.exists and not head.exists:
        lines += ["**Spec removed.**", ""]
    for side, name in ((base, "base"), (head, "head")):
        if side.exists and not side.valid:
            lines.append(
                f"> [!CAUTION]\n> The {name} spec does not validate; "
                "the diff shows what could be read."
            )
            lines.append("")
            lines.append("```text")
            lines += [d.render() for d in side.diagnostics] or ["(no diagnostics)"]
            lines.append("```")
            lines.append("")
    lines.append("#### Risk flags")
    lines.append("")
    if result["flags"]:
        for f in result["flags"]:
            lines.append(f"- :warning: **{f['class']}**: {f['message']}")
    else:
        lines.append("None.")
    lines.append("")
    rows = _summary_rows(result)
    lines.append("#### Summary")
    lines.append("")
    if rows:
        lines += ["| change | detail |", "| --- | --- |"]
        lines += [f"| {_cell(a)} | {_cell(b)} |" for a, b in rows]
    else:
        lines.append("No semantic change.")
    lines.append("")
    cert = result.get("certificate") or {}
    if cert.get("added") or cert.get("removed"):
        lines += ["#### Safety certificate", "", "What `flowrun validate` proves, changed:", ""]
        lines += [f"- added: {c['text']}" for c in cert["added"]]
        lines += [f"- removed: {c['text']}" for c in cert["removed"]]
        lines.append("")
    if base.graph.nodes or head.graph.nodes:
        lines += [
            "#### Graph",
            "",
            "```mermaid",
            diff_mermaid(base, head, result).rstrip("\n"),
            "```",
            "",
        ]
    if result["prompts"]:
        lines += ["<details><summary>Prompt changes</summary>", ""]
        for p in result["prompts"]:
            lines += [f"`{p['node']}.{p['field']}`", "", "```diff", p["diff"], "```", ""]
        lines += ["</details>", ""]
    changed = result["nodes"]["changed"]
    if changed:
        lines += [
            "<details><summary>Node field changes</summary>",
            "",
            "| node | field | before | after |",
            "| --- | --- | --- | --- |",
        ]
        for c in changed:
            for f in c["fields"]:
                lines.append(
                    f"| `{c['id']}` | {_cell(f['field'])} | {_cell(f['before'])} | "
                    f"{_cell(f['after'])} |"
                )
        lines += ["", "</details>", ""]
    return "\n".join(lines)


def to_json(results: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(results[0] if len(results) == 1 else list(results), indent=2, default=str)
