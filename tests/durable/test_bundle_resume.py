"""A parked run continues from its plan bundle, whatever happened to the project's files since."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from runner.store.sqlite import SCHEMA_VERSION
from tests.durable.conftest import Flowrun, only_run_id, refund_case, tool_log
from tests.unit.test_bundle import FORBID, write_project

RESPONSES = [
    {"node": "sub.say", "content": "hello"},
    {"node": "pick", "content": {"label": "picked"}},
]


def _digest(flowrun: Flowrun, run_id: str) -> str:
    shown = flowrun("show", run_id)
    assert shown.returncode == 0, shown.stderr
    (line,) = [x for x in shown.stdout.splitlines() if "plan bundle" in x]
    digest = line.split("sha256:")[1]
    as_json = json.loads(flowrun("show", run_id, "--output", "json").stdout)
    assert as_json["bundle_digest"] == digest
    return digest


def test_approval_resumes_with_the_files_the_run_started_with(
    flowrun: Flowrun, env: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "project"
    spec = str(write_project(project))
    responses = tmp_path / "responses.jsonl"
    responses.write_text("".join(json.dumps(r) + "\n" for r in RESPONSES), encoding="utf-8")
    first = flowrun("execute", spec, "--responses", str(responses), "--live", "--output", "json")
    assert first.returncode == 6, first.stderr
    run_id = only_run_id(env)
    digest = _digest(flowrun, run_id)

    # every file the run was compiled from changes or goes away; on disk it no longer validates
    (project / "prompts" / "pick.j2").write_text("{{ broken", encoding="utf-8")
    (project / "policies" / "pay.cedar").write_text(FORBID, encoding="utf-8")
    shutil.rmtree(project / "flows")
    assert flowrun("validate", spec).returncode != 0

    done = flowrun("approve", run_id, "ok", "--by", "lead", "--output", "json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "succeeded"
    assert out["outputs"] == {"paid": "child:first"}
    # the Cedar file as it was allowed the write; the subflow ran from the bundle too
    writes = [e["label"] for e in tool_log(env) if e["kind"] == "write"]
    assert writes == ["child:first"]
    assert _digest(flowrun, run_id) == digest


def test_a_changed_prompt_file_shows_as_another_digest(
    flowrun: Flowrun, env: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "project"
    spec = str(write_project(project))
    responses = tmp_path / "responses.jsonl"
    responses.write_text("".join(json.dumps(r) + "\n" for r in RESPONSES), encoding="utf-8")
    first = flowrun("execute", spec, "--run-id", "r1", "--responses", str(responses))
    assert first.returncode == 6, first.stderr
    (project / "prompts" / "pick.j2").write_text("Pick one.\n", encoding="utf-8")
    second = flowrun("execute", spec, "--run-id", "r2", "--responses", str(responses))
    assert second.returncode == 6, second.stderr
    assert _digest(flowrun, "r1") != _digest(flowrun, "r2")


def test_a_store_from_before_bundles_opens_and_its_runs_resume_from_their_spec_text(
    flowrun: Flowrun, env: dict[str, str]
) -> None:
    assert flowrun(*refund_case("refund_needs_approval")).returncode == 6
    run_id = only_run_id(env)
    with sqlite3.connect(
        env["FLOWRUN_STORE"]
    ) as c:  # back to schema 2, as an older flowrun left it
        c.executescript(
            "DROP TABLE bundles; ALTER TABLE runs DROP COLUMN bundle_digest; PRAGMA user_version = 2;"
        )
    shown = flowrun("show", run_id, "--output", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["bundle_digest"] is None
    done = flowrun("approve", run_id, "approve", "--by", "lead", "--output", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    with sqlite3.connect(env["FLOWRUN_STORE"]) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
