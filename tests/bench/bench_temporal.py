"""Temporal backend benchmarks: per-node overhead and runs/s, interpreter vs local vs hand-written.

Run: `.venv/bin/python tests/bench/bench_temporal.py [--small]`. Starts its own dev server
(`temporal server start-dev`, in-memory) and an in-process worker; prints figures, asserts
nothing. Three ways to run the same chain of no-op tool nodes:

- local:        `flowrun execute` in-process (asyncio), recording in the SQLite store;
- interpreter:  the generic interpreter workflow (`flowrun.interpret`) on Temporal;
- hand-written: a workflow that calls the same `flowrun.node` activities in a fixed order,
                with no interpretation (the floor for any Temporal backend).

A chain with a gate between every two tool nodes shows what pure nodes cost (no round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from temporalio import workflow  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.worker import UnsandboxedWorkflowRunner, Worker  # noqa: E402

from runner.backends.local import run_durably  # noqa: E402
from runner.engine.results import RunResult  # noqa: E402
from runner.plan.compile import compile_plan  # noqa: E402
from runner.plan.model import Plan  # noqa: E402
from runner.runs import create_run  # noqa: E402
from runner.spec import load_spec  # noqa: E402
from runner.store import Store, open_store  # noqa: E402
from runner.temporal import FINISH_ACTIVITY, NODE_ACTIVITY  # noqa: E402
from runner.temporal.activities import ACTIVITIES  # noqa: E402
from runner.temporal.client import Target, start  # noqa: E402
from runner.temporal.types import FinishTask, NodeTask, RunInput  # noqa: E402
from runner.temporal.worker import sandbox_runner  # noqa: E402
from runner.temporal.workflow import Interpreter  # noqa: E402
from tests.bench.bench_core import TOOLS, chain_spec, seven_node_spec  # noqa: E402
from tests.temporal.conftest import free_port  # noqa: E402
from tests.temporal.inproc import run_input  # noqa: E402

QUEUE = "bench"
UNSANDBOXED = "--unsandboxed" in sys.argv
_ids = itertools.count(1)


@workflow.defn(name="bench.direct", sandboxed=False)
class Direct:
    """The same activities, called in a fixed order: no plan, no CEL, no scheduling."""

    @workflow.run
    async def run(self, args: dict[str, Any]) -> None:
        run = RunInput(**args["run"])
        views: dict[str, dict[str, Any]] = {}
        prev: str | None = None
        for node_id in args["order"]:
            task = NodeTask(run=run, node_id=node_id, views=views, spent={})
            out = await workflow.execute_activity(
                NODE_ACTIVITY,
                task,
                result_type=dict,
                start_to_close_timeout=timedelta(seconds=60),
                heartbeat_timeout=timedelta(seconds=10),
            )
            prev = node_id
            views = {prev: {"output": out["output"], "status": out["status"], "error": None}}
        await workflow.execute_activity(
            FINISH_ACTIVITY,
            FinishTask(run_id=run.run_id, store_path=run.store_path, nodes=[], run=args["result"],
                       terminal=True),
            start_to_close_timeout=timedelta(seconds=60),
        )  # fmt: skip


@contextmanager
def dev_server() -> Iterator[str]:
    port = free_port()
    cli = str(Path(sys.executable).parent / "temporal")
    proc = subprocess.Popen(
        [cli, "server", "start-dev", "--ip", "127.0.0.1", "--headless", "--port", str(port),
         "--http-port", str(free_port()), "--metrics-port", str(free_port()),
         "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"

    async def ready() -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                await asyncio.wait_for(Client.connect(address), 2)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)

    try:
        asyncio.run(ready())
        yield address
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def gated_chain_spec(n: int) -> str:
    """n async tool nodes with a gate between every two: n activities, n-1 pure nodes."""
    text = chain_spec(n, "anoop")
    lines = text.splitlines(keepends=True)
    out = []
    for line in lines:
        out.append(line)
        stripped = line.strip()
        if stripped.startswith("n") and ":" in stripped and "tool:" in stripped:
            i = int(stripped.split(":", 1)[0][1:])
            if i < n - 1:
                out.append(
                    f"  g{i}:\n    gate: [{{check: 'nodes.n{i}.output.i >= 0', message: ok}}]\n"
                )
    text = "".join(out)
    for i in range(1, n):  # each tool node also needs the gate before it
        text = text.replace(f"  n{i}: {{tool: anoop,", f"  n{i}: {{tool: anoop, needs: [g{i - 1}],")
    return text


def compile_text(text: str, folder: Path, name: str) -> Plan:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return compile_plan(load_spec(path))


async def on_temporal(client: Client, plan: Plan, store: Store) -> RunResult:
    from runner.temporal.activities import run_result_from_json

    run = run_input(plan, {}, store=store, run_id=f"b{next(_ids)}", responses=None)
    handle = await start(client, run, Target(task_queue=QUEUE))
    return run_result_from_json(await handle.result())


async def on_direct(client: Client, plan: Plan, store: Store) -> None:
    from dataclasses import asdict

    run = run_input(plan, {}, store=store, run_id=f"d{next(_ids)}", responses=None)
    result = {
        "status": "succeeded", "reason": None, "outputs": {}, "duration_s": 0.0,
        "totals": {"cost_usd": 0.0, "tokens": 0, "llm_calls": 0, "tool_calls": len(plan.order)},
    }  # fmt: skip
    await client.execute_workflow(
        "bench.direct",
        {"run": asdict(run), "order": list(plan.order), "result": result},
        id=f"direct-{run.run_id}",
        task_queue=QUEUE,
    )


async def on_local(plan: Plan, store: Store) -> RunResult:
    run_id = f"l{next(_ids)}"
    create_run(store, plan, {}, run_id=run_id, responses_path=None)
    return await run_durably(store, plan, {}, run_id=run_id)


async def timed(coro_fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        await coro_fn()
        best = min(best, time.perf_counter() - t0)
    return best


async def bench(address: str, folder: Path, n: int, runs: int, repeat: int) -> list[Any]:
    store = open_store(folder / "flowrun.db")
    chain = compile_text(chain_spec(n, "anoop"), folder, "chain")
    gated = compile_text(gated_chain_spec(n), folder, "gated")
    seven = compile_text(seven_node_spec(), folder, "seven")
    client = await Client.connect(address)
    worker = Worker(
        client, task_queue=QUEUE, workflows=[Interpreter, Direct], activities=list(ACTIVITIES),
        workflow_runner=UnsandboxedWorkflowRunner() if UNSANDBOXED else sandbox_runner(),
        max_concurrent_activities=200,
        max_concurrent_workflow_tasks=200,
    )  # fmt: skip
    rows: list[Any] = []
    async with worker:
        await on_temporal(client, chain, store)  # warm: plan cache, sandbox, connections
        await on_direct(client, chain, store)
        local = await timed(lambda: on_local(chain, store), repeat)
        interp = await timed(lambda: on_temporal(client, chain, store), repeat)
        direct = await timed(lambda: on_direct(client, chain, store), repeat)
        gated_t = await timed(lambda: on_temporal(client, gated, store), repeat)
        per = {k: v / n * 1e3 for k, v in (("local", local), ("interp", interp),
                                             ("direct", direct), ("gated", gated_t))}  # fmt: skip
        rows += [
            (f"{n}-node chain, local backend (store)", per["local"], "ms/node"),
            (f"{n}-node chain, hand-written Temporal workflow", per["direct"], "ms/node"),
            (f"{n}-node chain, interpreter on Temporal", per["interp"], "ms/node"),
            ("  interpreter over hand-written, per activity node",
             (interp - direct) / n * 1e3, "ms/node"),
            ("  interpreter over hand-written", (interp / direct - 1) * 100, "%"),
            (f"{n} tool + {n - 1} gate nodes, interpreter on Temporal", per["gated"], "ms/tool node"),
            ("  cost of one gate (pure node, in the workflow)",
             (gated_t - interp) / (n - 1) * 1e3, "ms/gate"),
        ]  # fmt: skip

        async def many_temporal() -> None:
            await asyncio.gather(*(on_temporal(client, seven, store) for _ in range(runs)))

        async def many_local() -> None:
            await asyncio.gather(*(on_local(seven, store) for _ in range(runs)))

        async def many_direct() -> None:
            await asyncio.gather(*(on_direct(client, seven, store) for _ in range(runs)))

        t_temporal = await timed(many_temporal, 1)
        t_direct = await timed(many_direct, 1)
        t_local = await timed(many_local, 1)
        label = f"7-node workflow × {runs} concurrent runs"
        rows += [
            (f"{label}, local (store)", runs / t_local, "runs/s"),
            (f"{label}, hand-written Temporal workflow", runs / t_direct, "runs/s"),
            (f"{label}, interpreter on Temporal", runs / t_temporal, "runs/s"),
        ]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true", help="tiny sizes (smoke run)")
    ap.add_argument(
        "--unsandboxed", action="store_true", help="run the interpreter without the sandbox"
    )
    args = ap.parse_args()
    n, runs, repeat = (5, 5, 1) if args.small else (20, 50, 3)
    with tempfile.TemporaryDirectory() as tmp, dev_server() as address:
        folder = Path(tmp)
        (folder / "bench_tools.py").write_text(TOOLS)
        sys.path.insert(0, str(folder))
        os.chdir(folder)
        rows = asyncio.run(bench(address, folder, n, runs, repeat))
    print(f"flowrun Temporal benchmarks — Python {platform.python_version()}, {platform.machine()}")
    width = max(len(r[0]) for r in rows)
    for name, value, unit in rows:
        print(f"  {name:<{width}}  {value:>10.2f} {unit}")


if __name__ == "__main__":
    main()
