"""Policy decision latency: p50/p99 of one decision with 60 CEL rules, and with a 60-rule Cedar file.

Run: `.venv/bin/python tests/bench/bench_policy.py [--n N]`. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from runner.expr.cel import compile_cel
from runner.policy import CedarPolicies, PolicySet, Rule, request
from runner.spec.models import PolicyDefault


def cel_rules(n: int) -> PolicySet:
    rules = []
    for i in range(n):
        effect = ("deny", "allow", "require_approval")[i % 3]
        when = f'tool == "tool_{i}" && args.amount_usd > {i}.0 && "{i}" in scopes'
        rules.append(Rule(id=f"rule-{i}", when=compile_cel(when), effect=effect, reason=None))
    return PolicySet(rules=tuple(rules), default=PolicyDefault())


def cedar_rules(n: int) -> PolicySet:
    parts = []
    for i in range(n):
        kind = "forbid" if i % 2 else "permit"
        parts.append(
            f'@id("c-{i}")\n{kind}(principal, action == Action::"tool_{i}", resource) '
            f'when {{ context.args.amount_usd.greaterThan(decimal("{i}.0")) }};'
        )
    return PolicySet(cedar=CedarPolicies.parse("\n".join(parts)))


def measure(ps: PolicySet, n: int) -> tuple[float, float]:
    req = request(
        tool="tool_59", effect="write", args={"amount_usd": 70.0}, scopes=["59"], actor="ops"
    )
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        ps.decide(req)
        times.append((time.perf_counter() - t0) * 1e6)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000, help="decisions per measurement")
    n = ap.parse_args().n
    print("policy decision latency (one request, all rules evaluated)")
    for name, ps in (("60 CEL rules", cel_rules(60)), ("60-rule Cedar file", cedar_rules(60))):
        p50, p99 = measure(ps, n)
        print(f"  {name:<20} p50 {p50:8.1f} µs   p99 {p99:8.1f} µs")


if __name__ == "__main__":
    main()
