"""A spec drawn for review: node kinds, labelled edges, writes and the gates that guard them."""

from __future__ import annotations

from runner.graph.model import GEdge, GNode, Graph, from_plan, from_raw
from runner.graph.render import to_dot, to_mermaid, to_text

__all__ = ["GEdge", "GNode", "Graph", "from_plan", "from_raw", "to_dot", "to_mermaid", "to_text"]
