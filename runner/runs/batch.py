"""Batch runs (issue 24): one run per line of a data set, recorded as one batch in the store.

A batch is created with every line's inputs (or the reason a line is bad input) in one
transaction, then its lines run with bounded concurrency in this process, each as a normal run
started through `Runs.start` (run id `BATCH_ID.LINE`, tagged in its options with the batch and
the line). A batch cost ceiling stops *starting* lines once what the batch has spent (finished
runs, and the reservations of runs in flight) reaches it; runs in flight finish under their own
caps. `resume_batch` runs only the lines without a finished run: a run a crash cut off is
continued through `Runs.resume` (its completed nodes and effects are not done again: the
idempotency ledger), a run waiting for an approval counts as finished for now.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import files
from runner.errors import ExitCode, FlowrunError, UsageError
from runner.models import limits

if TYPE_CHECKING:
    from runner.models.limits import Signal
    from runner.plan.model import Plan
    from runner.runs import Placement, Runs

MAX_DATA_BYTES = 256 * 1024 * 1024
CEILING = "not started: batch ceiling"
# a batch's exit code is its worst line's: this order, worst last (not started counts as 4)
SEVERITY = (
    "succeeded",
    "waiting",
    "escalated",
    "not_started",
    "budget_exceeded",
    "denied",
    "killed",
    "failed",
)
LINE_EXIT: dict[str, int] = {
    "succeeded": ExitCode.SUCCEEDED,
    "waiting": ExitCode.WAITING,
    "escalated": ExitCode.ESCALATED,
    "not_started": ExitCode.BUDGET_EXCEEDED,
    "budget_exceeded": ExitCode.BUDGET_EXCEEDED,
    "denied": ExitCode.DENIED,
    "killed": ExitCode.KILLED,
    "failed": ExitCode.FAILED,
}
FINISHED = frozenset(
    {"succeeded", "failed", "escalated", "budget_exceeded", "denied", "killed", "waiting"}
)


# -- the data ------------------------------------------------------------------------------------
def parse_maps(items: Sequence[str]) -> dict[str, str]:
    """`--map INPUT=COLUMN` options as {input: column}."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, column = item.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise UsageError(f"--map: {item!r} is not INPUT=COLUMN")
        if name.strip() in out:
            raise UsageError(f"--map: input {name.strip()!r} is mapped twice")
        out[name.strip()] = column.strip()
    return out


class _Bad(Exception):
    pass


def read_data(path: str, maps: dict[str, str], plan: Plan) -> list[dict[str, Any]]:
    """Every data line as a batch line: `{line, inputs, status: pending}`, or for a line that is
    bad input `{line, inputs: None, status: failed, reason}`. `line` is the line of the file the
    record ends on (1-based; a CSV's header is line 1). A file that cannot be read at all is a
    UsageError (nothing is recorded)."""
    from runner.runs import check_inputs

    p = Path(path)
    kind = p.suffix.lower()
    if kind not in (".jsonl", ".csv"):
        raise UsageError(f"--data: {path!r} is neither .jsonl nor .csv")
    if not p.is_file():
        raise UsageError(f"--data: no such file {path!r}")
    try:
        text = files.read_text(p, limit=MAX_DATA_BYTES)
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--data: cannot read {path!r}: {e}") from None
    text = text.removeprefix("\ufeff")  # a byte order mark is no part of the first record
    props = list((plan.inputs_schema or {}).get("properties", {}))
    unknown = [name for name in maps if props and name not in props]
    if unknown:
        raise UsageError(
            f"--map: {unknown[0]!r} is not an input of the spec",
            hint="inputs: " + ", ".join(props),
        )
    records: list[tuple[int, Any]] = []  # (line, parsed record or _Bad)
    if kind == ".jsonl":
        for n, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                records.append((n, files.loads(raw)))
            except json.JSONDecodeError as e:
                records.append((n, _Bad(f"not JSON: {e.msg} at column {e.colno}")))
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            _check_header(path, list(reader.fieldnames or []), maps)
            for row in reader:
                if None in row:
                    records.append((reader.line_num, _Bad("more fields than the header names")))
                else:
                    records.append((reader.line_num, dict(row)))
        except csv.Error as e:
            raise UsageError(f"{path}:{reader.line_num}: not CSV: {e}") from None
    if not records:
        raise UsageError(f"--data: {path!r} has no data lines")
    lines: list[dict[str, Any]] = []
    for n, rec in records:
        try:
            if isinstance(rec, _Bad):
                raise rec
            inputs = check_inputs(plan, _mapped(rec, maps, props), "input")
            lines.append({"line": n, "inputs": inputs, "status": "pending"})
        except _Bad as e:
            lines.append(
                {"line": n, "inputs": None, "status": "failed", "reason": f"bad input: {e}"}
            )
        except UsageError as e:
            why = e.message.removeprefix("input: ")
            lines.append(
                {"line": n, "inputs": None, "status": "failed", "reason": f"bad input: {why}"}
            )
    return lines


def _check_header(path: str, names: list[str], maps: dict[str, str]) -> None:
    """A CSV header names each column once, none empty, and every --map column: otherwise
    every line would be read wrong (a value silently dropped, or no line with its input)."""
    seen: set[str] = set()
    for col, name in enumerate(names, 1):
        if not name.strip():
            raise UsageError(f"{path}:1: not CSV: column {col} of the header has no name")
        if name in seen:
            raise UsageError(f"{path}:1: not CSV: the header names column {name!r} twice")
        seen.add(name)
    missing = [c for c in maps.values() if c not in seen]
    if names and missing:
        raise UsageError(
            f"--map: the header of {path} has no column {missing[0]!r}",
            hint="columns: " + ", ".join(names),
        )


def _mapped(rec: Any, maps: dict[str, str], props: list[str]) -> Any:
    """A record's inputs: the record itself, or with --map the mapped columns (and the spec's
    other inputs from columns of the same name)."""
    if not maps or not isinstance(rec, dict):
        return rec
    out: dict[str, Any] = {}
    for name, column in maps.items():
        if column not in rec:
            raise _Bad(f"no column {column!r} (mapped to input {name!r})")
        out[name] = rec[column]
    for name in props:
        if name not in out and name in rec:
            out[name] = rec[name]
    return out


# -- the batch record ----------------------------------------------------------------------------
def new_batch_id() -> str:
    return f"batch-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def create_batch(
    runs: Runs,
    plan: Plan,
    lines: list[dict[str, Any]],
    *,
    data_path: str,
    options: dict[str, Any],
    batch_id: str | None = None,
) -> str:
    """Record a batch and its lines; nothing runs yet."""
    from runner.backends.local import host

    batch_id = batch_id or new_batch_id()
    runs.store.batch_create(
        batch_id,
        lines=lines,
        workflow=plan.name,
        spec_path=str(Path(plan.loaded.source.path).resolve()),
        data_path=str(Path(data_path).resolve()),
        options=options,
        status="created",
        pid=os.getpid(),
        host=host(),
    )
    return batch_id


def batch_row(runs: Runs, batch_id: str) -> dict[str, Any]:
    """A batch's record (NotFound when there is none)."""
    return runs.store.batch_get(batch_id)


def batch_state(row: dict[str, Any]) -> str:
    """A batch's status as shown: one recorded as running whose process is gone was cut off."""
    from runner.backends.local import alive

    if row["status"] in ("running", "created") and not alive(row.get("pid"), row.get("host")):
        return "interrupted"
    return str(row["status"])


def open_batch(runs: Runs, batch_id: str) -> tuple[dict[str, Any], Plan, Any]:
    """A recorded batch to resume: its row, its plan (the files its first run was started with;
    the spec on disk when no run was started) and its recorded responses."""
    from runner.models.responses import RecordedResponses
    from runner.runs import NotFound, plan_of

    batch = runs.store.batch_get(batch_id)
    if batch_state(batch) == "running":
        raise UsageError(f"batch {batch_id!r} is still running in process {batch['pid']}")
    opts = batch["options"]
    plan = None
    for x in runs.store.batch_lines(batch_id):
        if x["run_id"]:
            try:
                plan = plan_of(runs.get(x["run_id"]), runs.store)
                break
            except NotFound:
                continue
    if plan is None:
        from runner.plan.compile import compile_plan
        from runner.spec import load_spec

        plan = compile_plan(load_spec(batch["spec_path"]), opts.get("profile"))
    responses = None
    if opts.get("responses_path"):
        responses = RecordedResponses.load(Path(opts["responses_path"]))
    return batch, plan, responses


# -- running -------------------------------------------------------------------------------------
def replay_signals(runs: Runs, run_id: str, window: Window) -> None:
    """A run executed elsewhere (a Temporal worker): its model calls' records, as the signals
    the batch would have heard, once the run is back: each 429 its calls met a `limited` one,
    each answered call an `ok`."""
    from runner.models.limits import Signal

    for c in runs.store.calls(run_id):
        if c["kind"] != "llm" or c.get("error"):
            continue
        data = c["data"] if isinstance(c["data"], dict) else {}
        for refused in range(1, int(data.get("limited") or 0) + 1):  # each 429, as it came
            window.signal(Signal("limited", str(c["name"]), "", None, refused=refused))
        window.signal(Signal("ok", str(c["name"]), ""))


def placement_options(where: Placement) -> dict[str, Any]:
    """What a batch records of where its runs go (read back by `placement`)."""
    if where.backend == "local":
        return {}
    return {
        "backend": where.backend,
        "temporal": {
            "address": where.address,
            "namespace": where.namespace,
            "task_queue": where.task_queue,
        },
    }


def placement(options: dict[str, Any]) -> Placement:
    """Where a batch's runs go, as its options record: here, or workflows on a Temporal server
    (`{"backend": "temporal", "temporal": {address, namespace, task_queue}}`)."""
    from runner.runs import Placement

    if options.get("backend", "local") == "local":
        return Placement()
    t = options.get("temporal") or {}
    return Placement(
        backend=str(options["backend"]),
        address=t.get("address"),
        namespace=t.get("namespace"),
        task_queue=t.get("task_queue"),
    )


class Window:
    """How many lines may run at once: AIMD on the provider's answers (runner/models/limits.py).

    It starts at `ceiling` (`--concurrency`): without rate limits a batch runs that many lines
    at once. A call's first 429 only makes it wait what the provider asks: the provider is at its
    limit, which is where a batch should keep it. A 429 on a call that has waited already means
    more calls wait than the provider serves: the window is halved (multiplicative decrease, at
    least 1), unless more lines are in flight than it allows (they were started before the last
    decrease, which answers their 429s already). Each `limit` calls answered add a line (additive
    increase), up to `ceiling`. Lines in flight are never stopped: a smaller window only delays
    starts.
    """

    DECREASE = 0.5

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = ceiling
        self.inflight = 0
        self.low = ceiling  # the smallest the window has been
        self.decreases = 0
        self.limited = 0  # 429 answers seen
        self._oks = 0
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def signal(self, s: Signal) -> None:
        """A provider's answer to a call in this process (any thread)."""
        with self._lock:
            if s.kind == "limited":
                self.limited += 1
                if s.refused >= 2 and self.inflight <= self.limit:
                    self.limit = max(1, math.floor(self.limit * self.DECREASE))
                    self.low = min(self.low, self.limit)
                    self.decreases += 1
                    self._oks = 0
            elif s.kind == "ok":
                self._oks += 1
                if self._oks >= self.limit and self.limit < self.ceiling:
                    self.limit += 1
                    self._oks = 0
        self._loop.call_soon_threadsafe(self._changed.set)

    async def acquire(self) -> None:
        while True:
            self._changed.clear()  # before the check: a change after it wakes the wait
            with self._lock:
                if self.inflight < self.limit:
                    self.inflight += 1
                    return
            await self._changed.wait()

    def release(self) -> None:
        with self._lock:
            self.inflight -= 1
        self._changed.set()

    def describe(self) -> str:
        return f"{self.inflight} at once (window {self.limit}/{self.ceiling})"


@dataclass
class Tally:
    """What a batch has done so far: lines by status and the spend of finished lines."""

    total: int
    counts: Counter[str] = field(default_factory=Counter)
    spent: float = 0.0
    started: float = field(default_factory=time.monotonic)
    done_here: int = 0
    window: Window | None = None

    def add(self, status: str, cost: float, *, here: bool = True) -> None:
        self.counts[status] += 1
        self.spent += cost
        self.done_here += here

    def line(self, batch_id: str, inflight_usd: float = 0.0) -> str:
        done = sum(self.counts.values())
        c = self.counts
        rate = self.done_here / max(time.monotonic() - self.started, 1e-9)
        left = self.total - done
        eta = f", eta {left / rate:.0f}s" if rate > 0 and left else ""
        return (
            f"batch {batch_id}: {done}/{self.total} done ({c['succeeded']} succeeded, "
            f"{c['escalated']} escalated, "
            f"{sum(v for k, v in c.items() if k not in ('succeeded', 'escalated', 'waiting'))} "
            f"failed or stopped, {c['waiting']} waiting), ${self.spent + inflight_usd:.4f} spent, "
            f"{rate:.2f} lines/s{eta}{self._limits()}"
        )

    def _limits(self) -> str:
        w = self.window
        if w is None or not w.limited:
            return ""
        return f"; provider answered 429 {w.limited} times: {w.describe()}"


def run_spend(runs: Runs, run_id: str) -> float:
    """What a run's spend rows count (an open reservation at its reserved amount)."""
    return float(sum(r["usd"] for r in runs.spend(run_id) if r["status"] != "released"))


async def run_batch(
    runs: Runs,
    batch_id: str,
    plan: Plan,
    *,
    responses: Any = None,
    store_target: str | None = None,
    report: Callable[[str], None] | None = None,
    interval_s: float = 5.0,
) -> None:
    """Run every line of the batch that has no finished run, at most `concurrency` at a time.

    Each line's run is on its own store connection: `store_target` (what the batch's store was
    opened from; default: the store's `target`, which has no PostgreSQL password). A line's bad
    input, or a run that cannot start, ends that line, never the batch."""
    from runner.backends.local import host
    from runner.runs import TERMINAL, NotFound, Runs

    store = runs.store
    batch = store.batch_get(batch_id)
    opts = batch["options"]
    concurrency = max(1, int(opts.get("concurrency") or 1))
    ceiling = opts.get("max_usd")
    store.batch_update(batch_id, status="running", pid=os.getpid(), host=host())
    lines = store.batch_lines(batch_id)
    tally = Tally(total=len(lines))
    todo: list[tuple[dict[str, Any], str]] = []
    for x in lines:
        if x["run_id"] is None:
            if x["status"] == "failed":  # bad input
                tally.add("failed", 0.0, here=False)
            else:
                todo.append((x, "start"))
            continue
        try:
            row = runs.get(x["run_id"])
        except NotFound:  # cut off between the line's record and its run's
            todo.append((x, "start"))
            continue
        if row.status in TERMINAL or row.status == "waiting":
            if x["status"] != row.status:
                store.batch_line_set(batch_id, x["line"], status=row.status, reason=row.reason)
            tally.add(row.status, run_spend(runs, row.run_id), here=False)
        else:
            todo.append((x, "resume"))
    inflight: set[str] = set()
    window = Window(concurrency)
    tally.window = window
    run_options = {"live": bool(opts.get("live")), "scopes": list(opts.get("scopes") or [])}
    where = placement(opts)

    def inflight_usd() -> float:
        return sum(run_spend(runs, r) for r in list(inflight))

    async def one(x: dict[str, Any], how: str) -> None:
        line = int(x["line"])
        run_id = x["run_id"] or f"{batch_id}.{line}"
        inflight.add(run_id)
        sub = Runs.open(store_target or store.target)
        status, reason, cost = "failed", None, 0.0
        try:
            if how == "start":
                store.batch_line_set(batch_id, line, run_id=run_id, status="started", reason=None)
                result = await sub.start(
                    plan,
                    x["inputs"],
                    run_id=run_id,
                    responses=responses,
                    responses_path=opts.get("responses_path"),
                    tenant=opts.get("tenant"),
                    options={**run_options, "batch": batch_id, "line": line},
                    where=where,
                )
            else:
                result = await sub.follow(run_id)
            status, reason, cost = result.status, result.reason, result.usage.cost_usd
            if where.backend != "local":
                replay_signals(sub, run_id, window)
        except FlowrunError as e:
            reason = e.message
            cost = run_spend(runs, run_id)
        except Exception as e:  # a bug in one run must not take the other lines down
            reason = f"internal error: {type(e).__name__}: {e}"
            cost = run_spend(runs, run_id)
        finally:
            sub.close()
            inflight.discard(run_id)
        store.batch_line_set(batch_id, line, status=status, reason=reason)
        tally.add(status, cost)

    async def reporter() -> None:
        assert report is not None
        while True:
            await asyncio.sleep(interval_s)
            report(tally.line(batch_id, inflight_usd()))

    ticker = asyncio.create_task(reporter()) if report is not None else None
    unsubscribe = limits.subscribe(window.signal)
    tasks: list[asyncio.Task[None]] = []
    try:
        for x, how in todo:
            await window.acquire()
            if ceiling is not None and tally.spent + inflight_usd() >= ceiling:
                window.release()
                store.batch_line_set(batch_id, x["line"], status="not_started", reason=CEILING)
                tally.add("not_started", 0.0)
                continue
            task = asyncio.create_task(one(x, how))
            task.add_done_callback(lambda _t: window.release())
            tasks.append(task)
        await asyncio.gather(*tasks)
    except BaseException:
        store.batch_update(batch_id, status="interrupted", pid=None)
        raise
    finally:
        unsubscribe()
        if ticker is not None:
            ticker.cancel()
    store.batch_update(batch_id, status="finished", pid=None, finished_at=time.time())
    if report is not None:
        report(tally.line(batch_id))


# -- results -------------------------------------------------------------------------------------
def outcomes(runs: Runs, batch_id: str, *, live: bool = False) -> list[dict[str, Any]]:
    """Each line's outcome: line, run id, status, reason, outputs, cost (USD). A line not
    finished counts as failed (or not started, without a run), unless `live` (a view of a
    batch that may still be running: its open lines keep their status, `pending`, `started`,
    or their run's, `running`)."""
    from runner.runs import NotFound

    out = []
    for x in runs.store.batch_lines(batch_id):
        item: dict[str, Any] = {
            "line": x["line"],
            "run_id": x["run_id"],
            "status": x["status"],
            "reason": x["reason"],
            "outputs": None,
            "cost_usd": 0.0,
        }
        if x["run_id"]:
            try:
                row = runs.get(x["run_id"])
            except NotFound:
                row = None
            if row is not None:
                item.update(status=row.status, reason=row.reason, outputs=row.outputs)
                item["cost_usd"] = round(run_spend(runs, row.run_id), 10)
        if item["status"] not in SEVERITY and not live:  # never started, or left unfinished
            item["reason"] = item["reason"] or f"unfinished ({item['status']})"
            item["status"] = "not_started" if x["run_id"] is None else "failed"
        out.append(item)
    return out


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(p * len(s)) - 1)]


def summarize(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Completion and escalation rates, cost per completed task, failures by reason, waiting."""
    total = len(items)
    counts = Counter(i["status"] for i in items)
    done_costs = [float(i["cost_usd"]) for i in items if i["status"] == "succeeded"]
    failures = Counter(
        f"{i['status']}: {i['reason'] or '(no reason given)'}"
        for i in items
        if i["status"] not in ("succeeded", "escalated", "waiting")
    )
    return {
        "lines": total,
        "statuses": dict(sorted(counts.items())),
        "completion_rate": counts["succeeded"] / total if total else 0.0,
        "escalation_rate": counts["escalated"] / total if total else 0.0,
        "cost_usd": round(sum(float(i["cost_usd"]) for i in items), 10),
        "cost_per_completed_usd": {
            "p50": _pct(done_costs, 0.50),
            "p95": _pct(done_costs, 0.95),
            "max": max(done_costs) if done_costs else None,
        },
        "failures": dict(failures.most_common()),
        "waiting": [i["run_id"] for i in items if i["status"] == "waiting"],
    }


def render_summary(batch_id: str, s: dict[str, Any]) -> str:
    def usd(v: float | None) -> str:
        return "-" if v is None else f"${v:.4f}"

    c = s["cost_per_completed_usd"]
    lines = [
        f"batch {batch_id}: {s['lines']} lines: "
        + ", ".join(f"{n} {k}" for k, n in s["statuses"].items()),
        f"  completion {s['completion_rate']:.1%}, escalation {s['escalation_rate']:.1%}, "
        f"cost {usd(s['cost_usd'])}",
        f"  cost per completed task: p50 {usd(c['p50'])}, p95 {usd(c['p95'])}, max {usd(c['max'])}",
    ]
    if s["failures"]:
        lines.append("  failures by reason:")
        lines += [f"    {n} x {why}" for why, n in s["failures"].items()]
    if s["waiting"]:
        lines.append(f"  waiting for approval ({len(s['waiting'])}): {', '.join(s['waiting'])}")
        lines.append("    (decide with `flowrun inbox` / `flowrun approve`)")
    return "\n".join(lines)


def exit_code(items: list[dict[str, Any]], fail_under: float | None = None) -> int:
    """The worst line's exit code (SEVERITY), or with `fail_under` 0/1 by the completion rate."""
    if fail_under is not None:
        rate = summarize(items)["completion_rate"]
        return ExitCode.SUCCEEDED if rate >= fail_under else ExitCode.FAILED
    worst = max((SEVERITY.index(i["status"]) for i in items), default=0)
    return LINE_EXIT[SEVERITY[worst]]


def list_batches(runs: Runs, *, limit: int = 50) -> list[dict[str, Any]]:
    """Batches, newest first, each with its shown status and its lines by status."""
    out = []
    for b in runs.store.list_batches(limit=limit):
        counts = Counter(x["status"] for x in runs.store.batch_lines(b["batch_id"]))
        out.append(
            {
                "batch_id": b["batch_id"],
                "workflow": b["workflow"],
                "status": batch_state(b),
                "lines": b["total"],
                "line_statuses": dict(sorted(counts.items())),
                "data_path": b["data_path"],
                "created_at": b["created_at"],
                "finished_at": b["finished_at"],
            }
        )
    return out
