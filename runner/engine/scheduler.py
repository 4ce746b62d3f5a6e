"""The one scheduler both backends drive: plain data in (the plan, node results), decisions out.

No I/O and no asyncio here, so the local engine (runner/engine/run.py) and the Temporal
interpreter (runner/temporal/workflow.py) decide readiness, skips, budget admission and the
run's outcome the same way; each backend only runs the nodes it is told to start and reports
their results back.

The state machine. A node is *ready* once every node it needs has a result that is not
`waiting`. A ready node is either settled without running (`skipped`: a need was passed over, a
switch chose another branch, its `when` is false; `failed`: its `when` could not be evaluated),
or started, unless a stopping result (failed, escalated, denied, budget_exceeded, killed) has
been seen: from then on nothing new starts, running nodes finish. A `waiting` result (an
approval) parks the node: its dependants wait with it, independent branches go on, and `wake()`
starts it again after a decision. When nothing runs and nothing more can start the run is
`done` and `outcome()` says how it ended (the most severe stop, else `waiting` if a node is
parked, else succeeded with the spec's outputs).

The budget rule (both backends). Before a node that can spend a capped resource (max_usd,
max_tokens, max_llm_calls, max_tool_calls) starts, the scheduler reserves its worst case from
the plan (runner/plan/cost.py: model prices × re-asks × retries × map items; a subflow's or
loop's token and tool-call use counts as unbounded) against the cap minus what finished nodes
spent and running capped nodes reserved:
- it fits: the node starts at once, in parallel with the others;
- it does not fit and other capped nodes run: the node is held until one of them finishes (its
  real spend then replaces its reservation) and admission is tried again, in plan order;
- it does not fit and no capped node runs: it starts anyway, reserving what is left, so nothing
  else capped starts beside it; its own per-call reservation (runner/engine/budget.py) refuses
  the call that would pass the cap.
So parallel capped nodes never together reserve past a cap, and nothing is serialized that fits.
Inside a node every model or tool call still reserves before it is made: on the local backend
against the run's one ledger (exact across parallel nodes); in a Temporal activity against
`ledger_start(node)`, the real spend plus the reservations of the capped nodes running beside it
when it was admitted. There a node can take more than its own reservation only where the plan's
estimate understates it (a prompt rendered much longer than its template, a cut-off answer
re-asked with a doubled max_tokens); a node that runs alone is exact on both backends.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.engine.results import (
    STOPPING,
    NodeDetail,
    NodeResult,
    RunResult,
    RunStatus,
    Usage,
    severity,
)
from runner.expr.cel import ExprError, truthy
from runner.plan.cost import _prompt_estimate, composite_cost, llm_calls_bound
from runner.plan.model import Plan, PlanNode

KILLED = "killed on request"


def passed_over(r: NodeResult) -> bool:
    """Skipped, or denied with `on_deny: skip`: dependants treat both as not having run."""
    return r.status == "skipped" or (r.status == "denied" and r.detail.get("on_deny") == "skip")


@dataclass(frozen=True, slots=True)
class Cost:
    """Amounts of the four capped resources; `math.inf` where a worst case has no bound."""

    usd: float = 0.0
    tokens: float = 0
    llm_calls: float = 0
    tool_calls: float = 0

    def __add__(self, o: Cost) -> Cost:
        return Cost(
            self.usd + o.usd,
            self.tokens + o.tokens,
            self.llm_calls + o.llm_calls,
            self.tool_calls + o.tool_calls,
        )

    def __sub__(self, o: Cost) -> Cost:
        return Cost(
            self.usd - o.usd,
            self.tokens - o.tokens,
            self.llm_calls - o.llm_calls,
            self.tool_calls - o.tool_calls,
        )

    @classmethod
    def of(cls, u: Usage) -> Cost:
        return cls(u.cost_usd, u.tokens, u.llm_calls, u.tool_calls)

    def to_json(self) -> dict[str, float]:
        return {
            "usd": self.usd,
            "tokens": self.tokens,
            "llm_calls": self.llm_calls,
            "tool_calls": self.tool_calls,
        }


_DIMS = ("usd", "tokens", "llm_calls", "tool_calls")
_CAP_OF = {"usd": "max_usd", "tokens": "max_tokens", "llm_calls": "max_llm_calls"}
_CAP_OF["tool_calls"] = "max_tool_calls"
_NONE = Cost()


def worst_case(plan: Plan, node: PlanNode) -> Cost:
    """The most a node can spend of each capped resource, from the plan's cost estimate."""
    usd = plan.cost.per_node.get(node.id, 0.0)
    sub = composite_cost(node)
    if sub is not None:  # a subflow or loop (or a map of them): its calls bound, not its tokens
        return Cost(usd, math.inf, sub.llm_calls, math.inf)
    step, calls = llm_calls_bound(node)
    tokens = calls * (_prompt_estimate(step) + step.max_tokens) if step is not None else 0
    inner, fan = (node.map.inner, node.map.max_items) if node.map is not None else (node, 1)
    tools = inner.retry.max_attempts * fan if inner.kind == "tool" else 0
    return Cost(usd, tokens, calls, tools)


@dataclass(frozen=True, slots=True)
class Outcome:
    status: RunStatus
    reason: str | None
    outputs: dict[str, Any]


@dataclass(slots=True)
class Decisions:
    """What the backend does next: start these nodes, report these settled results (to hooks
    and the store), and, once `done`, end the run with `Scheduler.outcome()`."""

    start: list[str] = field(default_factory=list)
    settled: list[NodeResult] = field(default_factory=list)
    done: bool = False


class Scheduler:
    """The ready-set state machine of one run (or one child plan); see the module docstring.

    `results` and `views` are the run's own dicts (the node runners read the views); the
    scheduler writes every result into them, so nodes never see a half-recorded need.
    """

    def __init__(
        self,
        plan: Plan,
        inputs: Mapping[str, Any],
        *,
        results: dict[str, NodeResult] | None = None,
        views: dict[str, dict[str, Any]] | None = None,
        scope: Mapping[str, Any] | None = None,
        earlier: Mapping[str, Usage] | None = None,
    ) -> None:
        """`earlier`: what earlier executions of nodes that run again spent (a run resumed after
        a crash: runner/engine/budget.py); counted as spent from the start, and replaced by the
        node's result (which includes it) when the node finishes."""
        self.plan = plan
        self.inputs = inputs
        self.results: dict[str, NodeResult] = results if results is not None else {}
        self.views: dict[str, dict[str, Any]] = views if views is not None else {}
        for nid, r in self.results.items():
            self.views.setdefault(nid, r.view())
        self.scope = scope or {}
        self.stops: list[NodeResult] = []
        self.running: set[str] = set()
        self.parked: dict[str, str] = {}  # node id -> why it waits (the approval's summary)
        self._waiting = {
            nid: sum(1 for d in plan.nodes[nid].deps if d not in self.results) for nid in plan.order
        }
        self._remaining = {nid for nid in plan.order if nid not in self.results}
        self._forced: Outcome | None = None  # a cancelled run ends killed whatever ran
        self._timed_out = False
        # budget admission (only when the plan caps something)
        b = plan.budget
        self._caps = {
            d: getattr(b, _CAP_OF[d]) for d in _DIMS if getattr(b, _CAP_OF[d]) is not None
        }
        self._worst: dict[str, Cost] = {}
        self._reserved_by: dict[str, Cost] = {}  # running capped node -> its reservation
        self._start_spent: dict[str, Cost] = {}  # what its own ledger counts as used at start
        self._held: list[str] = []  # ready capped nodes waiting for room, in plan order
        self.spent = _NONE
        self._earlier = {n: Cost.of(u) for n, u in (earlier or {}).items()}
        if self._caps:
            for r in self.results.values():
                self.spent = self.spent + Cost.of(r.usage)
            for c in self._earlier.values():
                self.spent = self.spent + c

    # -- input events ----------------------------------------------------------------------------
    def start(self) -> Decisions:
        """The first decisions: every node whose needs are already done."""
        ready = [
            nid for nid in self.plan.order if nid in self._remaining and not self._waiting[nid]
        ]
        return self._consider(ready, Decisions())

    def finished(self, result: NodeResult) -> Decisions:
        """A started node ended with `result`."""
        nid = result.node_id
        self.running.discard(nid)
        d = Decisions()
        ready = self._finish(result)
        if nid in self._reserved_by:
            del self._reserved_by[nid]
            self._start_spent.pop(nid, None)
            if self._held and not self.stops:
                ready = self._unhold() + ready
        return self._consider(ready, d)

    def killed(self, reason: str = KILLED, *, before: Sequence[str] = ()) -> Decisions:
        """A kill: nothing more starts.

        `before`: nodes this scheduler decided to start that the backend had not started when it
        saw the kill (the local engine checks before each start); they are taken back and the
        first carries the kill, running nodes finish. Without `before` (a cancelled Temporal
        workflow) the run ends now: nodes cut off mid-call and parked nodes end killed.
        """
        d = Decisions()
        if before:
            for nid in before:
                self.running.discard(nid)
                self._reserved_by.pop(nid, None)
                self._start_spent.pop(nid, None)
            node = self.plan.nodes[before[0]]
            self.stops.append(
                NodeResult(node_id=node.id, kind=node.kind, status="killed", error=reason)
            )
            d.done = not self.running
            return d
        for nid in self.plan.order:
            if nid in self.running or nid in self.parked:
                r = NodeResult(
                    node_id=nid, kind=self.plan.nodes[nid].kind, status="killed", error=reason
                )
                self.results[nid] = r
                self.views[nid] = r.view()
                d.settled.append(r)
        self.running.clear()
        self.parked.clear()
        self._reserved_by.clear()
        self._held.clear()
        self._forced = Outcome("killed", reason, {})
        d.done = True
        return d

    def timed_out(self) -> Decisions:
        """max_seconds ran out: the run ends budget_exceeded; unfinished nodes say so."""
        self._timed_out = True
        self.running.clear()
        self._reserved_by.clear()
        self._held.clear()
        return Decisions(done=True)

    def wake(self, node_ids: Iterable[str]) -> Decisions:
        """Run parked nodes again (a decision arrived, or their approval timed out)."""
        ready = []
        for nid in node_ids:
            self.parked.pop(nid, None)
            old = self.results.pop(nid, None)
            if old is not None and self._caps:
                self.spent = self.spent - Cost.of(old.usage)
            self.views.pop(nid, None)
            self._remaining.add(nid)
            ready.append(nid)
        return self._consider(ready, Decisions())

    # -- what the backends read ------------------------------------------------------------------
    def ledger_start(self, node_id: str) -> Cost:
        """What a started node's own budget ledger counts as already used: the real spend plus
        the reservations of the capped nodes that ran beside it when it was admitted."""
        return self._start_spent.get(node_id, self.spent)

    def reserved(self) -> Cost:
        """What running capped nodes hold in reserve, summed."""
        total = _NONE
        for c in self._reserved_by.values():
            total = total + c
        return total

    def result(self, run_id: str, *, started_at: float, duration_s: float) -> RunResult:
        """The run's RunResult once `done` (see assemble_result)."""
        return assemble_result(
            self.plan,
            run_id,
            self.results,
            self.outcome(),
            started_at=started_at,
            duration_s=duration_s,
        )

    def outcome(self) -> Outcome:
        """How the run ended: call once `done` (under a timeout, unfinished nodes get results)."""
        if self._forced is not None:
            return self._forced
        return run_outcome(
            self.plan, self.inputs, self.results, self.views, self.stops, self._timed_out
        )

    # -- the state machine -----------------------------------------------------------------------
    def _finish(self, res: NodeResult) -> list[str]:
        nid = res.node_id
        self.results[nid] = res
        self.views[nid] = res.view()
        self._remaining.discard(nid)
        if self._caps:
            self.spent = self.spent + Cost.of(res.usage) - self._earlier.pop(nid, _NONE)
        if res.status == "waiting":
            self.parked[nid] = res.error or "waiting for approval"
            return []  # its dependants wait with it; independent branches go on
        if res.status in STOPPING and not passed_over(res):
            self.stops.append(res)
        ready = []
        waiting = self._waiting
        for child in self.plan.dependants.get(nid, ()):
            waiting[child] -= 1
            if waiting[child] == 0 and child in self._remaining:
                ready.append(child)
        return ready

    def _consider(self, first: list[str], d: Decisions) -> Decisions:
        """Nodes whose needs are all done: settle them without running (cascading), or start
        them, or hold them for budget room."""
        todo = list(reversed(first))
        plan = self.plan
        while todo:
            nid = todo.pop()
            node = plan.nodes[nid]
            res = self.settled_without_running(node)
            if res is not None:
                d.settled.append(res)
                todo.extend(reversed(self._finish(res)))
            elif not self.stops and self._admit(node):
                self.running.add(nid)
                d.start.append(nid)
        d.done = not self.running
        return d

    def _admit(self, node: PlanNode) -> bool:
        """The budget rule: True to start the node now, False to hold it (see module docstring)."""
        if not self._caps:
            return True
        w = self._worst.get(node.id)
        if w is None:
            w = self._worst[node.id] = worst_case(self.plan, node)
        if not any(getattr(w, dim) > 0 for dim in self._caps):
            return True
        used = self.spent + self.reserved()
        fits = all(
            getattr(used, dim) + getattr(w, dim) <= cap + (1e-12 if dim == "usd" else 0)
            for dim, cap in self._caps.items()
            if getattr(w, dim) > 0
        )
        if not fits and self._reserved_by:
            if node.id not in self._held:
                self._held.append(node.id)
            return False
        if not fits:  # alone: reserve what is left where the worst case does not fit
            w = Cost(
                **{
                    dim: (
                        min(getattr(w, dim), max(cap - getattr(used, dim), 0))
                        if (cap := self._caps.get(dim)) is not None
                        else 0
                    )
                    for dim in _DIMS
                }
            )
        self._start_spent[node.id] = used
        self._reserved_by[node.id] = w
        return True

    def _unhold(self) -> list[str]:
        """Held nodes to try again now that room was freed, in plan order."""
        held, self._held = self._held, []
        return held

    def activation(self, node: PlanNode) -> dict[str, Any]:
        """Names a node's `when` can read: the inputs, the nodes it needs, scope names."""
        views = self.views
        act: dict[str, Any] = {
            "inputs": self.inputs,
            "nodes": {d: views[d] for d in node.deps if d in views},
        }
        if self.scope:
            act.update(self.scope)
        return act

    def settled_without_running(self, node: PlanNode) -> NodeResult | None:
        """A ready node's result when it will not run: skipped (a need skipped, a switch chose
        another branch, `when` false) or failed (`when` could not be evaluated); else None."""
        reason = self._skip_reason(node)
        if reason is None and node.when is not None:
            try:
                if not truthy(node.when.evaluate(self.activation(node))):
                    reason = "its `when` is false"
            except ExprError as e:
                return NodeResult(
                    node_id=node.id, kind=node.kind, status="failed", error=f"when: {e.message}"
                )
        if reason is None:
            return None
        return NodeResult(
            node_id=node.id, kind=node.kind, status="skipped", detail=NodeDetail(reason=reason)
        )

    def _skip_reason(self, node: PlanNode) -> str | None:
        """Why a node whose needs are done will not run, or None when it should run."""
        results = self.results
        for sw in node.switches:
            chosen = results[sw].output
            if results[sw].status != "succeeded":
                return f"switch {sw!r} did not run"
            if not isinstance(chosen, dict) or node.id not in chosen.get("chosen", ()):
                return f"switch {sw!r} chose another branch"
        deps = [d for d in node.deps if d not in node.switches]
        skipped = [d for d in deps if passed_over(results[d])]
        if node.join == "all" and skipped:
            return f"{skipped[0]!r} was skipped"
        if node.join == "any" and deps and len(skipped) == len(deps):
            return "every node it needs was skipped"
        return None


def run_outcome(
    plan: Plan,
    inputs: Mapping[str, Any],
    results: dict[str, NodeResult],
    views: dict[str, dict[str, Any]],
    stop: list[NodeResult],
    timed_out: bool,
) -> Outcome:
    """A run's status, reason and outputs from its node results.

    Under `timed_out`, the nodes that never finished are added to `results` as budget_exceeded.
    """
    status: RunStatus = "succeeded"
    reason: str | None = None
    if timed_out:
        status = "budget_exceeded"
        reason = f"max_seconds {plan.budget.max_seconds:g} reached"
        for nid in plan.order:
            if nid not in results:
                results[nid] = NodeResult(
                    node_id=nid, kind=plan.nodes[nid].kind, status="budget_exceeded", error=reason
                )
    elif stop:
        first = min(stop, key=lambda r: severity(r.status))
        status = STOPPING[first.status]
        if first.status == "denied" and first.detail.get("on_deny") == "escalate":
            status = "escalated"
        reason = f"node {first.node_id!r}: {first.error}"
    else:
        parked = [r for r in results.values() if r.status == "waiting"]
        if parked:
            status = "waiting"
            reason = "; ".join(f"node {r.node_id!r} waits for approval: {r.error}" for r in parked)
    outputs: dict[str, Any] = {}
    if status == "succeeded":
        act = {"inputs": inputs, "nodes": views}
        for name, cv in plan.outputs.items():
            try:
                outputs[name] = cv.evaluate(act)
            except ExprError as e:
                status, reason = "failed", f"output {name!r}: {e.message}"
                break
    return Outcome(status, reason, outputs)


def assemble_result(
    plan: Plan,
    run_id: str,
    results: Mapping[str, NodeResult],
    outcome: Outcome,
    *,
    started_at: float,
    duration_s: float,
) -> RunResult:
    """The RunResult both backends return: node results in plan order, totals summed."""
    usage = Usage()
    for r in results.values():
        usage += r.usage
    return RunResult(
        run_id=run_id,
        workflow=plan.name,
        status=outcome.status,
        outputs=outcome.outputs,
        nodes={nid: results[nid] for nid in plan.order if nid in results},
        usage=usage,
        started_at=started_at,
        duration_s=duration_s,
        reason=outcome.reason,
        profile=plan.profile,
    )
