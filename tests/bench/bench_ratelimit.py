"""`flowrun batch` at a provider's rate limit, beside LangGraph's `abatch` (issue 24).

    .bench-venv/bin/python tests/bench/bench_ratelimit.py [--lines 1000] [--rpm 600]
        [--latency 0.3] [--concurrency 32] [--langgraph 32:2,32:10,4:10] [--no-langgraph]

A local OpenAI-compatible provider (tests/bench/provider_server.py, its own process on
127.0.0.1) answers every chat completion in `--latency` seconds and refuses requests above
`--rpm` a minute with 429 and Retry-After. Both engines run the reference support workflow
(specs/support_refund.yaml: ticket read, classify, knowledge-base search, propose a refund, gate,
dry-run refund and note; 2 model calls a line) over `--lines` copies of the refund_granted ticket,
against the same provider in the same run, one after the other:

- flowrun: `flowrun batch --concurrency N` as its own process, the spec's models routed to the
  provider through a profile (`openai/gpt-4o-mini` with `api_base` and a dummy key, via
  litellm). The batch starts N lines at once and adapts (AIMD) to the provider's 429s.
- LangGraph: the same nodes as a `StateGraph` (the same tool functions, the same prompts), the
  model calls through the openai SDK (`AsyncOpenAI` with `max_retries` R; the SDK honours
  `retry-after-ms`), run by `graph.abatch(inputs, config={"max_concurrency": C},
  return_exceptions=True)`: a row for each C:R of `--langgraph` (by default the same 32 as
  flowrun's `--concurrency`, with the SDK's default 2 retries and with 10, and a hand-tuned 4).

The floor is what the rate limit allows at best: lines x calls a line / rpm minutes. Printed for
each: wall time, wall / floor, the time from the provider's first accepted request to its last,
lines succeeded and lost (failed or never answered), 429s. flowrun's wall time is given twice:
the whole process (interpreter and litellm start-up included: seconds on a loaded machine), and
the batch's own, from its record to its last line's end (as LangGraph's is `abatch` alone). Prints figures; asserts nothing. LangGraph is only in the benchmark venv
(tests/bench/run.sh makes it); without it its row is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script: flowrun and the reference tools import
    sys.path.insert(0, str(ROOT))
SPEC = ROOT / "specs" / "support_refund.yaml"
ANSWERS = ROOT / "examples" / "responses" / "refund_granted.jsonl"
SERVER = Path(__file__).with_name("provider_server.py")
TICKET = "T-1001"  # refund_granted: a $35 refund on a $35 order, within the cap


@dataclass
class Provider:
    url: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen[str]

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/stats", timeout=10) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass


@contextlib.contextmanager
def provider(
    *, rpm: float, latency: float, error_every: int = 0, python: str = sys.executable
) -> Iterator[Provider]:
    """The rate-limited provider in its own process, until the block ends."""
    proc = subprocess.Popen(
        [python, str(SERVER), "--rpm", str(rpm), "--latency", str(latency),
         "--answers", str(ANSWERS), "--error-every", str(error_every)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the server says where it listens once it does
        if not first.startswith("listening on "):
            raise RuntimeError(f"the provider did not start: {first!r}")
        yield Provider(url=first.removeprefix("listening on ").strip(), proc=proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def provider_spec(folder: Path, url: str, *, max_wait: str | None = None) -> Path:
    """The support workflow with a `provider` profile that routes both aliases to `url`."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SPEC.parent / "prompts", folder / "prompts", dirs_exist_ok=True)
    extra = f", max_wait: {max_wait}" if max_wait else ""
    params = f'params: {{api_base: "{url}/v1", api_key: dummy}}'
    profile = "".join(
        f"    {alias}: {{model: openai/gpt-4o-mini, temperature: 0, max_tokens: {n}{extra}, "
        f"{params}}}\n"
        for alias, n in (("small", 200), ("strong", 500))
    )
    text = SPEC.read_text(encoding="utf-8")
    assert "\nprofiles:\n" in text
    text = text.replace("\nprofiles:\n", "\nprofiles:\n  provider:\n" + profile, 1)
    out = folder / "support_refund.yaml"
    out.write_text(text, encoding="utf-8")
    return out


def seed(db: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "tools.seed", "--db", str(db), "--reset"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip


def flowrun_batch(
    tmp: Path, url: str, lines: int, concurrency: int, *, max_wait: str | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """One `flowrun batch` process over `lines` lines: (wall seconds, the process)."""
    spec = provider_spec(tmp / "spec", url, max_wait=max_wait)
    data = tmp / "tickets.jsonl"
    data.write_text("".join(json.dumps({"ticket_id": TICKET}) + "\n" for _ in range(lines)))
    env = {
        **os.environ,
        "FLOWRUN_STORE": str(tmp / "flowrun.db"),
        "FLOWRUN_SUPPORT_DB": str(tmp / "support.db"),
        "PYTHONPATH": str(ROOT),
    }
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "batch", str(spec), "--profile", "provider",
         "--data", str(data), "--scopes", "refunds:write", "--concurrency", str(concurrency),
         "--output", "json", "--batch-id", "bench"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    return time.monotonic() - t0, proc


def batch_seconds(store: Path) -> float:
    """The batch's own time: from its record (after start-up) to its last line's end."""
    from runner.store import open_store

    s = open_store(store, create=False)
    try:
        b = s.batch_get("bench")
        return float(b["finished_at"] - b["created_at"])
    finally:
        s.close()


# -- the same workload in LangGraph ----------------------------------------------------------


class S(TypedDict, total=False):
    """The LangGraph state of one line."""

    ticket_id: str
    intake: Any
    classify: Any
    retrieve: Any
    propose: Any
    act: Any
    log: Any
    decision: str


def langgraph_batch(
    url: str, lines: int, concurrency: int, retries: int
) -> tuple[float, list[Any]] | None:
    """The support workflow as a LangGraph graph over `lines` inputs: (wall seconds, results),
    or None when LangGraph is not installed here."""
    try:
        from langgraph.graph import END, START, StateGraph
    except ImportError:
        return None
    from openai import AsyncOpenAI

    from runner.expr.templates import ENV
    from tools import helpdesk, kb, payments

    classify_t = ENV.from_string((SPEC.parent / "prompts" / "classify.j2").read_text())
    propose_t = ENV.from_string((SPEC.parent / "prompts" / "propose.j2").read_text())
    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="dummy", max_retries=retries)
    spec_text = SPEC.read_text()
    import yaml

    nodes_spec = yaml.safe_load(spec_text)["nodes"]

    async def llm(node: str, system: str | None, prompt: str, max_tokens: int) -> Any:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}
        ]
        resp = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            temperature=0,
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": f"{node}_output",
                    "schema": nodes_spec[node]["output"],
                    "strict": False,
                },
            },
        )
        return json.loads(resp.choices[0].message.content or "null")

    def ctx(s: S) -> dict[str, Any]:
        return {"nodes": {k: {"output": s.get(k)} for k in ("intake", "retrieve")}}

    async def intake(s: S) -> S:
        return {"intake": helpdesk.get_ticket(s["ticket_id"])}

    async def classify(s: S) -> S:
        out = await llm(
            "classify", nodes_spec["classify"]["system"], classify_t.render(ctx(s)), 200
        )
        return {"classify": out}

    async def retrieve(s: S) -> S:
        return {"retrieve": kb.search_kb(s["intake"]["subject"], 3)}

    async def propose(s: S) -> S:
        return {"propose": await llm("propose", None, propose_t.render(ctx(s)), 500)}

    async def act(s: S) -> S:
        p, t = s["propose"], s["intake"]
        ok = 0 < p["amount_usd"] <= min(t["order"]["amount_usd"], 50.0)
        if not ok:
            return {"decision": "escalated"}
        key = f"refund:{t['order_id']}"
        refund = payments.plan_refund(t["order_id"], p["amount_usd"], p["reason"], key)["result"]
        note = helpdesk.plan_note(s["ticket_id"], f"refund of {p['amount_usd']} USD planned")
        return {"act": refund, "log": note["result"], "decision": "refunded"}

    def route(s: S) -> str:
        refund = s["classify"]["category"] == "refund" and s["intake"]["order_id"] is not None
        return "propose" if refund else END

    g = StateGraph(S)
    for name, fn in (("intake", intake), ("classify", classify), ("retrieve", retrieve),
                     ("propose", propose), ("act", act)):  # fmt: skip
        g.add_node(name, fn)  # type: ignore[call-overload]
    g.add_edge(START, "intake")
    g.add_edge("intake", "classify")
    g.add_edge("intake", "retrieve")
    g.add_conditional_edges("classify", route, ["propose", END])
    g.add_edge("retrieve", "propose")
    g.add_edge("propose", "act")
    g.add_edge("act", END)
    graph = g.compile()

    async def main() -> list[Any]:
        inputs = [{"ticket_id": TICKET} for _ in range(lines)]
        try:
            return await graph.abatch(
                inputs,  # type: ignore[arg-type]
                config={"max_concurrency": concurrency},
                return_exceptions=True,
            )
        finally:
            await client.close()  # inside its event loop, not when collected after it

    t0 = time.monotonic()
    results = asyncio.run(main())
    return time.monotonic() - t0, results


# -- the run ---------------------------------------------------------------------------------


def row(name: str, wall: float, floor: float, first_last: float, ok: int, lines: int,
        limited: int) -> str:  # fmt: skip
    return (
        f"{name:<34} {wall:8.1f} s  {wall / floor:6.3f}x  {first_last:8.1f} s  "
        f"{ok:>6}/{lines:<6} {lines - ok:>5}  {limited:>7}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1000)
    ap.add_argument("--rpm", type=float, default=600)
    ap.add_argument("--latency", type=float, default=0.3)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument(
        "--langgraph",
        default="32:2,32:10,4:10",
        metavar="C:R,...",
        help="LangGraph rows: max_concurrency C with the openai SDK's max_retries R, each",
    )
    ap.add_argument("--no-langgraph", action="store_true")
    args = ap.parse_args()
    calls = 2  # classify and propose
    floor = args.lines * calls / args.rpm * 60
    print(
        f"{args.lines} lines of the support workflow ({calls} model calls a line), provider at "
        f"{args.rpm:g} requests/min answering in {args.latency * 1000:.0f} ms; "
        f"floor {floor:.1f} s; concurrency {args.concurrency}"
    )
    print(
        f"{'':<34} {'wall':>10}  {'/floor':>7}  {'1st-last':>10}  {'succeeded':>13} "
        f"{'lost':>5}  {'429s':>7}"
    )
    with tempfile.TemporaryDirectory() as d, provider(rpm=args.rpm, latency=args.latency) as p:
        tmp = Path(d)
        seed(tmp / "support.db")
        os.environ["FLOWRUN_SUPPORT_DB"] = str(tmp / "support.db")
        p.reset()
        wall, proc = flowrun_batch(tmp, p.url, args.lines, args.concurrency)
        after = p.stats()
        items = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
        ok = sum(1 for i in items if i["status"] == "succeeded")
        span = after["last_at"] - after["first_at"]
        print(row(
            "flowrun batch: the process", wall, floor, span, ok, args.lines, after["limited"],
        ))  # fmt: skip
        if proc.returncode in (0, 1):
            print(row(
                f"  the batch (AIMD, --concurrency {args.concurrency})",
                batch_seconds(tmp / "flowrun.db"), floor, span, ok, args.lines, after["limited"],
            ))  # fmt: skip
        if proc.returncode != 0:
            print(f"  flowrun batch exit {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        progress = [x for x in proc.stderr.splitlines() if x.startswith("batch ")]
        if progress:
            print(f"  {progress[-2] if len(progress) > 1 else progress[-1]}")
        if args.no_langgraph:
            return
        for pair in args.langgraph.split(","):
            conc, retries = (int(x) for x in pair.split(":"))
            time.sleep(2)  # the provider's bucket refills before the next engine starts
            p.reset()
            got = langgraph_batch(p.url, args.lines, conc, retries)
            if got is None:
                print("LangGraph abatch: not installed here (tests/bench/run.sh makes .bench-venv)")
                return
            lg_wall, results = got
            after = p.stats()
            lg_ok = sum(
                1 for r in results if isinstance(r, dict) and r.get("decision") == "refunded"
            )
            errors = {type(r).__name__ for r in results if isinstance(r, BaseException)}
            span = after["last_at"] - after["first_at"] if after["accepted"] else 0.0
            print(row(
                f"LangGraph abatch (max_conc. {conc}, retries {retries})", lg_wall,
                floor, span, lg_ok, args.lines, after["limited"],
            ))  # fmt: skip
            if errors:
                print(f"  lost lines raised: {', '.join(sorted(errors))}")


if __name__ == "__main__":
    main()
