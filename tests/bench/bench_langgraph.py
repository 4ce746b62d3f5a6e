"""flowrun vs LangGraph, side by side on the same shapes, in one command; prints one table.

Run: `tests/bench/run.sh` (creates `.bench-venv` with flowrun + LangGraph, then runs this file),
or `python tests/bench/bench_langgraph.py [--small] [--repeat N]` in any environment that has
flowrun; LangGraph's columns are left empty ("-") when it is not importable. LangGraph is
never a dependency of flowrun: it lives in the benchmark venv only.

flowrun's "full" column is the stack `flowrun execute` runs: the SQLite store (a checkpoint
after every node, group-committed as shipped: see runner/store/sqlite.py; WAL, synchronous=NORMAL), OTel spans
(exported in the background to an exporter that drops them), the JSONL transcript, call
records, and the spec's policy rules checked before every tool call. LangGraph's "full" column
is the same graph compiled with `InMemorySaver`. "bare" is each engine with none of that.

Every figure is the median of `--repeat` measurements; where both engines run a shape, their
measurements alternate (flowrun, LangGraph, flowrun, ...), so that both see the machine at the
same speed. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import operator
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from opentelemetry.sdk.trace import ReadableSpan  # noqa: E402
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult  # noqa: E402

from runner.backends.local import run_durably  # noqa: E402
from runner.engine.results import RunResult  # noqa: E402
from runner.engine.run import execute, new_run_id  # noqa: E402
from runner.plan.compile import compile_plan  # noqa: E402
from runner.plan.model import Plan  # noqa: E402
from runner.runs import create_run  # noqa: E402
from runner.spec import load_spec  # noqa: E402
from runner.store import Store, open_store  # noqa: E402
from runner.trace.observe import RunObserver, transcript_path  # noqa: E402
from runner.trace.otel import Tracing, setup_tracing  # noqa: E402

SLEEP_S = 0.2  # the simulated model latency of a fan-out branch

TOOLS = f"""
import asyncio

async def noop(i: int = 0) -> dict:
    return {{"i": i}}

async def slow(i: int = 0) -> dict:
    await asyncio.sleep({SLEEP_S})
    return {{"i": i}}
"""

# two CEL rules checked before every tool call of the "full" specs (neither matches a no-op)
POLICIES = """policies:
  - {id: no-negative, when: 'tool == "noop" && args.i < 0', effect: deny, reason: negative}
  - {id: slow-cap, when: 'tool == "slow" && args.i > 1000000', effect: deny, reason: too big}
"""


def header(name: str, policies: bool) -> str:
    return (
        f"apiVersion: flowrun/v1\nkind: Workflow\nmetadata: {{name: {name}}}\n"
        "tools:\n  noop: {impl: lg_bench_tools:noop}\n  slow: {impl: lg_bench_tools:slow}\n"
        + (POLICIES if policies else "")
        + "nodes:\n"
    )


def chain_spec(n: int, policies: bool = True) -> str:
    """n no-op tool nodes in a line; each passes its predecessor's output on through a binding."""
    lines = [header(f"chain-{n}", policies), "  n0: {tool: noop, args: {i: 0}}\n"]
    for i in range(1, n):
        lines.append(
            f'  n{i}: {{tool: noop, args: {{i: "${{{{ nodes.n{i - 1}.output.i + 1 }}}}"}}}}\n'
        )
    return "".join(lines)


def seven_spec(policies: bool = True) -> str:
    """intake → (classify ∥ retrieve) → propose → verify (gate) → act → log."""
    return header("seven", policies) + (
        "  intake: {tool: noop, args: {i: 1}}\n"
        '  classify: {tool: noop, args: {i: "${{ nodes.intake.output.i }}"}}\n'
        '  retrieve: {tool: noop, args: {i: "${{ nodes.intake.output.i }}"}}\n'
        "  propose: {tool: noop, args: "
        '{i: "${{ nodes.classify.output.i + nodes.retrieve.output.i }}"}}\n'
        '  verify: {gate: [{check: "nodes.propose.output.i > 0", message: positive}]}\n'
        '  act: {tool: noop, needs: [verify], args: {i: "${{ nodes.propose.output.i }}"}}\n'
        '  log: {tool: noop, args: {i: "${{ nodes.act.output.i }}"}}\n'
    )


def fanout_spec(n: int, policies: bool = True) -> str:
    """start → n branches that each await SLEEP_S → join (needs all n)."""
    lines = [header(f"fanout-{n}", policies), "  start: {tool: noop, args: {i: 0}}\n"]
    for i in range(n):
        lines.append(
            f'  b{i}: {{tool: slow, args: {{i: "${{{{ nodes.start.output.i + {i} }}}}"}}}}\n'
        )
    lines.append(
        f"  join: {{tool: noop, args: {{i: 0}}, needs: [{', '.join(f'b{i}' for i in range(n))}]}}\n"
    )
    return "".join(lines)


def approval_spec(policies: bool = True) -> str:
    """intake → propose → approve (always asks a person) → act: every run parks at approve."""
    return header("approval", policies) + (
        "  intake: {tool: noop, args: {i: 1}}\n"
        '  propose: {tool: noop, args: {i: "${{ nodes.intake.output.i + 1 }}"}}\n'
        "  approve: {needs: [propose], approval: {summary: 'refund of {{ nodes.propose.output.i }}'}}\n"
        '  act: {tool: noop, needs: [approve], args: {i: "${{ nodes.propose.output.i }}"}}\n'
    )


def big_spec(n: int) -> str:
    """The validation shape of bench_core: layers of tool nodes with bindings, conditions, gates."""
    lines = [header(f"big-{n}", True), "  n0: {tool: noop, args: {i: 0}}\n"]
    for i in range(1, n):
        a, b = max(0, i - 1), max(0, i - 7)
        a, b = (a - 1 if a % 10 == 0 and a else a), (b - 1 if b % 10 == 0 and b else b)
        if i % 10 == 0:
            lines.append(
                f"  n{i}:\n    gate: [{{check: 'nodes.n{a}.output.i >= 0', message: ok}}]\n"
            )
        elif i % 10 == 1:
            lines.append(f"  n{i}: {{tool: noop, needs: [n{a}], args: {{i: 1}}}}\n")
        else:
            lines.append(
                f"  n{i}: {{tool: noop, when: 'nodes.n{b}.output.i >= 0', "
                f'args: {{i: "${{{{ nodes.n{a}.output.i + 1 }}}}"}}}}\n'
            )
    return "".join(lines)


# -- flowrun ---------------------------------------------------------------------------------


class Drop(SpanExporter):
    """Serialises nothing and sends nothing: measures flowrun's span work, not a network."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


@dataclass
class Flowrun:
    """A work folder with the tool module, compiled plans, and one store + tracer (full stack)."""

    folder: Path
    plans: dict[str, Plan] = field(default_factory=dict)
    _store: Store | None = None
    _tracing: Tracing | None = None

    @classmethod
    def make(cls, folder: Path) -> Flowrun:
        (folder / "lg_bench_tools.py").write_text(TOOLS)
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
        return cls(folder)

    def plan(self, name: str, text: str) -> Plan:
        if name not in self.plans:
            path = self.folder / f"{name}.yaml"
            path.write_text(text)
            self.plans[name] = compile_plan(load_spec(path))
        return self.plans[name]

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.folder / "store" / "flowrun.db")
        return self._store

    @property
    def tracing(self) -> Tracing:
        if self._tracing is None:
            tracing = setup_tracing(exporter=Drop())
            assert tracing is not None
            self._tracing = tracing
        return self._tracing

    async def run(self, plan: Plan, full: bool) -> RunResult:
        """One run: bare `execute`, or what `flowrun execute` does (store, spans, transcript)."""
        if not full:
            return await execute(plan, {})
        run_id = new_run_id() + os.urandom(4).hex()
        create_run(self.store, plan, {}, run_id=run_id, responses_path=None)
        obs = RunObserver(
            store=self.store,
            tracing=self.tracing,
            capture="default",
            transcript=transcript_path(self.store.path, run_id),
        )
        return await run_durably(self.store, plan, {}, run_id=run_id, hooks=obs, telemetry=obs)


def fr_chain(fr: Flowrun, n: int, full: bool) -> float:
    """µs per node of one n-node chain run."""
    plan = fr.plan(f"chain{n}{full}", chain_spec(n, policies=full))
    t0 = time.perf_counter()
    result = asyncio.run(fr.run(plan, full))
    dt = time.perf_counter() - t0
    assert result.status == "succeeded", result.reason
    assert result.outputs == {} and result.nodes[f"n{n - 1}"].output == {"i": n - 1}
    return dt / n * 1e6


def fr_runs(fr: Flowrun, runs: int, full: bool) -> float:
    """Runs per second of `runs` concurrent 7-node runs on one loop."""
    plan = fr.plan(f"seven{full}", seven_spec(policies=full))

    async def many() -> float:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(fr.run(plan, full) for _ in range(runs)))
        dt = time.perf_counter() - t0
        assert all(r.status == "succeeded" for r in results), results[0].reason
        assert all(r.nodes["log"].output == {"i": 2} for r in results)
        return dt

    return runs / asyncio.run(many())


def fr_fanout(fr: Flowrun, n: int, full: bool) -> float:
    """Wall time of start → n × sleep(SLEEP_S) → join, divided by the SLEEP_S critical path."""
    plan = fr.plan(f"fanout{n}{full}", fanout_spec(n, policies=full))
    t0 = time.perf_counter()
    result = asyncio.run(fr.run(plan, full))
    dt = time.perf_counter() - t0
    assert result.status == "succeeded", result.reason
    assert sum(1 for r in result.nodes.values() if r.status == "succeeded") == n + 2
    return dt / SLEEP_S


def asyncio_fanout(n: int) -> float:
    """The floor of the fan-out figure: n bare `asyncio.sleep(SLEEP_S)` gathered, no engine."""

    async def fan() -> None:
        await asyncio.gather(*(asyncio.sleep(SLEEP_S) for _ in range(n)))

    t0 = time.perf_counter()
    asyncio.run(fan())
    return (time.perf_counter() - t0) / SLEEP_S


def fr_validate(fr: Flowrun, n: int) -> float:
    """Seconds to load and compile (every check) an n-node spec from its file."""
    path = fr.folder / f"big{n}.yaml"
    path.write_text(big_spec(n))
    t0 = time.perf_counter()
    plan = compile_plan(load_spec(path))
    dt = time.perf_counter() - t0
    assert len(plan.nodes) == n
    return dt


# -- LangGraph (imported only here, and only when installed) ----------------------------------


def langgraph_version() -> str | None:
    try:
        from importlib.metadata import version

        import langgraph  # noqa: F401

        return version("langgraph")
    except Exception:
        return None


# LangGraph reads node annotations with get_type_hints: the state types live at module level
class ChainState(TypedDict):
    i: int


class SevenState(TypedDict, total=False):
    intake: int
    classify: int
    retrieve: int
    propose: int
    act: int
    log: int


class FanState(TypedDict, total=False):
    start: int
    done: Annotated[list[int], operator.add]
    joined: int


class ApprovalState(TypedDict, total=False):
    intake: int
    propose: int
    approved: bool
    act: int


def lg_compile(builder: Any, full: bool) -> Any:
    from langgraph.checkpoint.memory import InMemorySaver

    return builder.compile(checkpointer=InMemorySaver() if full else None)


def lg_config(full: bool, limit: int = 25) -> dict[str, Any]:
    cfg: dict[str, Any] = {"recursion_limit": limit}
    if full:
        cfg["configurable"] = {"thread_id": os.urandom(8).hex()}
    return cfg


def lg_chain_graph(n: int, full: bool) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def step(s: ChainState) -> dict[str, int]:
        return {"i": s["i"] + 1}

    b = StateGraph(ChainState)
    for k in range(n):
        b.add_node(f"n{k}", step)
        b.add_edge(START if k == 0 else f"n{k - 1}", f"n{k}")
    b.add_edge(f"n{n - 1}", END)
    return lg_compile(b, full)


def lg_chain(n: int, full: bool) -> float:
    graph = lg_chain_graph(n, full)
    t0 = time.perf_counter()
    out = asyncio.run(graph.ainvoke({"i": -1}, lg_config(full, n + 10)))
    dt = time.perf_counter() - t0
    assert out["i"] == n - 1, out
    return dt / n * 1e6


def lg_seven_graph(full: bool) -> Any:
    from langgraph.graph import END, START, StateGraph

    async def intake(s: SevenState) -> dict[str, int]:
        return {"intake": 1}

    async def classify(s: SevenState) -> dict[str, int]:
        return {"classify": s["intake"]}

    async def retrieve(s: SevenState) -> dict[str, int]:
        return {"retrieve": s["intake"]}

    async def propose(s: SevenState) -> dict[str, int]:
        return {"propose": s["classify"] + s["retrieve"]}

    async def verify(s: SevenState) -> dict[str, int]:
        return {}

    def passed(s: SevenState) -> str:
        return "act" if s["propose"] > 0 else END

    async def act(s: SevenState) -> dict[str, int]:
        return {"act": s["propose"]}

    async def log(s: SevenState) -> dict[str, int]:
        return {"log": s["act"]}

    b = StateGraph(SevenState)
    for fn in (intake, classify, retrieve, propose, verify, act, log):
        b.add_node(fn.__name__, fn)
    b.add_edge(START, "intake")
    b.add_edge("intake", "classify")
    b.add_edge("intake", "retrieve")
    b.add_edge(["classify", "retrieve"], "propose")
    b.add_edge("propose", "verify")
    b.add_conditional_edges("verify", passed, ["act", END])
    b.add_edge("act", "log")
    b.add_edge("log", END)
    return lg_compile(b, full)


def lg_runs(runs: int, full: bool) -> float:
    graph = lg_seven_graph(full)

    async def many() -> float:
        t0 = time.perf_counter()
        outs = await asyncio.gather(*(graph.ainvoke({}, lg_config(full)) for _ in range(runs)))
        dt = time.perf_counter() - t0
        assert all(o["log"] == 2 for o in outs), outs[0]
        return dt

    return runs / asyncio.run(many())


def lg_fanout(n: int, full: bool) -> float:
    from langgraph.graph import END, START, StateGraph

    async def start(s: FanState) -> dict[str, Any]:
        return {"start": 0}

    def branch(k: int) -> Callable[[FanState], Any]:
        async def slow(s: FanState) -> dict[str, Any]:
            await asyncio.sleep(SLEEP_S)
            return {"done": [s["start"] + k]}

        return slow

    async def join(s: FanState) -> dict[str, Any]:
        return {"joined": len(s["done"])}

    b = StateGraph(FanState)
    b.add_node("start", start)
    b.add_node("join", join)
    b.add_edge(START, "start")
    for k in range(n):
        b.add_node(f"b{k}", branch(k))
        b.add_edge("start", f"b{k}")
    b.add_edge([f"b{k}" for k in range(n)], "join")
    b.add_edge("join", END)
    graph = lg_compile(b, full)
    t0 = time.perf_counter()
    out = asyncio.run(graph.ainvoke({}, lg_config(full)))
    dt = time.perf_counter() - t0
    assert out["joined"] == n, out
    return dt / SLEEP_S


def lg_build(n: int) -> float:
    """Seconds to build and compile an n-node StateGraph (LangGraph's only up-front check)."""
    from langgraph.graph import END, START, StateGraph

    async def step(s: ChainState) -> dict[str, int]:
        return {"i": s["i"] + 1}

    t0 = time.perf_counter()
    b = StateGraph(ChainState)
    for k in range(n):
        b.add_node(f"n{k}", step)
        b.add_edge(START if k == 0 else f"n{k - 1}", f"n{k}")
    b.add_edge(f"n{n - 1}", END)
    b.compile()
    return time.perf_counter() - t0


# -- memory of runs waiting for approval (each side in a fresh process) ----------------------


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def memory_flowrun(runs: int, folder: Path) -> dict[str, float]:
    """Start `runs` durable runs that park at an approval; what stays in memory afterwards."""
    fr = Flowrun.make(folder)
    plan = fr.plan("approval", approval_spec())

    async def park(k: int) -> None:
        results = await asyncio.gather(*(fr.run(plan, True) for _ in range(k)))
        assert all(r.status == "waiting" for r in results), results[0].reason

    asyncio.run(park(20))  # warm up: imports, caches, first spans
    gc.collect()
    rss0 = _rss_kib()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    asyncio.run(park(runs))
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    rss = _rss_kib() - rss0
    waiting = len(fr.store.inbox())
    assert waiting == runs + 20, waiting
    return {"held_kib": held / 1024, "rss_kib": rss, "persisted": waiting - 20}


def memory_langgraph(runs: int) -> dict[str, float]:
    """The same shape parked at `interrupt()` with InMemorySaver (its state lives in memory)."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    async def intake(s: ApprovalState) -> dict[str, Any]:
        return {"intake": 1}

    async def propose(s: ApprovalState) -> dict[str, Any]:
        return {"propose": s["intake"] + 1}

    async def approve(s: ApprovalState) -> dict[str, Any]:
        return {"approved": bool(interrupt(f"refund of {s['propose']}"))}

    async def act(s: ApprovalState) -> dict[str, Any]:
        return {"act": s["propose"]}

    b = StateGraph(ApprovalState)
    for fn in (intake, propose, approve, act):
        b.add_node(fn.__name__, fn)
    b.add_edge(START, "intake")
    b.add_edge("intake", "propose")
    b.add_edge("propose", "approve")
    b.add_edge("approve", "act")
    b.add_edge("act", END)
    saver = InMemorySaver()
    graph = b.compile(checkpointer=saver)

    async def park(k: int) -> None:
        outs = await asyncio.gather(*(graph.ainvoke({}, lg_config(True)) for _ in range(k)))
        assert all("__interrupt__" in o for o in outs), outs[0]

    asyncio.run(park(20))
    gc.collect()
    rss0 = _rss_kib()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    asyncio.run(park(runs))
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    rss = _rss_kib() - rss0
    return {"held_kib": held / 1024, "rss_kib": rss, "persisted": 0}


def memory_in_subprocess(side: str, runs: int) -> dict[str, float] | None:
    """One memory measurement in a fresh interpreter, so the other benchmarks do not blur it."""
    cmd = [sys.executable, __file__, "--memory-only", side, "--runs", str(runs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    if proc.returncode != 0:
        print(f"memory benchmark ({side}) failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    data: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


# -- the table --------------------------------------------------------------------------------


@dataclass
class Sizes:
    chain: int = 500
    runs: int = 1000
    fanout: int = 100
    validate: int = 2000
    waiting: int = 1000

    @classmethod
    def small(cls) -> Sizes:
        return cls(chain=20, runs=20, fanout=10, validate=100, waiting=20)


def median_of(repeat: int, fn: Callable[[], float]) -> float:
    fn()  # warm-up: imports, compiled caches, first store pages
    return statistics.median(fn() for _ in range(repeat))


def medians_paired(
    repeat: int, a: Callable[[], float], b: Callable[[], float] | None
) -> tuple[float, float | None]:
    """The medians of `a` and `b` (when given), measured in turns: a, b, a, b, ... so that a
    drift of the machine's speed over the row (another tenant of the host, a frequency change)
    falls on both sides alike rather than on whichever ran second."""
    if b is None:
        return median_of(repeat, a), None
    a()
    b()  # warm-up of both
    xs: list[float] = []
    ys: list[float] = []
    for _ in range(repeat):
        xs.append(a())
        ys.append(b())
    return statistics.median(xs), statistics.median(ys)


@dataclass
class Row:
    name: str
    unit: str
    flowrun: float | None
    langgraph: float | None
    better: str  # "lower" or "higher"
    target: str = ""

    def ratio(self) -> float | None:
        if self.flowrun is None or self.langgraph is None or self.langgraph == 0:
            return None
        return self.flowrun / self.langgraph


def collect(sizes: Sizes, repeat: int, with_langgraph: bool, memory: bool = True) -> list[Row]:
    """Every benchmark, flowrun and (when installed) LangGraph side by side."""
    lg = with_langgraph and langgraph_version() is not None
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        fr = Flowrun.make(Path(tmp))

        def full_and_bare(
            name: str,
            unit: str,
            flowrun: Callable[[bool], float],
            langgraph: Callable[[bool], float],
            better: str,
            target: str,
            full_label: str = "store+tracing+policy",
        ) -> None:
            """Two rows: both engines with everything on, then both bare. `name` takes the
            labels through {fr} and {lg}; `target` is for the full row only."""
            for full in (True, False):
                fr_label, lg_label = (full_label, "InMemorySaver") if full else ("bare", "bare")
                ours, theirs = medians_paired(
                    repeat,
                    lambda: flowrun(full),  # noqa: B023 (called here)
                    (lambda: langgraph(full)) if lg else None,  # noqa: B023
                )
                rows.append(
                    Row(
                        name.format(fr=fr_label, lg=lg_label),
                        unit,
                        ours,
                        theirs,
                        better,
                        target if full else "",
                    )
                )

        c, r, f = sizes.chain, sizes.runs, sizes.fanout
        full_and_bare(
            f"{c}-node chain, µs/node (flowrun {{fr}} | LangGraph {{lg}})",
            "µs/node",
            lambda full: fr_chain(fr, c, full),
            lambda full: lg_chain(c, full),
            "lower",
            "≤ 0.25×",
        )
        full_and_bare(
            f"7-node workflow × {r} concurrent runs (flowrun {{fr}} | LangGraph {{lg}})",
            "runs/s",
            lambda full: fr_runs(fr, r, full),
            lambda full: lg_runs(r, full),
            "higher",
            "≥ 3×",
        )
        full_and_bare(
            f"{f}-way fan-out × {SLEEP_S:g} s await, wall ÷ critical path ({{fr}} | {{lg}})",
            "×",
            lambda full: fr_fanout(fr, f, full),
            lambda full: lg_fanout(f, full),
            "lower",
            "≤ 1.02",
            full_label="full",
        )
        rows.append(
            Row(
                f"{f} × asyncio.sleep({SLEEP_S:g}) gathered, no engine: the floor of the row above",
                "×",
                median_of(repeat, lambda: asyncio_fanout(f)),
                None,
                "lower",
            )
        )
        v = sizes.validate
        ours, theirs = medians_paired(
            repeat, lambda: fr_validate(fr, v), (lambda: lg_build(v)) if lg else None
        )
        rows.append(
            Row(
                f"validate a {v}-node spec, s (flowrun load+compile | LangGraph build+compile)",
                "s",
                ours,
                theirs,
                "lower",
                "< 1 s",
            )
        )
    if memory:
        w = sizes.waiting
        fm = memory_in_subprocess("flowrun", w)
        lm = memory_in_subprocess("langgraph", w) if lg else None
        rows.append(
            Row(
                f"{w} runs waiting for approval: heap held after gc, KiB (tracemalloc)",
                "KiB",
                fm["held_kib"] if fm else None,
                lm["held_kib"] if lm else None,
                "lower",
            )
        )
        rows.append(
            Row(
                f"{w} runs waiting for approval: RSS growth, KiB (the burst's peak included)",
                "KiB",
                fm["rss_kib"] if fm else None,
                lm["rss_kib"] if lm else None,
                "lower",
            )
        )
        rows.append(
            Row(
                f"{w} runs waiting for approval: persisted in the store",
                "runs",
                fm["persisted"] if fm else None,
                lm["persisted"] if lm else None,
                "higher",
            )
        )
    return rows


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"


def render(rows: list[Row], repeat: int) -> str:
    lg = langgraph_version()
    load = os.getloadavg()
    out = [
        f"flowrun vs LangGraph — Python {platform.python_version()}, flowrun "
        f"{_flowrun_version()}, LangGraph {lg or 'not installed'}; {os.cpu_count()} CPUs "
        f"({_cpu_model()}); load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"median of {repeat}",
        "",
    ]
    w = max(len(r.name) for r in rows)
    out.append(f"{'benchmark':<{w}}  {'flowrun':>10}  {'LangGraph':>10}  {'ratio':>7}  target")
    for r in rows:
        ratio = r.ratio()
        out.append(
            f"{r.name:<{w}}  {fmt(r.flowrun):>10}  {fmt(r.langgraph):>10}  "
            f"{(f'{ratio:.2f}×' if ratio is not None else '-'):>7}  {r.target}"
        )
    out.append("")
    out.append(
        "ratio = flowrun ÷ LangGraph (lower is better for time and memory, higher for runs/s)"
    )
    return "\n".join(out)


def _flowrun_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flowrun")
    except PackageNotFoundError:
        return "source"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="tiny sizes (smoke run)")
    ap.add_argument("--repeat", type=int, default=5, help="measurements per figure (median)")
    ap.add_argument("--no-langgraph", action="store_true", help="flowrun's column only")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON too")
    ap.add_argument("--memory-only", choices=["flowrun", "langgraph"], help=argparse.SUPPRESS)
    ap.add_argument("--runs", type=int, default=1000, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_only:
        with tempfile.TemporaryDirectory() as tmp:
            if args.memory_only == "flowrun":
                data = memory_flowrun(args.runs, Path(tmp))
            else:
                data = memory_langgraph(args.runs)
        print(json.dumps(data))
        return
    sizes = Sizes.small() if args.small else Sizes()
    rows = collect(sizes, args.repeat, not args.no_langgraph)
    print(render(rows, args.repeat))
    if args.json:
        print(json.dumps([r.__dict__ for r in rows]))


if __name__ == "__main__":
    main()
