"""A documented test hook: FLOWRUN_CRASH_AT=<point> SIGKILLs the process when the engine reaches it.

Points: `before:<node>` (about to start), `after:<node>` (checkpointed), and for tool calls
`before-effect:<node>` (ledger intent written, tool not yet called; also as
`before-effect:<where>` for one map item or child node) and `after-effect:<node>` (tool
returned, result not yet in the ledger), and for model calls `call:<where>` (the call's
budget reservation is in the store, the call not yet made; `<where>` is the node, a map item as
`each[3]`, a subflow's or loop pass's node as `sub/draft` or `revise#2/draft`). Used by the
crash tests; unset in production.
"""

from __future__ import annotations

import os
import signal

_AT = os.environ.get("FLOWRUN_CRASH_AT")


def crash_point(name: str) -> None:
    if _AT is not None and name == _AT:
        os.kill(os.getpid(), signal.SIGKILL)
