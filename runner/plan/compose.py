"""What the engine needs to know about composition (subflows, loops, maps) without compiling.

Compiling them is runner/plan/kinds/flow.py, loop.py and map.py.
"""

from __future__ import annotations

from runner.plan.model import Plan


def llm_node_names(plan: Plan, prefix: str = "") -> set[str]:
    """Names a responses file may use: LLM nodes, and `outer.inner` inside subflows and loops."""
    names: set[str] = set()
    for n in plan.nodes.values():
        inner = n.map.inner if n.map is not None else n
        if inner.llm is not None:
            names.add(prefix + n.id)
        if inner.flow is not None:
            names |= llm_node_names(inner.flow.plan, f"{prefix}{n.id}.")
        if inner.loop is not None:
            names |= llm_node_names(inner.loop.body, f"{prefix}{n.id}.")
    return names
