"""What a spec change does to behaviour, risk and cost, for review: not a YAML line diff."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

from runner.diff import schemas
from runner.diff.load import Side
from runner.graph.model import GEdge, GNode, Graph

# Risk classes that --fail-on accepts, in the order flags are shown.
FAIL_CLASSES: tuple[str, ...] = (
    "invalid-spec",
    "ungated-write",
    "new-write-path",
    "looser-policy",
    "breaking-schema",
    "budget-increase",
)
DEFAULT_PROFILE = "(default)"
_KNOWN_SECTIONS = frozenset(
    {
        "apiVersion",
        "kind",
        "metadata",
        "inputs",
        "outputs",
        "models",
        "profiles",
        "tools",
        "budget",
        "nodes",
        "policies",
    }
)
# Policy effects from most permissive to most restrictive; unknown effects classify as "unknown".
_EFFECT_RANK = {
    "allow": 0,
    "log": 0,
    "audit": 0,
    "require_approval": 1,
    "approval": 1,
    "escalate": 2,
    "deny": 3,
}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _nodes(side: Side) -> dict[str, Any]:
    return {str(k): v for k, v in _dict(_dict(side.data).get("nodes")).items()}


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _short(value: Any, limit: int = 80) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        text = (
            value if not isinstance(value, str) or len(value) <= limit else value[: limit - 1] + "…"
        )
        return text
    text = _canon(value)
    return value if len(text) <= limit else text[: limit - 1] + "…"


def _flag(cls: str, message: str, node: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"class": cls, "message": message}
    if node is not None:
        out["node"] = node
    return out


def _renames(base: dict[str, Any], head: dict[str, Any]) -> dict[str, str]:
    """base id → head id for a removed node whose content reappears, unchanged, under a new id."""
    added = [n for n in head if n not in base]
    taken: set[str] = set()
    out: dict[str, str] = {}
    for old, body in base.items():
        if old in head:
            continue
        key = _canon(body)
        for new in added:
            if new not in taken and _canon(head[new]) == key:
                out[old] = new
                taken.add(new)
                break
    return out


def diff_sides(base: Side, head: Side) -> dict[str, Any]:
    """The semantic diff as plain data (the JSON output); flags first, details after."""
    flags: list[dict[str, Any]] = []
    bn, hn = _nodes(base), _nodes(head)
    renames = _renames(bn, hn)
    to_head = {n: renames.get(n, n) for n in bn}
    result: dict[str, Any] = {
        "base": _side_info(base),
        "head": _side_info(head),
    }
    if head.exists and not head.valid:
        n = len(head.diagnostics)
        message = f"the head spec does not validate ({n} problem{'s' if n != 1 else ''})"
        flags.append(_flag("invalid-spec", message))
    result["nodes"] = _node_changes(base, head, bn, hn, renames, to_head)
    result["edges"] = _edge_changes(base.graph, head.graph, to_head)
    result["prompts"] = _prompt_changes(base, head, to_head)
    result["schemas"] = _schema_changes(base, head, bn, hn, to_head, flags)
    result["routes"] = _route_changes(base, head)
    result["budget"] = _budget_changes(base, head, flags)
    result["policies"] = _policy_changes(base, head, flags)
    result["tools"] = _tool_changes(base, head)
    result["writes"] = _write_changes(base, head, to_head, flags)
    result["sections"] = _other_sections(base, head)
    result["cost"] = _costs(base, head)
    result["certificate"] = _certificate_changes(base, head)
    order = {c: i for i, c in enumerate(FAIL_CLASSES)}
    flags.sort(key=lambda f: (order.get(f["class"], 99), f.get("node", ""), f["message"]))
    result["flags"] = flags
    # flags first in the JSON too
    return {"flags": flags, **{k: v for k, v in result.items() if k != "flags"}}


def _side_info(side: Side) -> dict[str, Any]:
    return {
        "label": side.label,
        "exists": side.exists,
        "valid": side.valid,
        "diagnostics": [d.render() for d in side.diagnostics],
    }


def _node_changes(
    base: Side,
    head: Side,
    bn: dict[str, Any],
    hn: dict[str, Any],
    renames: dict[str, str],
    to_head: dict[str, str],
) -> dict[str, Any]:
    added = [n for n in hn if n not in bn and n not in renames.values()]
    removed = [n for n in bn if n not in hn and n not in renames]
    changed = []
    for old, new in to_head.items():
        if new not in hn:
            continue
        b, h = _dict(bn[old]), _dict(hn[new])
        fields = []
        for key in [*b, *(k for k in h if k not in b)]:
            if _canon(b.get(key)) != _canon(h.get(key)):
                fields.append(
                    {"field": key, "before": _short(b.get(key)), "after": _short(h.get(key))}
                )
        bp, hp = base.prompts.get(old, {}), head.prompts.get(new, {})
        if bp != hp and not any(f["field"] in ("prompt", "system") for f in fields):
            fields.append({"field": "prompt (file content)", "before": None, "after": None})
        bk = base.graph.nodes.get(old)
        hk = head.graph.nodes.get(new)
        if bk and hk and bk.kind != hk.kind:
            fields.append({"field": "kind", "before": bk.kind, "after": hk.kind})
        if fields:
            changed.append({"id": new, "fields": fields})
    return {
        "added": [{"id": n, "kind": _kind(head.graph, n)} for n in added],
        "removed": [{"id": n, "kind": _kind(base.graph, n)} for n in removed],
        "renamed": [{"from": a, "to": b} for a, b in renames.items()],
        "changed": changed,
    }


def _kind(graph: Graph, node: str) -> str:
    g = graph.nodes.get(node)
    return g.kind if g else "unknown"


def _edge_key(e: GEdge, to_head: Mapping[str, str]) -> tuple[str, str]:
    return to_head.get(e.src, e.src), to_head.get(e.dst, e.dst)


def _edge_changes(base: Graph, head: Graph, to_head: Mapping[str, str]) -> dict[str, Any]:
    be = {_edge_key(e, to_head): e.label for e in base.edges}
    he = {(e.src, e.dst): e.label for e in head.edges}
    return {
        "added": [
            {"from": s, "to": d, "label": lab} for (s, d), lab in he.items() if (s, d) not in be
        ],
        "removed": [
            {"from": s, "to": d, "label": lab} for (s, d), lab in be.items() if (s, d) not in he
        ],
        "changed": [
            {"from": s, "to": d, "before": be[(s, d)], "after": lab}
            for (s, d), lab in he.items()
            if (s, d) in be and be[(s, d)] != lab
        ],
    }


def _prompt_changes(base: Side, head: Side, to_head: Mapping[str, str]) -> list[dict[str, Any]]:
    out = []
    for old, new in to_head.items():
        bp, hp = base.prompts.get(old, {}), head.prompts.get(new, {})
        for fld in ("system", "prompt"):
            if fld in bp and fld in hp and bp[fld] != hp[fld]:
                diff = difflib.unified_diff(
                    bp[fld].splitlines(),
                    hp[fld].splitlines(),
                    f"base/{old}.{fld}",
                    f"head/{new}.{fld}",
                    lineterm="",
                    n=2,
                )
                out.append({"node": new, "field": fld, "diff": "\n".join(diff)})
    return out


def _schema_at(body: Any, key: str) -> Any:
    body = _dict(body)
    if isinstance(body.get("map"), dict):
        body = _dict(body["map"].get("node"))
    return body.get(key)


def _schema_entry(where: str, before: Any, after: Any, role: str) -> dict[str, Any] | None:
    changes = schemas.compare(before, after)
    if not changes:
        return None
    cls = schemas.classify(changes, role="input" if role == "input" else "output")
    return {
        "where": where,
        "role": role,
        "class": cls,
        "changes": [
            {"path": c.path, "change": c.change, "direction": c.direction} for c in changes
        ],
    }


def _schema_changes(
    base: Side,
    head: Side,
    bn: dict[str, Any],
    hn: dict[str, Any],
    to_head: Mapping[str, str],
    flags: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    out = []
    for old, new in to_head.items():
        if new in hn:
            e = _schema_entry(
                f"nodes.{new}.output",
                _schema_at(bn[old], "output"),
                _schema_at(hn[new], "output"),
                "output",
            )
            if e:
                out.append(e)
    bt, ht = _dict(_dict(base.data).get("tools")), _dict(_dict(head.data).get("tools"))
    for name in bt:
        if name in ht:
            e = _schema_entry(
                f"tools.{name}.result",
                _dict(bt[name]).get("result"),
                _dict(ht[name]).get("result"),
                "output",
            )
            if e:
                out.append(e)
    if base.exists and head.exists:
        e = _schema_entry(
            "inputs", _dict(base.data).get("inputs"), _dict(head.data).get("inputs"), "input"
        )
        if e:
            out.append(e)
    for e in out:
        if e["class"] == "breaking":
            what = "; ".join(
                f"{c['path']}: {c['change']}" for c in e["changes"] if c["direction"] != "neutral"
            )
            flags.append(_flag("breaking-schema", f"{e['where']} changed incompatibly ({what})"))
    return out


def _routes(side: Side) -> dict[str, dict[str, tuple[str, ...]]]:
    if side.loaded is None:
        return {}
    from runner.plan.compile import Compiler

    comp = Compiler(side.loaded)
    out = {DEFAULT_PROFILE: {a: r.models for a, r in comp.resolve_routes(None).items()}}
    for p in side.loaded.spec.profiles:
        out[p] = {a: r.models for a, r in comp.resolve_routes(p).items()}
    return out


def _price(model: str | None) -> dict[str, float] | None:
    from runner.models.pricing import price_of

    price = price_of(model) if model else None
    if price is None:
        return None
    return {
        "input_per_mtok": round(price.input_per_token * 1e6, 6),
        "output_per_mtok": round(price.output_per_token * 1e6, 6),
    }


def _route_changes(base: Side, head: Side) -> list[dict[str, Any]]:
    br, hr = _routes(base), _routes(head)
    out = []
    for profile in [*hr, *(p for p in br if p not in hr)]:
        b, h = br.get(profile), hr.get(profile)
        if b is None or h is None:
            if base.loaded is not None and head.loaded is not None:
                out.append(
                    {
                        "profile": profile,
                        "change": "profile added" if b is None else "profile removed",
                    }
                )
            continue
        for alias in [*h, *(a for a in b if a not in h)]:
            mb, mh = b.get(alias), h.get(alias)
            if mb == mh:
                continue
            pb, ph = _price(mb[0] if mb else None), _price(mh[0] if mh else None)
            entry: dict[str, Any] = {
                "profile": profile,
                "alias": alias,
                "before": list(mb) if mb else None,
                "after": list(mh) if mh else None,
                "price_before": pb,
                "price_after": ph,
            }
            if pb and ph:
                entry["price_change"] = {
                    k: round(ph[k] - pb[k], 6) for k in ("input_per_mtok", "output_per_mtok")
                }
            out.append(entry)
    return out


def _budget(side: Side) -> dict[str, Any]:
    if side.loaded is not None:
        return side.loaded.spec.budget.model_dump()
    return _dict(_dict(side.data).get("budget"))


def _budget_changes(base: Side, head: Side, flags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not (base.exists and head.exists):
        return []
    b, h = _budget(base), _budget(head)
    out = []
    for key in [*h, *(k for k in b if k not in h)]:
        vb, vh = b.get(key), h.get(key)
        if vb == vh:
            continue
        if vh is None:
            direction = "increase"  # a cap removed: unlimited
        elif vb is None:
            direction = "decrease"
        elif isinstance(vb, int | float) and isinstance(vh, int | float):
            direction = "increase" if vh > vb else "decrease"
        else:
            direction = "changed"
        out.append({"field": key, "before": vb, "after": vh, "direction": direction})
        if direction in ("increase", "changed"):
            after = "no limit" if vh is None else vh
            flags.append(_flag("budget-increase", f"budget.{key} {vb} → {after}"))
    return out


def _policies(side: Side) -> tuple[dict[str, Any], Any]:
    """Policies keyed by id when they are a list of mappings with ids; else the section whole."""
    raw = _dict(side.data).get("policies")
    if isinstance(raw, list) and all(isinstance(p, dict) and "id" in p for p in raw):
        return {str(p["id"]): p for p in raw}, None
    return {}, raw


def _rank(policy: Any) -> int | None:
    effect = _dict(policy).get("effect")
    return _EFFECT_RANK.get(effect) if isinstance(effect, str) else None


def _policy_changes(base: Side, head: Side, flags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not (base.exists and head.exists):
        return []
    (bp, bwhole), (hp, hwhole) = _policies(base), _policies(head)
    out: list[dict[str, Any]] = []
    whole_changed = _canon(bwhole) != _canon(hwhole)
    if (bwhole is not None or hwhole is not None) and whole_changed and not (bp or hp):
        out.append({"id": "(policies)", "change": "changed", "class": "unknown"})
    for pid in [*bp, *(p for p in hp if p not in bp)]:
        b, h = bp.get(pid), hp.get(pid)
        if _canon(b) == _canon(h):
            continue
        if b is None:
            rank = _rank(h)
            cls = "unknown" if rank is None else "looser" if rank == 0 else "tighter"
            out.append({"id": pid, "change": "added", "class": cls, "after": h})
        elif h is None:
            rank = _rank(b)
            cls = "unknown" if rank is None else "tighter" if rank == 0 else "looser"
            out.append({"id": pid, "change": "removed", "class": cls, "before": b})
        else:
            rb, rh = _rank(b), _rank(h)
            fields = sorted(
                k
                for k in set(_dict(b)) | set(_dict(h))
                if _canon(_dict(b).get(k)) != _canon(_dict(h).get(k))
            )
            if rb is not None and rh is not None and rb != rh and fields == ["effect"]:
                cls = "tighter" if rh > rb else "looser"
            elif fields and set(fields) <= {"reason", "description", "message"}:
                cls = "neutral"  # wording only: no change in what is allowed
            else:
                cls = "unknown"  # a condition changed: no static proof it is not looser
            out.append(
                {
                    "id": pid,
                    "change": "changed",
                    "class": cls,
                    "fields": fields,
                    "before": b,
                    "after": h,
                }
            )
    for p in out:
        if p["class"] in ("looser", "unknown"):
            what = "could not be proven not looser" if p["class"] == "unknown" else "is looser"
            flags.append(_flag("looser-policy", f"policy {p['id']!r} {p['change']}: {what}"))
    return out


def _tool_changes(base: Side, head: Side) -> list[dict[str, Any]]:
    bt, ht = _dict(_dict(base.data).get("tools")), _dict(_dict(head.data).get("tools"))
    out = []
    for name in [*ht, *(t for t in bt if t not in ht)]:
        b, h = bt.get(name), ht.get(name)
        if _canon(b) == _canon(h):
            continue
        if b is None:
            out.append({"tool": name, "change": "added", "effect": _dict(h).get("effect", "read")})
        elif h is None:
            out.append(
                {"tool": name, "change": "removed", "effect": _dict(b).get("effect", "read")}
            )
        else:
            bd, hd = _dict(b), _dict(h)
            fields = {
                k: {"before": _short(bd.get(k)), "after": _short(hd.get(k))}
                for k in [*hd, *(k for k in bd if k not in hd)]
                if _canon(bd.get(k)) != _canon(hd.get(k))
            }
            entry: dict[str, Any] = {"tool": name, "change": "changed", "fields": fields}
            eb, eh = bd.get("effect", "read"), hd.get("effect", "read")
            if eb != eh:
                entry["effect"] = f"{eb} → {eh}"
            out.append(entry)
    return out


def _write_changes(
    base: Side, head: Side, to_head: Mapping[str, str], flags: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    from_head = {v: k for k, v in to_head.items()}
    bg, hg = base.graph, head.graph
    out = []
    for node, guards in hg.guards.items():
        old = from_head.get(node)
        bnode = bg.nodes.get(old) if old else None
        was_write = bnode is not None and bnode.write
        entry: dict[str, Any] = {"node": node, "guards_after": sorted(guards)}
        if not was_write:
            entry["change"] = "new-write-path"
            entry["guards_before"] = None
            why = (
                "a new write node"
                if bnode is None
                else f"node {node!r} now writes (was {bnode.kind})"
            )
            flags.append(_flag("new-write-path", f"{why} via tool {hg.nodes[node].tool!r}", node))
            if not guards:
                flags.append(
                    _flag(
                        "ungated-write",
                        f"write node {node!r} is reached without a gate or approval",
                        node,
                    )
                )
            out.append(entry)
            continue
        before = bg.guards.get(old or "", frozenset())
        mapped_before = sorted(to_head.get(g, g) for g in before)
        entry["guards_before"] = mapped_before
        hnode = hg.nodes[node]
        if before and not guards:
            entry["change"] = "lost-gate"
            flags.append(
                _flag(
                    "ungated-write",
                    f"write node {node!r} lost its gate ({', '.join(mapped_before)})",
                    node,
                )
            )
        elif not before and guards:
            entry["change"] = "gained-gate"
        elif set(mapped_before) != set(guards):
            entry["change"] = "guards-changed"
        elif _reach_changed(bg, hg, old or node, node, bnode, hnode, to_head):
            entry["change"] = "new-write-path"
            flags.append(
                _flag(
                    "new-write-path", f"write node {node!r} is reached under new conditions", node
                )
            )
        else:
            continue
        out.append(entry)
    for node in bg.guards:
        if to_head.get(node, node) not in hg.guards:
            out.append(
                {
                    "node": node,
                    "change": "write-removed",
                    "guards_before": sorted(bg.guards[node]),
                    "guards_after": None,
                }
            )
    return out


def _reach_changed(
    bg: Graph,
    hg: Graph,
    old: str,
    new: str,
    bnode: GNode | None,
    hnode: GNode,
    to_head: Mapping[str, str],
) -> bool:
    """A write reached under other conditions: its `when`, its join, or a switch branch into it."""
    if bnode is None:
        return True
    if bnode.when != hnode.when or (bnode.join == "all" and hnode.join == "any"):
        return True
    into_b = {(to_head.get(e.src, e.src), e.label) for e in bg.edges if e.dst == old and e.label}
    into_h = {(e.src, e.label) for e in hg.edges if e.dst == new and e.label}
    return bool(into_h - into_b)


def _other_sections(base: Side, head: Side) -> list[dict[str, Any]]:
    b, h = _dict(base.data), _dict(head.data)
    out = []
    for key in [*h, *(k for k in b if k not in h)]:
        if key in _KNOWN_SECTIONS or _canon(b.get(key)) == _canon(h.get(key)):
            continue
        out.append({"section": key, "before": _short(b.get(key)), "after": _short(h.get(key))})
    for key in ("metadata", "outputs", "models", "profiles"):
        if (base.exists and head.exists) and _canon(b.get(key)) != _canon(h.get(key)):
            out.append({"section": key, "before": _short(b.get(key)), "after": _short(h.get(key))})
    return out


def _costs(base: Side, head: Side) -> dict[str, Any]:
    from runner.plan.cost import cost_under

    def per_profile(side: Side) -> dict[str, float]:
        if side.plan is None or side.loaded is None:
            return {}
        out = {DEFAULT_PROFILE: round(cost_under(side.plan, None).usd, 6)}
        for p in side.loaded.spec.profiles:
            out[p] = round(cost_under(side.plan, p).usd, 6)
        return out

    b, h = per_profile(base), per_profile(head)
    out: dict[str, Any] = {}
    for p in [*h, *(x for x in b if x not in h)]:
        vb, vh = b.get(p), h.get(p)
        out[p] = {
            "before": vb,
            "after": vh,
            "change": round(vh - vb, 6) if vb is not None and vh is not None else None,
        }
    return out


def _certificate_lines(side: Side) -> dict[str, str]:
    """Each statement of a side's safety certificate (text -> kind); none for an invalid side."""
    if side.plan is None:
        return {}
    from runner.plan.certificate import certificate

    c = certificate(side.plan)
    out: dict[str, str] = {}
    for x in c["loops"]:
        out[f"loop `{x['node']}` runs at most {x['max_iterations']} times"] = "bound"
    for x in c["maps"]:
        out[f"map `{x['node']}` runs at most {x['max_items']} items"] = "bound"
    w = c["worst_case"]
    out[f"worst case {w['llm_calls']} LLM calls, {w['tool_calls']} tool calls"] = "worst-case"
    for x in c["writes"]:
        by = ", ".join(
            f"{g['kind']} `{g['node']}`" + (" (conditional)" if "when" in g else "")
            for g in x["guards"]
        )
        text = f"write `{x['node']}` ({x['tool']}) runs after {by or 'nothing'}"
        if x.get("ungated"):
            text += f" (ungated: {x['ungated']})"
        out[text] = "write"
    for x in c["taint"]:
        out[f"untrusted `{x['path']}` checked by {x['checked_by'] or 'NOTHING'}"] = "taint"
    for tool, why in c["sanitizers"].items():
        out[f"tool `{tool}` declared a sanitizer: {why}"] = "sanitizer"
    return out


def _certificate_changes(base: Side, head: Side) -> dict[str, list[dict[str, str]]]:
    """What a change adds to and removes from what validate proves (plan/certificate.py)."""
    b, h = _certificate_lines(base), _certificate_lines(head)
    return {
        "added": [{"kind": k, "text": t} for t, k in h.items() if t not in b],
        "removed": [{"kind": k, "text": t} for t, k in b.items() if t not in h],
    }


def matched(result: Mapping[str, Any], fail_on: set[str]) -> list[dict[str, Any]]:
    """Flags of a --fail-on class."""
    return [f for f in result.get("flags", []) if f["class"] in fail_on]


def is_empty(result: Mapping[str, Any]) -> bool:
    keys = ("prompts", "schemas", "routes", "budget", "policies", "tools", "writes", "sections")
    n, e = result["nodes"], result["edges"]
    cost_changed = any(c["change"] for c in result["cost"].values())
    return not (
        result["flags"]
        or any(result[k] for k in keys)
        or any(n[k] for k in n)
        or any(e[k] for k in e)
        or cost_changed
        or any(result.get("certificate", {}).values())
        or result["base"]["exists"] != result["head"]["exists"]
    )
