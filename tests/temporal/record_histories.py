"""Record the reference histories in tests/temporal/histories/ (run by hand after an interpreter
change, then bump INTERPRETER_VERSION if old histories no longer replay):

    .venv/bin/python -m tests.temporal.record_histories

Starts its own dev server on free ports. Spec paths are stored relative to the repository root,
so the histories replay from any checkout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from temporalio.client import Client

from runner.plan.compile import compile_plan
from runner.runs import Runs
from runner.spec import load_spec
from runner.store import open_store
from runner.temporal.activities import run_result_from_json
from runner.temporal.client import Target, settle, start
from runner.temporal.client import decide as wake
from runner.temporal.worker import make_worker
from tests.temporal.conftest import ROOT, free_port
from tests.temporal.inproc import run_input

HISTORIES = Path(__file__).parent / "histories"


def _plan(rel: str) -> Any:
    return compile_plan(load_spec(str(ROOT / rel)))


async def _record(address: str, tmp: Path) -> None:
    client = await Client.connect(address)
    store = open_store(tmp / "flowrun.db")
    queue = "record"
    target = Target(address=address, task_queue=queue)
    async with make_worker(client, task_queue=queue):
        # 1: reads, a gate, two live writes
        crash = "tests/temporal/specs/crash.yaml"
        run = run_input(
            _plan(crash), {"seconds": 0}, store=store, run_id="hist-writes", responses=None,
            options={"live": True}, spec_path=crash,
        )  # fmt: skip
        await _save(client, await start(client, run, target), "writes")
        # 2: an approval decided by update, then a switch
        spec = "tests/temporal/specs/approve.yaml"
        run = run_input(
            _plan(spec), {}, store=store, run_id="hist-approval", responses=None,
            options={"live": True}, spec_path=spec,
        )  # fmt: skip
        handle = await start(client, run, target)
        assert (await settle(handle))["status"] == "waiting"
        Runs(store).record_decision(
            "hist-approval", "ok", approve=True, by="alice", decision={"note": "fast"}
        )
        await wake(client, "hist-approval", "ok")
        await _save(client, handle, "approval")
        # 3: the reference support workflow on recorded model responses (LLM nodes, switch, gate)
        spec = "specs/support_refund.yaml"
        responses = ROOT / "examples" / "responses" / "refund_granted.jsonl"
        import json

        inputs = json.loads((ROOT / "examples/inputs/refund_granted.json").read_text())
        run = run_input(
            _plan(spec), inputs, store=store, run_id="hist-refund", responses=responses,
            options={"scopes": ["refunds:write"]}, spec_path=spec,
        )  # fmt: skip
        await _save(client, await start(client, run, target), "support_refund")


async def _save(client: Client, handle: Any, name: str) -> None:
    result = run_result_from_json(await handle.result())
    history = await handle.fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json(), encoding="utf-8")
    print(f"{name}: {result.status}, {len(history.events)} events")


def main() -> None:
    port = free_port()
    cli = str(Path(sys.executable).parent / "temporal")
    server = subprocess.Popen(
        [cli, "server", "start-dev", "--ip", "127.0.0.1", "--headless", "--port", str(port),
         "--http-port", str(free_port()), "--metrics-port", str(free_port()),
         "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(4)
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.setdefault("TTOOLS_LOG", str(Path(tmp) / "ttools.log"))
            support = Path(tmp) / "support.db"
            subprocess.run([sys.executable, "-m", "tools.seed", "--db", str(support)], check=True,
                           capture_output=True, cwd=ROOT)  # fmt: skip
            os.environ["FLOWRUN_SUPPORT_DB"] = str(support)
            os.chdir(ROOT)
            asyncio.run(_record(f"127.0.0.1:{port}", Path(tmp)))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


if __name__ == "__main__":
    main()
