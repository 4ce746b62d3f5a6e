"""The Temporal backend: one generic interpreter workflow runs a Plan; nodes are activities.

Only this package imports `temporalio`, and only when the Temporal backend is asked for, so
flowrun without the `temporal` extra keeps working.
"""

from __future__ import annotations

from runner.errors import UsageError

# The interpreter's version: a run records the version it needs, a worker refuses (clearly) a
# run that needs a newer interpreter than it has. Bump it when the workflow's commands change.
# 2: activities that spend a capped budget run one at a time
# 3: the shared scheduler; capped nodes are admitted by worst case and run in parallel (no lock)
INTERPRETER_VERSION = 3
WORKFLOW_NAME = "flowrun.interpret"
NODE_ACTIVITY = "flowrun.node"
FINISH_ACTIVITY = "flowrun.finish"
DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"
DEFAULT_TASK_QUEUE = "flowrun"
CONNECT_TIMEOUT_S = 5.0


def require_temporalio() -> None:
    """Say which extra to install when the Temporal SDK is missing, as bad input (exit 2)."""
    try:
        import temporalio  # noqa: F401
    except ImportError:
        raise UsageError(
            "the Temporal backend needs the temporalio SDK, which is not installed",
            hint="pip install 'flowrun[temporal]'",
        ) from None


_CLIENT_USED = False


def client_used() -> None:
    """Note that this process holds a Temporal client (its Rust runtime threads)."""
    global _CLIENT_USED
    _CLIENT_USED = True


def hard_exit_if_needed(code: int) -> None:
    """End a `flowrun` command process that used a Temporal client without interpreter teardown.

    The SDK's Rust runtime threads can abort CPython's finalization ("PyGILState_Release: thread
    state must be current", temporalio/sdk-python#300): a finished command exits at once instead.
    Library callers and in-process test runners (no `flowrun` main module) just return.
    """
    import os
    import sys

    from runner import started_as_flowrun

    if _CLIENT_USED and started_as_flowrun():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
