"""Tracing overhead per node on the 500-node chain: spans off vs on (exported, then dropped)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from opentelemetry.sdk.trace import ReadableSpan  # noqa: E402
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult  # noqa: E402

from runner.engine.run import execute  # noqa: E402
from runner.plan.compile import compile_plan  # noqa: E402
from runner.spec import load_spec  # noqa: E402
from runner.trace.observe import RunObserver  # noqa: E402
from runner.trace.otel import setup_tracing  # noqa: E402
from tests.bench.bench_core import TOOLS, chain_spec  # noqa: E402

N = 500
REPEAT = 5


class Drop(SpanExporter):
    """Serialises nothing and sends nothing: measures flowrun's span work, not a network."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "bench_tools.py").write_text(TOOLS)
        (d / "chain.yaml").write_text(chain_spec(N, "noop"))
        plan = compile_plan(load_spec(d / "chain.yaml"), None)
        tracing = setup_tracing(exporter=Drop())

        def once(spans: bool) -> float:
            obs = RunObserver(store=None, tracing=tracing if spans else None, capture="off")
            t0 = time.perf_counter()
            r = asyncio.run(execute(plan, {}, hooks=obs, telemetry=obs))
            assert r.status == "succeeded"
            return time.perf_counter() - t0

        once(False)
        off = min(once(False) for _ in range(REPEAT))
        on = min(once(True) for _ in range(REPEAT))
    per_node_us = (on - off) / N * 1e6
    print(f"{'case':<34} {'nodes':>6} {'run s':>8} {'per node ms':>12}")
    print(f"{'500-node chain, spans off':<34} {N:>6} {off:>8.3f} {off / N * 1000:>12.3f}")
    print(f"{'500-node chain, spans on':<34} {N:>6} {on:>8.3f} {on / N * 1000:>12.3f}")
    print(f"tracing overhead per node: {per_node_us:.0f} µs (node + tool span, best of {REPEAT})")


if __name__ == "__main__":
    main()
