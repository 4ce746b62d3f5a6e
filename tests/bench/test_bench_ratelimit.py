"""Smoke run of the rate-limit benchmark (tests/bench/bench_ratelimit.py) at a tiny size: it
prints its figures, every line succeeds, none is lost (no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_rate_limit_bench_prints_its_figures() -> None:
    proc = subprocess.run(
        [sys.executable, "tests/bench/bench_ratelimit.py", "--lines", "6", "--rpm", "240",
         "--latency", "0.05", "--concurrency", "4", "--no-langgraph"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "6 lines of the support workflow" in out and "floor 3.0 s" in out
    process = re.search(r"flowrun batch: the process +([\d.]+) s +([\d.]+)x .* 6/6 +0 ", out)
    batch = re.search(r"the batch \(AIMD, --concurrency 4\) +([\d.]+) s .* 6/6 +0 ", out)
    assert process and batch, out  # all 6 lines succeeded, 0 lost, in both rows
    assert float(batch.group(1)) <= float(process.group(1))
