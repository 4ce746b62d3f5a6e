"""Node runners: one module per node kind, each `run(ctx) -> output`; the engine wraps them.

A new node kind is its own module here plus its line in RUNNERS. A runner never imports the
scheduler or node execution: a kind that runs other nodes reaches them through `ctx.run.engine`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from runner.engine.context import NodeContext
from runner.nodes import approval, flow, gate, llm, loop, map, switch, tool

NodeRunner = Callable[[NodeContext], Awaitable[Any]]

RUNNERS: dict[str, NodeRunner] = {
    "approval": approval.run,
    "flow": flow.run,
    "gate": gate.run,
    "llm": llm.run,
    "loop": loop.run,
    "map": map.run,
    "switch": switch.run,
    "tool": tool.run,
}
