"""The run store's cost: SQLite vs PostgreSQL, per node and in runs per second.

Run: `.venv/bin/python tests/bench/bench_store.py [--small] [--pg URL]`. Without --pg it starts
a throwaway PostgreSQL server from Debian's package (tests/pg_server.py; as root it runs the
server as `postgres`). Prints figures side by side; asserts only that runs succeed.

Per node: a chain of no-op tool nodes run by the local backend, checkpointed in the store (the
engine's own cost included: compare the two columns, not the absolute figures). Runs/s: many
7-node runs at once on one event loop, each created and finished in the store.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from runner.backends.local import run_durably  # noqa: E402
from runner.engine.run import new_run_id  # noqa: E402
from runner.runs import create_run  # noqa: E402
from runner.store import Store, open_store  # noqa: E402
from tests.bench.bench_core import TOOLS, chain_spec, compile_text, seven_node_spec  # noqa: E402


def _run_one(store: Store, plan: object) -> str:
    run_id = new_run_id()
    create_run(store, plan, {}, run_id=run_id, responses_path=None)  # type: ignore[arg-type]
    return run_id


def per_node_us(store: Store, folder: Path, n: int) -> float:
    plan = compile_text(chain_spec(n, "anoop"), folder, f"chain_{n}")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        run_id = _run_one(store, plan)
        result = asyncio.run(run_durably(store, plan, {}, run_id=run_id))  # type: ignore[arg-type]
        times.append(time.perf_counter() - t0)
        assert result.status == "succeeded", result.reason
    return min(times) / n * 1e6


def runs_per_s(store: Store, folder: Path, runs: int) -> float:
    plan = compile_text(seven_node_spec(), folder, "seven")

    async def many() -> float:
        t0 = time.perf_counter()
        ids = [_run_one(store, plan) for _ in range(runs)]
        results = await asyncio.gather(
            *(run_durably(store, plan, {}, run_id=i) for i in ids)  # type: ignore[arg-type]
        )
        await store.barrier()
        dt = time.perf_counter() - t0
        assert all(r.status == "succeeded" for r in results)
        return dt

    return runs / asyncio.run(many())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true", help="tiny sizes (smoke run)")
    ap.add_argument("--pg", metavar="URL", help="a PostgreSQL server (default: start one)")
    args = ap.parse_args()
    chain, runs = (20, 10) if args.small else (200, 100)
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "bench_tools.py").write_text(TOOLS)
        sys.path.insert(0, str(folder))
        server = args.pg
        if server is None:
            from tests.pg_server import postgres

            server = stack.enter_context(postgres())
        from tests.pg_server import new_database

        stores: dict[str, Callable[[], str]] = {
            "sqlite": lambda: str(folder / f"s{time.monotonic_ns()}" / "flowrun.db"),
            "postgres": lambda: new_database(server),
        }
        rows = []
        for name, make in stores.items():
            store = open_store(make())
            node = per_node_us(store, folder, chain)
            store.close()
            store = open_store(make())
            rps = runs_per_s(store, folder, runs)
            store.close()
            rows.append((name, node, rps))
        print(f"store cost: {chain}-node chain (per node), {runs} concurrent 7-node runs")
        print(f"{'store':<10} {'µs/node':>10} {'runs/s':>10}")
        for name, node, rps in rows:
            print(f"{name:<10} {node:>10.0f} {rps:>10.1f}")


if __name__ == "__main__":
    main()
