"""Properties of the one scheduler (runner/engine/scheduler.py), driven without any backend.

Random DAGs of tool nodes finish in a random order with random outcomes; whatever happens,
every node settles at most once (exactly once when nothing stops or parks), nothing starts
before its needs or after a stop, the outcome follows the severity order, and budget admission
never lets parallel capped nodes reserve past a cap.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.engine.results import STOPPING, NodeResult, Usage, severity
from runner.engine.scheduler import Cost, Decisions, Scheduler, worst_case
from runner.plan.model import Plan
from tests.behaviour.conftest import plan_of

STATUSES = ["succeeded", "failed", "escalated", "denied", "budget_exceeded", "waiting", "skipped"]


def dag_spec(draw: st.DrawFn, *, budget: str = "") -> str:
    n = draw(st.integers(1, 8))
    lines = [budget, "nodes:"] if budget else ["nodes:"]
    for i in range(n):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        join = draw(st.sampled_from(["all", "any"]))
        attempts = draw(st.integers(1, 3))
        when = draw(st.sampled_from([None, f"inputs.w{i}"]))
        body = ["tool: echo", f"args: {{value: {i}}}", f"retry: {{max_attempts: {attempts}}}"]
        if deps:
            body.append(f"needs: [{', '.join(f'n{d}' for d in sorted(deps))}]")
            body.append(f"join: {join}")
        if when is not None:
            body.append(f"when: '{when}'")
        lines.append(f"  n{i}: {{{', '.join(body)}}}")
    return "\n".join(lines) + "\n"


class Sim:
    """Drives a scheduler and checks its invariants after every decision."""

    def __init__(self, plan: Plan, inputs: dict[str, Any]) -> None:
        self.plan = plan
        self.sched = Scheduler(plan, inputs)
        self.running: list[str] = []
        self.settled: list[str] = []
        self.caps = {
            k: v
            for k, v in {
                "usd": plan.budget.max_usd,
                "tokens": plan.budget.max_tokens,
                "llm_calls": plan.budget.max_llm_calls,
                "tool_calls": plan.budget.max_tool_calls,
            }.items()
            if v is not None
        }

    def apply(self, d: Decisions, stopped_before: bool) -> None:
        if stopped_before:
            assert d.start == [], "a node started after a stop"
        for r in d.settled:
            self.settled.append(r.node_id)
        for nid in d.start:
            for dep in self.plan.nodes[nid].deps:
                res = self.sched.results.get(dep)
                assert res is not None and res.status != "waiting", f"{nid} started before {dep}"
            assert nid not in self.running
            self.running.append(nid)
        assert d.done == (not self.running)
        assert set(self.running) == self.sched.running
        capped = [n for n in self.running if self._capped(n)]
        if len(capped) > 1:
            used = self.sched.spent + self.sched.reserved()
            for dim, cap in self.caps.items():
                assert getattr(used, dim) <= cap + 1e-9, (dim, used, cap)

    def _capped(self, nid: str) -> bool:
        w = worst_case(self.plan, self.plan.nodes[nid])
        return any(getattr(w, dim) > 0 for dim in self.caps)

    def finish(self, nid: str, status: str, usage: Usage) -> None:
        self.running.remove(nid)
        self.settled.append(nid)
        before = bool(self.sched.stops)
        node = self.plan.nodes[nid]
        res = NodeResult(node_id=nid, kind=node.kind, status=status, usage=usage)  # type: ignore[arg-type]
        self.apply(self.sched.finished(res), before)


def _usage(draw: st.DrawFn, sim: Sim, nid: str) -> Usage:
    """Real spend within the node's worst case (what its own per-call ledger allows)."""
    w = worst_case(sim.plan, sim.plan.nodes[nid])
    tools = int(min(w.tool_calls, 3))
    return Usage(tool_calls=draw(st.integers(0, tools)))


def run_to_end(draw: st.DrawFn, plan: Plan) -> Sim:
    sim = Sim(plan, {f"w{i}": draw(st.booleans()) for i in range(len(plan.order))})
    sim.apply(sim.sched.start(), False)
    while sim.running:
        nid = draw(st.sampled_from(sim.running))
        status = draw(st.sampled_from(STATUSES))
        sim.finish(nid, status, _usage(draw, sim, nid))
    return sim


def check_outcome(sim: Sim) -> None:
    sched = sim.sched
    assert len(sim.settled) == len(set(sim.settled)), "a node settled twice"
    assert set(sim.settled) == set(sched.results)
    outcome = sched.outcome()
    if sched.stops:
        worst = min(sched.stops, key=lambda r: severity(r.status))
        assert outcome.status == STOPPING[worst.status]
        assert outcome.reason is not None and repr(worst.node_id) in outcome.reason
        assert all(severity(r.status) >= severity(worst.status) for r in sched.stops)
    elif sched.parked:
        assert outcome.status == "waiting"
    else:
        assert outcome.status == "succeeded"
        assert set(sched.results) == set(sim.plan.order), "a node never settled"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_dags_settle_each_node_once_and_end_by_severity(data: st.DataObject) -> None:
    plan = plan_of(dag_spec(data.draw))
    check_outcome(run_to_end(data.draw, plan))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.integers(0, 6))
def test_budget_admission_never_reserves_past_a_cap_in_parallel(
    data: st.DataObject, cap: int
) -> None:
    plan = plan_of(dag_spec(data.draw, budget=f"budget: {{max_tool_calls: {cap}}}"))
    sim = run_to_end(data.draw, plan)
    check_outcome(sim)
    spent = sum(r.usage.tool_calls for r in sim.sched.results.values())
    assert spent == sim.sched.spent.tool_calls


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_kill_at_any_point_stops_new_starts_and_ends_by_severity(data: st.DataObject) -> None:
    plan = plan_of(dag_spec(data.draw))
    sim = Sim(plan, {f"w{i}": data.draw(st.booleans()) for i in range(len(plan.order))})
    kill_at = data.draw(st.integers(0, len(plan.order)))
    d, finished = sim.sched.start(), 0
    while True:
        if finished == kill_at and d.start:  # the backend saw a kill before starting these
            taken = d.start[data.draw(st.integers(0, len(d.start) - 1)) :]
            d.start = [n for n in d.start if n not in taken]
            d.done = sim.sched.killed(before=taken).done
            sim.apply(d, False)
        else:
            sim.apply(d, bool(sim.sched.stops))  # after the kill (a stop): no start ever
        if not sim.running:
            break
        nid = data.draw(st.sampled_from(sim.running))
        sim.running.remove(nid)
        sim.settled.append(nid)
        res = NodeResult(
            node_id=nid,
            kind="tool",
            status=data.draw(st.sampled_from(STATUSES)),  # type: ignore[arg-type]
        )
        d, finished = sim.sched.finished(res), finished + 1
    check_outcome(sim)
    if any(r.status == "killed" for r in sim.sched.stops):
        assert sim.sched.outcome().status in ("budget_exceeded", "killed")


def test_a_capped_node_that_does_not_fit_waits_for_room_then_starts() -> None:
    plan = plan_of(
        """
        budget: {max_tool_calls: 5}
        nodes:
          a: {tool: echo, args: {value: 1}, retry: {max_attempts: 2}}
          b: {tool: echo, args: {value: 2}, retry: {max_attempts: 2}}
          c: {tool: echo, args: {value: 3}, retry: {max_attempts: 2}}
        """
    )
    sched = Scheduler(plan, {})
    assert sched.start().start == ["a", "b"]  # two worst cases of 2 fit in 5, a third does not
    assert sched.reserved() == Cost(tool_calls=4)
    d = sched.finished(ok("a", tool_calls=1))  # a really used 1: room for c's worst case of 2
    assert (d.start, sched.spent.tool_calls, sched.reserved().tool_calls) == (["c"], 1, 4)
    assert sched.ledger_start("c") == Cost(tool_calls=3)  # its own calls count b's reservation
    sched.finished(ok("b", tool_calls=2))
    assert sched.finished(ok("c", tool_calls=1)).done
    assert sched.outcome().status == "succeeded"


def test_a_capped_node_too_big_for_what_is_left_runs_alone() -> None:
    plan = plan_of(
        """
        budget: {max_tool_calls: 3}
        nodes:
          a: {tool: echo, args: {value: 1}, retry: {max_attempts: 5}}
          b: {tool: echo, args: {value: 2}, retry: {max_attempts: 5}}
          free: {tool: echo, args: {value: 3}, when: 'inputs.go'}
        """
    )
    sched = Scheduler(plan, {"go": False})
    d = sched.start()
    assert d.start == ["a"] and [r.node_id for r in d.settled] == ["free"]
    assert sched.reserved() == Cost(tool_calls=3)  # all that is left: b waits
    d = sched.finished(ok("a", tool_calls=2))
    assert d.start == ["b"] and sched.ledger_start("b") == Cost(tool_calls=2)
    assert sched.finished(ok("b", tool_calls=1)).done


def test_a_stop_drops_the_held_nodes() -> None:
    plan = plan_of(
        """
        budget: {max_tool_calls: 2}
        nodes:
          a: {tool: echo, args: {value: 1}, retry: {max_attempts: 2}}
          b: {tool: echo, args: {value: 2}, retry: {max_attempts: 2}}
        """
    )
    sched = Scheduler(plan, {})
    assert sched.start().start == ["a"]
    d = sched.finished(NodeResult(node_id="a", kind="tool", status="failed", error="boom"))
    assert d.start == [] and d.done
    assert (sched.outcome().status, sched.outcome().reason) == ("failed", "node 'a': boom")


def test_a_kill_before_a_start_takes_the_batch_back_and_ends_killed() -> None:
    plan = plan_of(
        "nodes:\n  a: {tool: echo, args: {value: 1}}\n  b: {tool: echo, args: {value: 2}}\n"
    )
    sched = Scheduler(plan, {})
    d = sched.start()
    assert sched.killed(before=d.start[1:]).done is False  # a runs on
    assert sched.finished(ok("a")).done
    out = sched.outcome()
    assert (out.status, out.reason, set(sched.results)) == (
        "killed",
        "node 'b': killed on request",
        {"a"},
    )


def test_a_cancelled_run_kills_running_and_parked_nodes() -> None:
    plan = plan_of(
        "nodes:\n  a: {tool: echo, args: {value: 1}}\n  b: {tool: echo, args: {value: 2}}\n"
        "  c: {tool: echo, args: {value: 3}, needs: [a]}\n"
    )
    sched = Scheduler(plan, {})
    sched.start()
    sched.finished(NodeResult(node_id="a", kind="tool", status="waiting", error="approve"))
    d = sched.killed("cancelled")
    assert d.done and [r.node_id for r in d.settled] == ["a", "b"]
    assert sched.outcome().status == "killed" and "c" not in sched.results


def test_a_parked_node_woken_runs_again_and_its_dependants_follow() -> None:
    plan = plan_of(
        "nodes:\n  a: {tool: echo, args: {value: 1}}\n  b: {tool: echo, args: {value: 2}, needs: [a]}\n"
    )
    sched = Scheduler(plan, {})
    sched.start()
    d = sched.finished(NodeResult(node_id="a", kind="tool", status="waiting", error="approve"))
    assert d.done and sched.parked == {"a": "approve"}
    assert sched.outcome().status == "waiting"
    assert sched.wake(["a"]).start == ["a"] and "a" not in sched.results
    assert sched.finished(ok("a")).start == ["b"]
    assert sched.finished(ok("b")).done and sched.outcome().status == "succeeded"


def test_a_timeout_ends_budget_exceeded_with_the_unfinished_nodes() -> None:
    plan = plan_of(
        "budget: {max_seconds: 1}\nnodes:\n  a: {tool: echo, args: {value: 1}}\n"
        "  b: {tool: echo, args: {value: 2}, needs: [a]}\n"
    )
    sched = Scheduler(plan, {})
    sched.start()
    assert sched.timed_out().done
    out = sched.outcome()
    assert out.status == "budget_exceeded" and out.reason == "max_seconds 1 reached"
    assert {n: r.status for n, r in sched.results.items()} == {
        "a": "budget_exceeded",
        "b": "budget_exceeded",
    }


def test_completed_results_on_resume_are_not_started_again() -> None:
    plan = plan_of(
        "budget: {max_tool_calls: 2}\nnodes:\n  a: {tool: echo, args: {value: 1}}\n"
        "  b: {tool: echo, args: {value: 2}, needs: [a]}\n"
    )
    sched = Scheduler(plan, {}, results={"a": ok("a", tool_calls=1)})
    assert sched.start().start == ["b"] and sched.spent.tool_calls == 1


def ok(nid: str, **usage: Any) -> NodeResult:
    return NodeResult(node_id=nid, kind="tool", status="succeeded", usage=Usage(**usage))


@pytest.mark.parametrize("status", ["failed", "budget_exceeded", "denied"])
def test_a_stopping_result_in_a_settled_when_stops_later_starts(status: str) -> None:
    plan = plan_of(
        "nodes:\n  a: {tool: echo, args: {value: 1}}\n  b: {tool: echo, args: {value: 2}, needs: [a]}\n"
        "  c: {tool: echo, args: {value: 3}, needs: [a]}\n"
    )
    sched = Scheduler(plan, {})
    sched.start()
    d = sched.finished(NodeResult(node_id="a", kind="tool", status=status, error="no"))  # type: ignore[arg-type]
    assert d.start == [] and d.done and sched.outcome().status == STOPPING[status]
