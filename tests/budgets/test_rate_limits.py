"""Rate limits held in the store and shared by every process: a tool limited to N calls per
window, called from 4 processes at once, achieves the limit (within 5%) and never passes it in
any window; destinations are limited apart; `on_limit: fail` fails with the reason. On SQLite
and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.budgets.conftest import budgets_file, env_for, json_lines, run, start

SPEC = """\
apiVersion: flowrun/v1
kind: Workflow
metadata: {name: mail}
inputs:
  type: object
  properties: {to: {type: string}}
  required: [to]
tools:
  send:
    impl: tests.budgets.btools:send
    destination: "${{ args.to }}"
nodes:
  deliver: {tool: send, args: {to: "${{ inputs.to }}"}}
outputs:
  sent: "${{ nodes.deliver.output.sent }}"
"""
PROCESSES = 4


def _spec(tmp: Path) -> Path:
    p = tmp / "mail.yaml"
    p.write_text(SPEC, encoding="utf-8")
    return p


def _max_in_window(times: list[float], per: float) -> int:
    """The most calls any window of `per` seconds holds (every window starting at a call)."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - per:
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.mark.slow
@pytest.mark.parametrize(
    ("limit", "per", "windows"),
    [
        pytest.param(30, 10.0, 2, id="30-per-10s"),
        pytest.param(60, 60.0, 2, id="60-per-minute-for-2-minutes"),
    ],
)
def test_four_processes_share_one_limit(
    tmp_path: Path, store_target: str, limit: int, per: float, windows: int
) -> None:
    if per >= 60 and not store_target.startswith("postgres"):
        # suite time: the real 2-minute figure runs on the shared store; the 30-per-10s
        # variant holds SQLite to the same bounds
        pytest.skip("the 2-minute run is on PostgreSQL; 30-per-10s covers SQLite")
    log = tmp_path / "calls.log"
    env = env_for(store_target, BTOOLS_LOG=str(log))
    budgets = budgets_file(
        tmp_path,
        f"rate_limits:\n  send-rate: {{tool: send, limit: {limit}, per: {per:g}, "
        f"on_limit: wait, max_wait: {per * (windows + 2):g}}}\n",
    )
    assert run(env, "budgets", "set", "--file", str(budgets)).returncode == 0
    # more calls than the limit lets through in `windows` windows: demand never runs out
    lines = limit * windows // PROCESSES + limit // 2
    procs = []
    for p in range(PROCESSES):
        data = tmp_path / f"data{p}.jsonl"
        data.write_text("".join(f'{{"to": "u{p}.{i}@acme.com"}}\n' for i in range(lines)))
        procs.append(start(env, "batch", str(_spec(tmp_path)), "--data", str(data),
                           "--concurrency", "4", "--live", "--output", "json"))  # fmt: skip
    for proc in procs:
        out, err = proc.communicate(timeout=per * (windows + 4) + 300)
        assert proc.returncode == 0, err
        assert {r["status"] for r in json_lines(out)} == {"succeeded"}
    times = sorted(json.loads(x)["at"] for x in log.read_text().splitlines())
    assert len(times) == PROCESSES * lines
    # never above the limit in any window, as the tool itself saw its calls arrive
    assert _max_in_window(times, per) <= limit
    # the achieved rate: the calls made in the first `windows` windows from the first call
    t0 = times[0]
    achieved = sum(1 for t in times if t < t0 + windows * per) / windows
    assert abs(achieved - limit) <= 0.05 * limit, (achieved, limit)
    assert len({json.loads(x)["pid"] for x in log.read_text().splitlines()}) == PROCESSES


def test_destinations_are_limited_apart_and_fail_with_the_reason(
    tmp_path: Path, store_target: str
) -> None:
    log = tmp_path / "calls.log"
    env = env_for(store_target, BTOOLS_LOG=str(log))
    budgets = budgets_file(
        tmp_path,
        "rate_limits:\n  per-domain: {tool: send, destination: domain, limit: 2, per: 1h, "
        "on_limit: fail}\n",
    )
    assert run(env, "budgets", "set", "--file", str(budgets)).returncode == 0
    spec = str(_spec(tmp_path))
    for to in ("a@acme.com", "b@ACME.com"):
        p = run(env, "execute", spec, "--input-json", json.dumps({"to": to}), "--live")
        assert p.returncode == 0, p.stderr
    p = run(env, "execute", spec, "--input-json", '{"to": "c@acme.com"}', "--live",
            "--output", "json")  # fmt: skip
    assert p.returncode == 1, p.stderr
    out = json.loads(p.stdout)
    assert out["status"] == "failed"
    assert (
        "rate limit 'per-domain' (2 calls per 3600s to acme.com): the call was not made; "
        "its limit is reached" in out["reason"]
    )
    p = run(env, "execute", spec, "--input-json", '{"to": "a@other.org"}', "--live")
    assert p.returncode == 0, p.stderr  # another domain has its own limit
    assert [json.loads(x)["to"] for x in log.read_text().splitlines()] == [
        "a@acme.com",
        "b@ACME.com",
        "a@other.org",
    ]
