"""The `flowrun` command as users run it: whole processes, start-up included.

Run: `.venv/bin/python tests/bench/bench_cli.py [--repeat N] [--small] [--json]`. Each figure is
the wall time of a fresh `flowrun` process (subprocess + time.perf_counter), min and median of N
runs, and the median's ratio to `python -c pass` timed in the same run (the interpreter's own
start-up on this machine at this moment: on a shared host that ratio moves less than seconds).

- `--help`, `validate` of specs/support_refund.yaml, `validate` of a 2,000-node spec;
- `execute` with recorded responses, until its first node starts: the node's `started_at`
  (unix time, from `--output json`) minus the moment the process was launched;
- the per-node cost of the path users run: a 500-node chain through the whole `flowrun execute`
  process minus a 1-node chain, divided by 499; compare with the in-process "full" chain row of
  `tests/bench/run.sh` (bench_langgraph.py), which is the same stack without the process.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench.bench_core import big_spec, chain_spec  # noqa: E402

FLOWRUN = [sys.executable, "-m", "runner.cli"]
TOOLS = (
    "def noop(i: int = 0) -> dict:\n    return {'i': i}\n\n"
    "async def anoop(i: int = 0) -> dict:\n    return {'i': i}\n"
)
FIRST_NODE_SPEC = """apiVersion: flowrun/v1
kind: Workflow
metadata: {name: first-node}
models:
  small: {model: openai/gpt-4o-mini, max_tokens: 50}
tools:
  noop: {impl: bench_tools:noop}
nodes:
  classify:
    llm: small
    prompt: "Classify this ticket: my parcel is late"
    output: {type: object, properties: {category: {type: string}}, required: [category]}
  act: {tool: noop, args: {i: 1}}
"""
FIRST_NODE_RESPONSES = '{"node": "classify", "content": {"category": "late"}}\n'


def wall(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    cp = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
    dt = time.perf_counter() - t0
    if cp.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} -> {cp.returncode}\n{cp.stderr.decode()}")
    return dt


def to_first_node(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    launched = time.time()
    cp = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
    if cp.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} -> {cp.returncode}\n{cp.stderr.decode()}")
    nodes = json.loads(cp.stdout)["nodes"]
    return min(n["started_at"] for n in nodes.values() if n.get("started_at")) - launched


def measure(fn: Callable[[], float], repeat: int) -> list[float]:
    fn()  # warm the page cache and .pyc files; not counted
    return [fn() for _ in range(repeat)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--small", action="store_true", help="smoke sizes (200-node spec and chain)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    big_n, chain_n = (200, 100) if args.small else (2000, 500)

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "bench_tools.py").write_text(TOOLS)
        (d / "big.yaml").write_text(big_spec(big_n))
        (d / "chain1.yaml").write_text(chain_spec(1, "noop"))
        (d / "chainN.yaml").write_text(chain_spec(chain_n, "noop"))
        (d / "first.yaml").write_text(FIRST_NODE_SPEC)
        (d / "first.jsonl").write_text(FIRST_NODE_RESPONSES)
        # as installed: bytecode caches written and read (a shell may turn them off for itself)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("FLOWRUN_DEBUG", "PYTHONDONTWRITEBYTECODE")
        }
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(d)])
        env["FLOWRUN_STORE"] = str(d / "store.db")

        def run(*a: str) -> Callable[[], float]:
            return lambda: wall([*FLOWRUN, *a], d, env)

        spec = str(ROOT / "specs" / "support_refund.yaml")
        out = "--output", "json"
        rows: dict[str, list[float]] = {}
        rows["python -c pass"] = measure(
            lambda: wall([sys.executable, "-c", "pass"], d, env), args.repeat
        )
        rows["flowrun --help"] = measure(run("--help"), args.repeat)
        rows["validate support_refund.yaml"] = measure(run("validate", spec), args.repeat)
        rows[f"validate {big_n}-node spec"] = measure(
            run("validate", str(d / "big.yaml")), args.repeat
        )
        first = [
            *FLOWRUN,
            "execute",
            str(d / "first.yaml"),
            "--responses",
            str(d / "first.jsonl"),
            *out,
        ]
        rows["execute --responses: to first node"] = measure(
            lambda: to_first_node(first, d, env), args.repeat
        )
        one = measure(run("execute", str(d / "chain1.yaml"), *out), args.repeat)
        many = measure(run("execute", str(d / "chainN.yaml"), *out), args.repeat)
        rows["execute 1-node chain"] = one
        rows[f"execute {chain_n}-node chain"] = many

    base = statistics.median(rows["python -c pass"])
    report = {
        name: {
            "min_s": min(v),
            "median_s": statistics.median(v),
            "ratio_to_python": statistics.median(v) / base,
        }
        for name, v in rows.items()
    }
    report[f"execute per node ({chain_n} - 1 nodes)"] = {
        "min_us": (min(many) - min(one)) / (chain_n - 1) * 1e6,
        "median_us": (statistics.median(many) - statistics.median(one)) / (chain_n - 1) * 1e6,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"flowrun CLI, {args.repeat} runs each, Python {sys.version.split()[0]}")
    print(f"{'command':42} {'min s':>8} {'median s':>9} {'× python':>9}")
    for name, r in report.items():
        if "min_s" in r:
            print(f"{name:42} {r['min_s']:8.3f} {r['median_s']:9.3f} {r['ratio_to_python']:9.1f}")
        else:
            print(f"{name:42} {r['min_us']:6.0f} µs {r['median_us']:6.0f} µs (min / median)")


if __name__ == "__main__":
    main()
