"""The lock read offline: validate, diff and the static rules need no server (fast tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from runner.mcp.lock import Lock, identity, write_lock
from runner.spec.models import McpServer
from tests.mcp.conftest import flowrun, write_spec

COMMAND = ["python", "-m", "mcp_server_git", "--repository", "."]


def _entry(read_only: bool, props: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": "Shows the commit logs",
        "inputSchema": {"type": "object", "properties": props, "required": ["repo_path"]},
        "outputSchema": None,
        "annotations": {"readOnlyHint": read_only, "idempotentHint": read_only},
    }


def locked(path: Path, spec: str, entry: dict[str, Any], command: list[str] = COMMAND) -> None:
    server = McpServer(command=command)
    write_lock(
        Lock(
            path=path.with_name(f"{path.stem}.mcp.lock.json"),
            spec=spec,
            servers={
                "git": {
                    "identity": identity(server),
                    "server": {"name": "mcp-git", "version": "1"},
                    "tools": {"git_log": entry},
                }
            },
        )
    )


def spec_text(extra_tool: str = "", nodes: str = "") -> str:
    return f"""apiVersion: flowrun/v1
kind: Workflow
metadata: {{name: git-log}}
mcp_servers:
  git: {{command: {json.dumps(COMMAND)}}}
tools:
  git_log: {{mcp: git}}
{extra_tool}
nodes:
  log: {{tool: git_log, args: {{repo_path: .}}}}
{nodes}
"""


REPO = {"repo_path": {"type": "string"}}


def test_validate_reads_schema_and_effect_from_the_lock(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, spec_text())
    locked(spec, "git-log", _entry(True, REPO))
    res = flowrun("validate", str(spec), "--output", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["tools"] == {"git_log": "read"}
    # the server's hints decide the effect: a tool not marked read-only is a write
    locked(spec, "git-log", _entry(False, REPO))
    res = flowrun("validate", str(spec))
    assert res.exit_code == 2
    assert "ungated-write: write node 'log' can run without passing a gate" in res.output
    spec.write_text(spec_text().replace("{repo_path: .}", "{path: .}"))
    res = flowrun("validate", str(spec))
    assert res.exit_code == 2
    assert "missing-arg: tool 'git_log' needs argument 'repo_path'" in res.output


def test_a_lock_for_another_server_is_rejected(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, spec_text())
    locked(spec, "git-log", _entry(True, REPO), command=["python", "-m", "other_server"])
    res = flowrun("validate", str(spec))
    assert res.exit_code == 2
    assert "flow.yaml:5:3: mcp-lock-mismatch: MCP server 'git' is not the server the lock" in (
        res.output
    )


def test_untrusted_mcp_results_may_not_reach_a_write_unchecked(tmp_path: Path) -> None:
    tools = '  file: {impl: "tools_fixture:issue_refund", effect: write}\npolicy_default: {write: allow}'
    nodes = """  ok: {gate: [{check: "true", message: fine}], needs: log}
  write:
    tool: file
    needs: ok
    args: {order_id: "${{ nodes.log.output }}", amount_usd: 1.0, reason: x}"""
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    shutil.copy(fixtures / "tools_fixture.py", tmp_path / "tools_fixture.py")
    path = write_spec(tmp_path, spec_text(tools, nodes))
    locked(path, "git-log", _entry(True, REPO))
    res = flowrun("validate", str(path))
    assert res.exit_code == 2, res.output
    assert "tainted-write: argument 'order_id' of write node 'write' comes from untrusted" in (
        res.output
    )
    trusted = spec_text(tools, nodes).replace("{mcp: git}", "{mcp: git, trust: trusted}")
    path.write_text(trusted)
    res = flowrun("validate", str(path))
    assert res.exit_code == 0, res.output


def test_diff_shows_a_server_change_that_reached_the_lock(tmp_path: Path) -> None:
    base = write_spec(tmp_path, spec_text(), "base.yaml")
    head = write_spec(tmp_path, spec_text(), "head.yaml")
    locked(base, "git-log", _entry(True, REPO))
    locked(head, "git-log", _entry(False, {**REPO, "force": {"type": "boolean"}}))
    res = flowrun("diff", str(base), str(head), "--output", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    tool = next(t for t in out["tools"] if t["tool"] == "git_log")
    assert tool["change"] == "changed"
    assert tool["effect"] == "read → write"
    assert "locked" in tool["fields"]
    assert any(f["class"] == "new-write-path" for f in out["flags"]), out["flags"]


def test_a_write_known_only_from_its_annotations_is_warned_when_nothing_allows_it(
    tmp_path: Path,
) -> None:
    nodes = '  ok: {gate: [{check: "true", message: m}]}\n'
    spec = write_spec(
        tmp_path,
        spec_text(nodes=nodes).replace(
            "args: {repo_path: .}}", "needs: [ok], args: {repo_path: .}}"
        ),
    )
    locked(spec, "git-log", _entry(False, REPO))
    res = flowrun("validate", str(spec))
    assert res.exit_code == 0, res.output
    assert "write-never-allowed: no policy allows write tool 'git_log'" in res.output
    locked(spec, "git-log", _entry(True, REPO))
    res = flowrun("validate", str(spec))
    assert res.exit_code == 0 and "write-never-allowed" not in res.output, res.output
