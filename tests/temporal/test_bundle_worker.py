"""A worker needs the tools' package, not the project folder: the run carries its plan bundle."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Replayer, WorkflowReplayResult

from runner.temporal.client import workflow_id
from runner.temporal.worker import WORKFLOWS, sandbox_runner
from tests.temporal.conftest import ROOT, tool_log, wait_for

SPEC = """\
apiVersion: flowrun/v1
kind: Workflow
metadata: {name: bundled-on-temporal}
policy_files: [policies/pay.cedar]
models:
  small: {model: openai/gpt-4o-mini, max_tokens: 50}
tools:
  step: {impl: tests.temporal.ttools:step}
  effect: {impl: tests.temporal.ttools:effect, effect: write}
nodes:
  first: {tool: step, args: {label: first}}
  pick:
    llm: small
    needs: [first]
    prompt_file: prompts/pick.j2
    output:
      type: object
      properties: {label: {type: string}}
      required: [label]
      additionalProperties: false
  check:
    gate:
      - {check: 'nodes.pick.output.label == "picked"', message: unexpected label}
  pay: {tool: effect, needs: [check], args: {label: "${{ nodes.pick.output.label }}"}}
outputs:
  paid: "${{ nodes.pay.output.label }}"
"""


def _runs(store: str) -> list[str]:
    if not Path(store).exists():
        return []
    with sqlite3.connect(store) as c:
        try:
            return [r[0] for r in c.execute("SELECT run_id FROM runs")]
        except sqlite3.OperationalError:  # the store is being created
            return []


async def _replay(address: str, run_id: str) -> WorkflowReplayResult:
    client = await Client.connect(address)
    history = await client.get_workflow_handle(workflow_id(run_id)).fetch_history()
    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=sandbox_runner())
    return await replayer.replay_workflow(history, raise_on_replay_failure=False)


def test_worker_in_an_empty_directory_runs_prompts_and_cedar_from_the_bundle(
    env: dict[str, str], temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "prompts").mkdir(parents=True)
    (project / "policies").mkdir()
    (project / "spec.yaml").write_text(SPEC, encoding="utf-8")
    (project / "prompts" / "pick.j2").write_text("Pick a label.\n", encoding="utf-8")
    (project / "policies" / "pay.cedar").write_text(
        'permit(principal, action == Action::"effect", resource);\n', encoding="utf-8"
    )
    responses = tmp_path / "responses.jsonl"
    responses.write_text(json.dumps({"node": "pick", "content": {"label": "picked"}}) + "\n")
    client = subprocess.Popen(
        [
            sys.executable, "-m", "runner.cli", "execute", str(project / "spec.yaml"),
            "--responses", str(responses), "--live", "--output", "json", "--run-id", "b1",
            "--backend", "temporal", "--temporal-address", temporal_address,
            "--task-queue", task_queue,
        ],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    worker: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: _runs(env["FLOWRUN_STORE"]) == ["b1"], 60, "the run to be recorded")
        shutil.rmtree(project)  # the workflow has started; from now on only its input counts
        empty = tmp_path / "empty"
        empty.mkdir()
        log = tmp_path / "worker.log"
        with log.open("w") as out:
            worker = subprocess.Popen(
                [
                    sys.executable, "-m", "runner.cli", "worker",
                    "--temporal-address", temporal_address, "--task-queue", task_queue,
                ],
                cwd=empty, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
        stdout, stderr = client.communicate(timeout=120)
        assert client.returncode == 0, stderr + log.read_text()[-2000:]
        out_json = json.loads(stdout)
        assert out_json["status"] == "succeeded"
        assert out_json["outputs"] == {"paid": "picked"}
        assert [e["label"] for e in tool_log(env) if e["kind"] == "write"] == ["picked"]
        assert list(empty.iterdir()) == []
        # its history replays by itself too: the project folder is gone
        assert asyncio.run(_replay(temporal_address, "b1")).replay_failure is None
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGINT)
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
