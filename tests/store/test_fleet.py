"""Issue 22's fleet: 4 `flowrun worker` processes on one Temporal server and one PostgreSQL store,
each in a folder and an environment of its own (its own cwd, HOME and TMPDIR, no SQLite file, the
tools importable through PYTHONPATH only), run 200 runs of a workflow with two writes while the
test SIGKILLs workers inside writes and starts replacements. Runs over 50 wait for an approval,
decided through `flowrun serve` (real HTTP) on the same store.

The writes land in a database of their own (tests/store/fleet_tools.py: the outside world, shared
as a payment API is). Afterwards: every run ended as its input says it must; each succeeded run
made both effects once, no other run made any; and no write was called again unless the call
before it was cut off by a SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.temporal.conftest import free_port, temporal_address

__all__ = ["temporal_address"]  # the session's dev server (a fixture)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SPEC = Path(__file__).parent / "specs" / "fleet.yaml"
RUNS = 200
WORKERS = 4
TOKEN = "fleet-console-token"
SEAL_KEY = "f" * 43 + "="  # one key for every process of the store
DEADLINE_S = 900.0  # generous: a loaded machine; the test ends as soon as every run has

# holds: run index -> where its worker is killed (fleet_tools.py); spread over the runs, so
# kills come one after another while the other runs go on
HOLDS = {
    7: "pay:before", 31: "ship:after", 58: "pay:after", 84: "ship:before",
    111: "pay:before", 137: "ship:after", 166: "pay:after", 191: "ship:before",
    25: "pay:after", 145: "ship:before",  # both are approval runs: killed after the approval
}  # fmt: skip


@dataclass(frozen=True)
class Case:
    run_id: str
    inputs: dict[str, Any]
    expect: str  # the run's final status
    decide: str | None  # approve / reject from the console, or None (no approval)


def cases() -> list[Case]:
    out = []
    for i in range(RUNS):
        order = f"o{i:03d}"
        hold = HOLDS.get(i, "none")
        if i % 20 == 10:  # the gate stops it: no effect
            out.append(Case(f"f{i:03d}", {"order": order, "amount": 0.0, "hold": hold},
                            "escalated", None))  # fmt: skip
        elif i % 10 == 5:  # over 50: an approval; one in four is rejected
            reject = i % 40 == 35
            out.append(Case(f"f{i:03d}", {"order": order, "amount": 75.0 + i, "hold": hold},
                            "denied" if reject else "succeeded",
                            "reject" if reject else "approve"))  # fmt: skip
        else:
            out.append(Case(f"f{i:03d}", {"order": order, "amount": 10.0 + i % 40, "hold": hold},
                            "succeeded", None))  # fmt: skip
    for i, hold in HOLDS.items():
        assert out[i].expect == "succeeded", (i, hold)  # a hold needs a run that writes
    return out


def case_note(case: Case) -> str:
    """What the console's run page says after the decision."""
    return (
        "Approved; the run continues."
        if case.decide == "approve"
        else "Rejected; the run ends denied."
    )


def own_env(folder: Path, **extra: str) -> dict[str, str]:
    """An environment of its own: nothing of flowrun's, PostgreSQL's or the tests' inherited;
    HOME, TMPDIR and flowrun's local folder under `folder`."""
    keep = ("PATH", "LANG", "LC_ALL", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    for sub in ("home", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(folder / "home"),
        TMPDIR=str(folder / "tmp"),
        FLOWRUN_STORE_DIR=str(folder / ".flowrun"),
        FLOWRUN_SEAL_KEY=SEAL_KEY,
        PYTHONPATH=str(ROOT),  # flowrun and the tools' package: importable, not in the cwd
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        **extra,
    )
    return env


class Fleet:
    """The worker processes: started in parallel, killed by pid, replaced."""

    def __init__(self, tmp: Path, address: str, queue: str, store: str, effects: str) -> None:
        self.tmp, self.address, self.queue = tmp, address, queue
        self.store, self.effects = store, effects
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.logs: dict[int, Path] = {}
        self.killed: set[int] = set()
        self._n = 0

    def start(self) -> int:
        name = f"w{self._n}"
        self._n += 1
        folder = self.tmp / name
        folder.mkdir()
        env = own_env(folder, FLOWRUN_STORE=self.store, FLEET_EFFECTS=self.effects,
                      FLEET_WORKER=name)  # fmt: skip
        log = folder / "worker.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "runner.cli", "worker", "--temporal-address",
                 self.address, "--task-queue", self.queue],
                cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.procs[proc.pid] = proc
        self.logs[proc.pid] = log
        return proc.pid

    def ready(self, pid: int) -> bool:
        proc = self.procs[pid]
        if proc.poll() is not None:
            raise AssertionError(f"worker {pid} exited: {self.logs[pid].read_text()[-2000:]}")
        return '"worker": "ready"' in self.logs[pid].read_text()

    def kill(self, pid: int) -> bool:
        """SIGKILL a worker of the fleet (False: not one, or already dead)."""
        proc = self.procs.get(pid)
        if proc is None or proc.poll() is not None:
            return False
        os.kill(pid, signal.SIGKILL)
        proc.wait(30)
        self.killed.add(pid)
        return True

    def alive(self) -> list[int]:
        return [pid for pid, p in self.procs.items() if p.poll() is None]

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


def wait_until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Console:
    """`flowrun serve` on the store, in a folder of its own, and an HTTP session logged in."""

    def __init__(self, tmp: Path, store: str) -> None:
        import httpx

        folder = tmp / "console"
        folder.mkdir()
        self.port = free_port()
        self.log = folder / "serve.log"
        # the approver: a person of the store's identities (the recorded name is the login's)
        added = subprocess.run(
            [sys.executable, "-m", "runner.cli", "users", "add", "lead", "--role", "approver"],
            cwd=folder, env=own_env(folder, FLOWRUN_STORE=store), capture_output=True, text=True,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        self.token = added.stdout.strip()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runner.cli", "serve", "--port", str(self.port),
                 "--token", TOKEN],
                cwd=folder, env=own_env(folder, FLOWRUN_STORE=store),
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120)
        self.csrf = ""

    def up(self) -> bool:
        import httpx

        if self.proc.poll() is not None:
            raise AssertionError(f"flowrun serve exited: {self.log.read_text()[-2000:]}")
        try:
            return self.http.get("/login").status_code == 200
        except httpx.TransportError:
            return False

    def login(self) -> None:
        r = self.http.post("/login", data={"token": self.token}, follow_redirects=False)
        assert r.status_code == 303, r.text
        m = re.search(r'name="csrf" value="([^"]+)"', self.http.get("/").text)
        assert m, "no CSRF token in the console's page"
        self.csrf = m.group(1)

    def decide(self, run_id: str, node: str, how: str) -> Any:
        data = {"csrf": self.csrf}
        if how == "reject":
            data["reason"] = "over the limit"
        return self.http.post(f"/approvals/{run_id}/{node}/{how}", data=data, follow_redirects=True)

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


async def start_runs(store: Any, spec: Path, address: str, queue: str, todo: list[Case]) -> None:
    """Record each run in the store and start its workflow, as `flowrun execute --backend
    temporal` does, without following it: the test watches the store instead."""
    from runner.backends.temporal import TemporalBackend, run_input
    from runner.plan.compile import compile_plan
    from runner.runs import create_run
    from runner.spec import load_spec
    from runner.temporal.client import start

    plan = compile_plan(load_spec(spec))
    backend = TemporalBackend(address=address, task_queue=queue)
    client = await backend._connect()

    async def one(case: Case) -> None:
        create_run(store, plan, case.inputs, run_id=case.run_id, responses_path=None,
                   options={"live": True, **backend.placement(case.run_id)})  # fmt: skip
        store.run_ended(case.run_id)  # the workers run it, through stores of their own
        store.update_run(case.run_id, pid=None)
        row = store.get_run(case.run_id)
        run = run_input(store, row, plan, interpreter_version=backend.interpreter_version)
        await start(client, run, backend.target)

    for case in todo:
        await one(case)


def test_four_workers_one_postgres_store_200_runs_sigkilled_inside_writes(
    tmp_path: Path, temporal_address: str, postgres_server: str, pg_url: str
) -> None:
    import psycopg

    from runner.store import open_store
    from tests.pg_server import new_database
    from tests.store.fleet_tools import SCHEMA

    effects = new_database(postgres_server)
    with psycopg.connect(effects, autocommit=True) as c:
        c.execute(SCHEMA)  # type: ignore[arg-type]
    todo = cases()
    t0 = time.monotonic()
    queue = f"fleet-{os.getpid()}"
    fleet = Fleet(tmp_path, temporal_address, queue, pg_url, effects)
    console = Console(tmp_path, pg_url)
    store = open_store(pg_url)  # the test's own view of the shared state
    deciders = ThreadPoolExecutor(max_workers=4)
    try:
        first = [fleet.start() for _ in range(WORKERS)]
        wait_until(lambda: all(fleet.ready(p) for p in first), 300, "four workers ready")
        wait_until(console.up, 300, "the console")
        console.login()
        started = time.monotonic()
        # the spec is the starter's file: gone once the runs are started, as the workers and
        # the console read each run's plan bundle from the store
        starter = tmp_path / "starter"
        starter.mkdir()
        spec = starter / SPEC.name
        shutil.copy(SPEC, spec)
        asyncio.run(start_runs(store, spec, temporal_address, queue, todo))
        shutil.rmtree(starter)
        by_id = {c.run_id: c for c in todo}
        handled: set[str] = set()  # `inside` keys dealt with
        decided: dict[str, Future[Any]] = {}  # run id -> the console's answer to its decision
        kills = 0
        deadline = time.monotonic() + DEADLINE_S
        while True:
            with psycopg.connect(effects, autocommit=True) as c:
                inside = c.execute("SELECT key, pid FROM inside").fetchall()
            for key, pid in inside:
                if key in handled:
                    continue
                handled.add(key)
                if fleet.kill(int(pid)):  # killed inside the write: a replacement comes up
                    kills += 1
                    fleet.start()
            for row in store.list_runs(status="waiting", limit=RUNS):
                case = by_id[row.run_id]
                if row.run_id not in decided and case.decide is not None:
                    # the console answers once the run has gone on: not in this loop, which
                    # must be free to kill a worker holding that run's write
                    decided[row.run_id] = deciders.submit(
                        console.decide, row.run_id, "ok", case.decide
                    )
            counts = store.status_counts()
            if sum(n for s, n in counts.items() if s not in ("running", "waiting")) == RUNS:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"runs not finished after {DEADLINE_S:.0f} s: {counts}")
            if not fleet.alive():
                raise AssertionError("no worker alive")
            time.sleep(0.1)
        finished = time.monotonic()

        # every run ended as its input says
        got = {r.run_id: r.status for r in store.list_runs(limit=RUNS + 1)}
        assert got == {c.run_id: c.expect for c in todo}
        assert set(decided) == {c.run_id for c in todo if c.decide is not None}
        for run_id, answer in decided.items():
            r = answer.result(timeout=300)
            assert r.status_code == 200, (run_id, r.status_code, r.text[-2000:])
            assert case_note(by_id[run_id]) in r.text, (run_id, r.text[-2000:])
        # an approval is decided once: the console refuses a second decision
        again = console.decide(
            next(c.run_id for c in todo if c.decide == "approve"), "ok", "reject"
        )
        assert again.status_code == 409 and "already approved by lead" in again.text

        # each hold was killed inside its write, by its own SIGKILL
        with psycopg.connect(effects, autocommit=True) as c:
            inside = c.execute("SELECT key, hold, pid FROM inside ORDER BY key").fetchall()
            effect_rows = c.execute("SELECT key, tool, run_order FROM effects").fetchall()
            attempts = c.execute("SELECT key, pid FROM attempts ORDER BY id").fetchall()
        expected_holds = {f"{hold.split(':')[0]}:o{i:03d}": hold for i, hold in HOLDS.items()}
        assert {k: h for k, h, _ in inside} == expected_holds
        assert {int(pid) for _, _, pid in inside} <= fleet.killed
        assert kills == len(fleet.killed) >= 1

        # 0 lost, 0 duplicated: both effects of every succeeded run, once; none of the others
        want = sorted(
            (f"{tool}:{c.inputs['order']}", tool, c.inputs["order"])
            for c in todo if c.expect == "succeeded" for tool in ("pay", "ship")
        )  # fmt: skip
        assert sorted(effect_rows) == want
        # a write is called again only when the call before it was cut off by a SIGKILL
        calls: dict[str, list[int]] = {}
        for key, pid in attempts:
            calls.setdefault(str(key), []).append(int(pid))
        assert set(calls) == {k for k, _, _ in want}
        again_calls = {k: pids for k, pids in calls.items() if len(pids) > 1}
        for key, pids in again_calls.items():
            assert set(pids[:-1]) <= fleet.killed, (key, pids, fleet.killed)
        assert set(expected_holds) <= set(again_calls)  # every held call was made again

        # the store agrees: every write of the ledger is done, one row per key
        for case in todo:
            ledger = store.ledger_for_run(case.run_id)
            writes = sorted((e["node_id"], e["status"]) for e in ledger if e["effect"] == "write")
            n = 2 if case.expect == "succeeded" else 0
            assert writes == [("charge", "done"), ("deliver", "done")][:n], case.run_id

        print(
            f"\nfleet: {RUNS} runs on {WORKERS} workers, {kills} SIGKILLs, "
            f"{len(decided)} console decisions; setup {started - t0:.1f} s, "
            f"runs {finished - started:.1f} s"
        )
    finally:
        deciders.shutdown(wait=True, cancel_futures=True)
        store.close()
        console.stop()
        fleet.stop()
