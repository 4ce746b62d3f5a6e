"""Core benchmarks: engine overhead per node, concurrent runs per second, validation time.

Run: `make bench` (or `.venv/bin/python tests/bench/bench_core.py [--small]`). Prints figures;
asserts nothing, so it never flakes a test run. `--small` is the smoke size used by the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from runner.engine.run import execute  # noqa: E402
from runner.plan.compile import compile_plan  # noqa: E402
from runner.spec import load_spec  # noqa: E402

TOOLS = """
def noop(i: int = 0) -> dict:
    return {"i": i}

async def anoop(i: int = 0) -> dict:
    return {"i": i}
"""

HEADER = """apiVersion: flowrun/v1
kind: Workflow
metadata: {{name: {name}}}
tools:
  noop: {{impl: bench_tools:noop}}
  anoop: {{impl: bench_tools:anoop}}
nodes:
"""


def chain_spec(n: int, tool: str) -> str:
    lines = [HEADER.format(name=f"chain-{n}")]
    lines.append(f"  n0: {{tool: {tool}, args: {{i: 0}}}}\n")
    for i in range(1, n):
        lines.append(
            f'  n{i}: {{tool: {tool}, args: {{i: "${{{{ nodes.n{i - 1}.output.i + 1 }}}}"}}}}\n'
        )
    return "".join(lines)


def seven_node_spec() -> str:
    return (
        HEADER.format(name="seven")
        + """  intake: {tool: anoop, args: {i: 1}}
  classify: {tool: anoop, args: {i: "${{ nodes.intake.output.i }}"}}
  retrieve: {tool: anoop, args: {i: "${{ nodes.intake.output.i }}"}}
  propose: {tool: anoop, args: {i: "${{ nodes.classify.output.i + nodes.retrieve.output.i }}"}}
  verify:
    gate: [{check: "nodes.propose.output.i > 0", message: positive}]
  act: {tool: anoop, needs: [verify], args: {i: "${{ nodes.propose.output.i }}"}}
  log: {tool: anoop, args: {i: "${{ nodes.act.output.i }}"}}
"""
    )


def big_spec(n: int) -> str:
    """A wide, realistic-shaped spec: layers of tool nodes with bindings, conditions and gates."""
    lines = [HEADER.format(name=f"big-{n}")]
    lines.append("  n0: {tool: noop, args: {i: 0}}\n")
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


def compile_text(text: str, folder: Path, name: str) -> object:
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return compile_plan(load_spec(path))


def bench_chain(folder: Path, n: int, tool: str) -> float:
    plan = compile_text(chain_spec(n, tool), folder, f"chain_{tool}")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        result = asyncio.run(execute(plan, {}))  # type: ignore[arg-type]
        times.append(time.perf_counter() - t0)
        assert result.status == "succeeded", result.reason
    return min(times) / n * 1e6


def bench_runs(folder: Path, runs: int) -> float:
    plan = compile_text(seven_node_spec(), folder, "seven")

    async def many() -> float:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(execute(plan, {}) for _ in range(runs)))  # type: ignore[arg-type]
        dt = time.perf_counter() - t0
        assert all(r.status == "succeeded" for r in results)
        return dt

    return runs / asyncio.run(many())


def bench_validate(folder: Path, n: int) -> float:
    path = folder / "big.yaml"
    path.write_text(big_spec(n))
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        compile_plan(load_spec(path))
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true", help="tiny sizes (smoke run)")
    args = ap.parse_args()
    chain_n, runs_n, big_n = (50, 50, 200) if args.small else (500, 1000, 5000)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "bench_tools.py").write_text(TOOLS)
        sys.path.insert(0, str(folder))
        rows = [
            (
                f"engine overhead, {chain_n}-node chain, sync tools (thread)",
                bench_chain(folder, chain_n, "noop"),
                "µs/node",
            ),
            (
                f"engine overhead, {chain_n}-node chain, async tools",
                bench_chain(folder, chain_n, "anoop"),
                "µs/node",
            ),
            (f"7-node workflow × {runs_n} concurrent runs", bench_runs(folder, runs_n), "runs/s"),
            (f"validate a {big_n}-node spec", bench_validate(folder, big_n), "s"),
        ]
    print(f"flowrun core benchmarks — Python {platform.python_version()}, {platform.machine()}")
    width = max(len(r[0]) for r in rows)
    for name, value, unit in rows:
        print(f"  {name:<{width}}  {value:>10.2f} {unit}")


if __name__ == "__main__":
    main()
