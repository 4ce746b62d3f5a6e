"""Run one case in-process: fresh fixture, faults woven into a copy of the plan, measured result."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.engine.context import Envelope
from runner.engine.results import RunResult
from runner.engine.services import MemoryServices
from runner.errors import UsageError
from runner.evals.cases import Case, Fault, Fixture
from runner.expr.cel import ExprError, truthy
from runner.models.responses import RecordedResponses
from runner.plan.model import Plan, PlanNode, ToolStep
from runner.plan.tools import ImplError, import_callable
from runner.runs import run_in_memory

INVALID_JSON = "Sure! Here is what I think: {not json"
MALFORMED: dict[str, Any] = {"malformed": True, "note": "injected by flowrun eval"}


@dataclasses.dataclass(kw_only=True)
class RunRecord:
    """What one run of one case did and whether it met the case's expectations."""

    case_id: str
    kind: str
    repeat: int
    status: str
    expected_status: str
    reason: str | None
    passed: bool
    failures: list[str]
    latency_s: float
    cost_usd: float
    tokens: int
    llm_calls: int
    tool_calls: int
    calls_by_tool: dict[str, int]
    denied_tools: list[str]
    violations: int
    faulted: bool
    node_status: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _FaultState:
    """Counts down a fault's failures across retries of the same run."""

    def __init__(self, fault: Fault) -> None:
        self.error = fault.error
        self.timeout = fault.timeout
        self.malformed = fault.malformed


def _faulty(real: Any, is_async: bool, state: _FaultState) -> Any:
    """A callable with failures in front: raise, hang past the timeout, or return bad data."""

    async def faulty(**kwargs: Any) -> Any:
        if state.error > 0:
            state.error -= 1
            raise RuntimeError("injected fault: the tool failed")
        if state.timeout > 0:
            state.timeout -= 1
            await asyncio.sleep(3600)  # cancelled by the node's timeout
        if state.malformed > 0:
            state.malformed -= 1
            return dict(MALFORMED)
        if is_async:
            return await real(**kwargs)
        return await asyncio.to_thread(real, **kwargs)

    return faulty


def _wrap(step: ToolStep, state: _FaultState) -> ToolStep:
    """The tool with the fault in front of its impl, and of its preview (what a dry run calls)."""
    preview = step.preview_fn
    if preview is not None:
        preview = _faulty(preview, inspect.iscoroutinefunction(preview), state)
    return dataclasses.replace(
        step, fn=_faulty(step.fn, step.is_async, state), is_async=True, preview_fn=preview
    )


def faulted_plan(plan: Plan, faults: list[Fault]) -> Plan:
    """A copy of the plan whose tools fail as the case says; the original is untouched."""
    tool_faults = [f for f in faults if f.error or f.timeout or f.malformed or f.node_timeout]
    if not tool_faults:
        return plan
    nodes: dict[str, PlanNode] = dict(plan.nodes)
    for f in tool_faults:
        state = _FaultState(f)  # one counter per fault, shared by every node it hits
        for nid, node in list(nodes.items()):
            hit = f.node == nid or (
                f.tool is not None
                and (
                    (node.tool is not None and node.tool.name == f.tool)
                    or (
                        node.map is not None
                        and node.map.inner.tool is not None
                        and node.map.inner.tool.name == f.tool
                    )
                )
            )
            if not hit:
                continue
            timeout = f.node_timeout if f.node_timeout is not None else node.timeout
            if node.tool is not None:
                step = (
                    _wrap(node.tool, state) if (f.error or f.timeout or f.malformed) else node.tool
                )
                nodes[nid] = dataclasses.replace(node, tool=step, timeout=timeout)
            elif node.map is not None and node.map.inner.tool is not None:
                inner = node.map.inner
                assert inner.tool is not None
                step = (
                    _wrap(inner.tool, state)
                    if (f.error or f.timeout or f.malformed)
                    else inner.tool
                )
                inner = dataclasses.replace(inner, tool=step, timeout=timeout)
                nodes[nid] = dataclasses.replace(
                    node, map=dataclasses.replace(node.map, inner=inner)
                )
            elif f.node_timeout is not None:
                nodes[nid] = dataclasses.replace(node, timeout=timeout)
    return dataclasses.replace(plan, nodes=nodes)


def response_lines(case: Case) -> list[dict[str, Any]]:
    """The case's recorded answers as JSONL objects, with model faults put in front."""
    entries: list[dict[str, Any]] = []
    if case.responses_path is not None:
        rec = RecordedResponses.load(case.responses_path)
        for e in rec.entries():
            d: dict[str, Any] = {"node": e.node, "attempt": e.attempt}
            if e.index is not None:
                d["index"] = e.index
            if e.error is not None:
                d["error"] = e.error
            else:
                d["content"] = e.content
            if e.usage is not None:
                d["usage"] = dataclasses.asdict(e.usage)
            if e.model is not None:
                d["model"] = e.model
            entries.append(d)
    elif isinstance(case.model.responses, list):
        last: dict[tuple[str, int | None], int] = {}
        for r in case.model.responses:
            d = r.model_dump(exclude_none=True)
            slot = (r.node, r.index)
            d["attempt"] = r.attempt or last.get(slot, 0) + 1
            last[slot] = d["attempt"]
            entries.append(d)
    shift: dict[str, list[dict[str, Any]]] = {}
    for f in case.model.faults:
        if f.node is None:
            continue
        front = shift.setdefault(f.node, [])
        front += [{"node": f.node, "error": "rate_limit"} for _ in range(f.provider_error)]
        front += [
            {
                "node": f.node,
                "content": INVALID_JSON,
                "usage": {"prompt_tokens": 400, "completion_tokens": 12},
            }
            for _ in range(f.invalid_json)
        ]
    if not shift:
        return entries
    out: list[dict[str, Any]] = []
    for front in shift.values():
        for i, d in enumerate(front, start=1):
            out.append({**d, "attempt": i})
    for d in entries:
        n = len(shift.get(d["node"], ())) if d.get("index") is None else 0
        out.append({**d, "attempt": d["attempt"] + n})
    return out


@contextlib.contextmanager
def _fixture(fixture: Fixture | None, workdir: Path, name: str, case_dir: Path) -> Iterator[None]:
    """A freshly seeded resource for one run, its path in the env var for the run's duration.

    The seed is looked up like a tool `impl`: from the case file's folder up to the project root.
    """
    if fixture is None:
        yield
        return
    try:
        fn = import_callable(fixture.seed, case_dir)
    except ImplError as e:
        raise UsageError(f"fixture seed {fixture.seed!r} cannot be imported: {e}") from None
    path = workdir / f"{name}.db"
    fn(path)
    old = os.environ.get(fixture.env)
    os.environ[fixture.env] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(fixture.env, None)
        else:
            os.environ[fixture.env] = old


def _tool_name(plan: Plan, node_id: str) -> str | None:
    node = plan.nodes.get(node_id)
    if node is None:
        return None
    if node.tool is not None:
        return node.tool.name
    if node.map is not None and node.map.inner.tool is not None:
        return node.map.inner.tool.name
    return None


def run_case(plan: Plan, case: Case, *, repeat: int, workdir: Path) -> RunRecord:
    """Run the case once on a fresh fixture and judge it against its expectations."""
    run_id = f"eval-{case.id}-{repeat}"
    services = MemoryServices()
    services.writes = case.model.writes
    for node, verdict in case.model.approvals.items():
        services.approvals[(run_id, node)] = {
            "run_id": run_id,
            "node_id": node,
            "status": "approved" if verdict == "approve" else "rejected",
            "decided_by": "flowrun-eval",
            "decision": None,
            "reason": f"{verdict} (eval case {case.id})",
        }
    recorded = None
    lines = response_lines(case)
    if lines or case.model.responses is not None:
        rfile = workdir / f"{case.id}-{repeat}.jsonl"
        rfile.write_text("".join(json.dumps(d) + "\n" for d in lines), encoding="utf-8")
        try:
            recorded = RecordedResponses.load(rfile)
        except UsageError as e:
            raise UsageError(f"{case.file}:{case.line}: case {case.id!r}: {e.message}") from None
    fplan = faulted_plan(plan, case.model.faults)
    with _fixture(case.fixture, workdir, f"{case.id}-{repeat}", Path(case.file).resolve().parent):
        result = asyncio.run(
            run_in_memory(
                fplan,
                case.model.input,
                responses=recorded,
                run_id=run_id,
                services=services,
                envelope=Envelope(
                    live=False,  # evals never write for real: writes run their preview
                    actor=case.model.actor,
                    tenant=case.model.tenant,
                    scopes=tuple(case.model.scopes or ()),
                ),
            )
        )
    return judge(plan, case, result, services, repeat)


def judge(
    plan: Plan, case: Case, result: RunResult, services: MemoryServices, repeat: int
) -> RunRecord:
    """Measure a run and check it against the case: status, assertions, tools, cost, latency."""
    e = case.expect
    calls: dict[str, int] = {}
    denied: list[str] = []
    for nid, res in result.nodes.items():
        name = _tool_name(plan, nid)
        if name is None:
            continue
        if res.usage.tool_calls:
            calls[name] = calls.get(name, 0) + res.usage.tool_calls
        if res.status == "denied" and res.kind in ("tool", "map"):
            denied.append(name)
    failures: list[str] = []
    if result.status != e.status:
        why = f" ({result.reason})" if result.reason else ""
        failures.append(f"status {result.status}{why}, expected {e.status}")
    writes = {n for n, t in plan.loaded.spec.tools.items() if t.effect == "write"}
    violations = 0
    for t in e.must_call:
        if not calls.get(t):
            failures.append(f"tool {t!r} was not called")
    for t in [*e.must_not_call, *e.must_be_denied]:
        if calls.get(t):
            failures.append(f"tool {t!r} was called {calls[t]}× but must not be")
            if t in writes:
                violations += calls[t]
    for t in e.must_be_denied:
        if t not in denied:
            failures.append(f"tool {t!r} was not denied")
    u = result.usage
    if e.max_cost_usd is not None and u.cost_usd > e.max_cost_usd:
        failures.append(f"cost ${u.cost_usd:.6f} > max ${e.max_cost_usd:g}")
    if e.max_latency_s is not None and result.duration_s > e.max_latency_s:
        failures.append(f"latency {result.duration_s:.3f}s > max {e.max_latency_s:g}s")
    if e.max_tool_calls is not None and u.tool_calls > e.max_tool_calls:
        failures.append(f"{u.tool_calls} tool calls > max {e.max_tool_calls}")
    if e.max_llm_calls is not None and u.llm_calls > e.max_llm_calls:
        failures.append(f"{u.llm_calls} LLM calls > max {e.max_llm_calls}")
    act = _activation(plan, case, result, calls, services)
    for expr in case.asserts:
        try:
            ok = truthy(expr.evaluate(act))
        except ExprError as err:
            failures.append(f"assert `{expr.source}`: {err.message}")
            continue
        if not ok:
            failures.append(f"assert `{expr.source}` is false")
    return RunRecord(
        case_id=case.id,
        kind=case.kind,
        repeat=repeat,
        status=result.status,
        expected_status=e.status,
        reason=result.reason,
        passed=not failures,
        failures=failures,
        latency_s=result.duration_s,
        cost_usd=u.cost_usd,
        tokens=u.tokens,
        llm_calls=u.llm_calls,
        tool_calls=u.tool_calls,
        calls_by_tool=calls,
        denied_tools=denied,
        violations=violations,
        faulted=bool(case.model.faults),
        node_status={nid: r.status for nid, r in result.nodes.items()},
    )


def _activation(
    plan: Plan,
    case: Case,
    result: RunResult,
    calls: dict[str, int],
    services: MemoryServices,
) -> dict[str, Any]:
    """What assertions read: inputs, outputs, nodes (not_run when never reached), run, calls."""
    nodes: dict[str, Any] = {}
    for nid in plan.order:
        res = result.nodes.get(nid)
        if res is None:
            nodes[nid] = {"status": "not_run", "output": None, "error": None, "attempts": 0}
        else:
            nodes[nid] = {**res.view(), "attempts": res.attempts}
    u = result.usage
    return {
        "inputs": case.model.input,
        "outputs": result.outputs,
        "nodes": nodes,
        "run": {
            "status": result.status,
            "reason": result.reason,
            "cost_usd": u.cost_usd,
            "tokens": u.tokens,
            "llm_calls": u.llm_calls,
            "tool_calls": u.tool_calls,
            "latency_s": result.duration_s,
        },
        "tools": {name: calls.get(name, 0) for name in plan.loaded.spec.tools},
        "calls": [
            {
                "tool": row.get("tool"),
                "node": row.get("node_id"),
                "args": row.get("args") or {},
                "status": row.get("status"),
            }
            for row in services.ledger.values()
        ],
    }


def new_workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="flowrun-eval-")
