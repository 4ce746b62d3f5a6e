"""Runs started by an event (a webhook delivery): recorded once per delivery, run aside.

The caller (runner/web/hooks.py) has checked the request's signature, limits and inputs. Here
the delivery is claimed in the store (a replay gets the first run's id and starts nothing, also
when two copies arrive at once, on SQLite and PostgreSQL alike), and the run is started on its
backend in a thread of its own, with its own store connection, so that the sender gets its
answer at once. A run that could not be created gives its delivery back (the sender's retry
may then start it) and leaves an `intake_failed` event under the run id it was promised.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.engine.run import new_run_id
from runner.errors import FlowrunError

if TYPE_CHECKING:
    from runner.plan.model import Plan


@dataclass(frozen=True)
class Delivery:
    """What a verified delivery starts."""

    hook: str
    delivery_id: str
    plan: Plan
    inputs: dict[str, Any]
    tenant: str | None = None
    backend: str = "local"
    temporal: dict[str, str] = field(default_factory=dict)
    live: bool = False
    scopes: tuple[str, ...] = ()
    responses: Any = None
    responses_path: str | None = None
    actor: str | None = None  # the identity the hook acts as; None: `hook:<name>`


@dataclass(frozen=True)
class Accepted:
    run_id: str
    fresh: bool  # False: a replayed delivery, nothing started


class Intake:
    """Starts deliveries' runs in background threads (at most `limit` at once per hook; the
    others queue) over the store at `target`."""

    def __init__(self, target: str, *, on_done: Callable[[str, str], None] | None = None) -> None:
        self.target = target
        self.on_done = on_done  # (run_id, status or "error"): tests and logs
        self._gates: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def _gate(self, hook: str, limit: int) -> threading.BoundedSemaphore:
        with self._lock:
            gate = self._gates.get(hook)
            if gate is None:
                gate = self._gates[hook] = threading.BoundedSemaphore(limit)
            return gate

    def accept(self, d: Delivery, *, limit: int = 4) -> Accepted:
        """Claim the delivery; a new one's run starts aside, a replayed one starts nothing."""
        from runner.runs import Runs, preflight

        if d.backend == "local":
            preflight(d.plan, d.responses)  # a missing model key refuses now, nothing recorded
        run_id = new_run_id()
        with contextlib.closing(Runs.open(self.target)) as runs:
            on_record, fresh = runs.store.delivery_claim(d.hook, d.delivery_id, run_id)
        if not fresh:
            return Accepted(on_record, False)
        t = threading.Thread(
            target=self._run, args=(d, run_id, self._gate(d.hook, limit)), daemon=True
        )
        with self._lock:
            self.threads = [x for x in self.threads if x.is_alive()] + [t]
        t.start()
        return Accepted(run_id, True)

    def drain(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for the runs started here to end or park (a server stopping);
        returns how many still go on (they stay `running`; `flowrun resume` continues them)."""
        import time

        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = list(self.threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return sum(t.is_alive() for t in threads)

    def _run(self, d: Delivery, run_id: str, gate: threading.BoundedSemaphore) -> None:
        with gate:
            status = asyncio.run(self._start(d, run_id))
        if self.on_done is not None:
            self.on_done(run_id, status)

    async def _start(self, d: Delivery, run_id: str) -> str:
        from runner.runs import Observe, Placement, Runs

        where = Placement(
            backend=d.backend,
            address=d.temporal.get("address"),
            namespace=d.temporal.get("namespace"),
            task_queue=d.temporal.get("task_queue"),
        )
        runs = None
        try:
            runs = Runs.open(self.target)
            result = await runs.start(
                d.plan,
                d.inputs,
                run_id=run_id,
                responses=d.responses,
                responses_path=d.responses_path,
                tenant=d.tenant,
                actor=d.actor or f"hook:{d.hook}",
                options={
                    "live": d.live,
                    "scopes": list(d.scopes),
                    "intake": {"hook": d.hook, "delivery_id": d.delivery_id},
                },
                where=where,
                observe=Observe(),
            )
            return result.status
        except Exception as e:  # recorded as an event; the server goes on
            message = e.message if isinstance(e, FlowrunError) else f"{type(e).__name__}: {e}"
            self._failed(runs, d, run_id, message)
            return "error"
        finally:
            if runs is not None:
                runs.close()

    def _failed(self, runs: Any, d: Delivery, run_id: str, message: str) -> None:
        """A run that could not start: its delivery given back when nothing was recorded (the
        sender's retry may start it), and an `intake_failed` event; said on stderr when even
        the store cannot be reached."""
        import sys

        try:
            if runs is None:
                raise RuntimeError("the store could not be opened")
            try:
                runs.get(run_id)
                created = True
            except FlowrunError:
                created = False
            if not created:
                runs.store.delivery_release(d.hook, d.delivery_id, run_id)
            runs.event(run_id, "intake_failed", hook=d.hook, error=message, created=created)
        except Exception as e:  # nowhere to record it: the server's log
            from runner.redact import redact

            print(
                redact(
                    f"flowrun intake: run {run_id} of hook {d.hook!r} did not start: {message} "
                    f"(and could not be recorded: {e})",
                    pii=True,
                ),
                file=sys.stderr,
            )
