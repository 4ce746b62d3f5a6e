"""`flowrun batch` throughput: the reference support workflow over N lines on recorded responses.

Run: `.venv/bin/python tests/bench/bench_batch.py [--lines N] [--concurrency 1,4,8]`. Each figure
is one whole `flowrun batch` process (start-up included) on a fresh SQLite store, as a dry run
(the refund is previewed, so every line may name the same ticket): wall time, lines per second,
and the per-line cost over a 1-line batch. Recorded responses answer at once, so this measures
flowrun's own overhead per line, not a provider's latency or rate limit (that is
tests/bench/bench_ratelimit.py). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "support_refund.yaml"
RESPONSES = ROOT / "examples" / "responses" / "refund_granted.jsonl"


def one(tmp: Path, lines: int, concurrency: int) -> float:
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    data = run_dir / "data.jsonl"
    data.write_text("".join(json.dumps({"ticket_id": "T-1001"}) + "\n" for _ in range(lines)))
    env = {
        **os.environ,
        "FLOWRUN_STORE": str(run_dir / "s.db"),
        "FLOWRUN_SUPPORT_DB": str(tmp / "support.db"),
        "PYTHONPATH": str(ROOT),
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "batch", str(SPEC), "--data", str(data),
         "--responses", str(RESPONSES), "--scopes", "refunds:write",
         "--concurrency", str(concurrency), "--fail-under", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"batch failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=100)
    ap.add_argument("--concurrency", default="1,4,8")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        subprocess.run(
            [sys.executable, "-m", "tools.seed", "--db", str(tmp / "support.db")],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        base = one(tmp, 1, 1)
        print(f"1-line batch (process start-up included): {base:.2f} s")
        for c in (int(x) for x in args.concurrency.split(",")):
            took = one(tmp, args.lines, c)
            per_line = (took - base) / max(args.lines - 1, 1)
            print(
                f"{args.lines} lines, --concurrency {c}: {took:.2f} s, "
                f"{args.lines / took:.1f} lines/s, {per_line * 1000:.1f} ms per line over 1 line"
            )


if __name__ == "__main__":
    main()
