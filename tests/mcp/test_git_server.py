"""mcp-server-git (PyPI) over stdio against a temporary repository: a spec reads log and diff."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.mcp.conftest import START_TIMEOUT, fake_server, flowrun, lock, write_spec

pytestmark = pytest.mark.slow  # starts real MCP servers


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git = pytest.importorskip("git")  # GitPython, a dependency of mcp-server-git
    path = tmp_path / "repo"
    r = git.Repo.init(path)
    with r.config_writer() as cw:
        cw.set_value("user", "name", "Ada")
        cw.set_value("user", "email", "ada@example.com")
    (path / "notes.txt").write_text("first line\n")
    r.index.add(["notes.txt"])
    r.index.commit("start the notes")
    (path / "notes.txt").write_text("first line\nsecond line\n")
    r.index.add(["notes.txt"])
    r.index.commit("add a second line")
    return path


def review_spec(tmp_path: Path, repo: Path, effect: str = "") -> Path:
    cmd = json.dumps([sys.executable, "-m", "mcp_server_git", "--repository", str(repo)])
    return write_spec(
        tmp_path,
        f"""apiVersion: flowrun/v1
kind: Workflow
metadata: {{name: git-review, description: Summarize the last commits of a repository}}
inputs:
  type: object
  properties: {{count: {{type: integer}}}}
  required: [count]
mcp_servers:
  git: {{command: {cmd}, timeout: {START_TIMEOUT}}}
tools:
  git_log: {{mcp: git{effect}}}
  diff: {{mcp: git, tool: git_diff}}
nodes:
  log:
    tool: git_log
    args: {{repo_path: "{repo}", max_count: "${{{{ inputs.count }}}}"}}
  changes:
    tool: diff
    args: {{repo_path: "{repo}", target: "HEAD~1"}}
outputs:
  log: "${{{{ nodes.log.output }}}}"
  diff: "${{{{ nodes.changes.output }}}}"
""",
        "review.yaml",
    )


def test_a_spec_reads_log_and_diff_through_mcp_server_git(tmp_path: Path, repo: Path) -> None:
    spec = review_spec(tmp_path, repo)
    res = flowrun("validate", str(spec))
    assert res.exit_code == 2
    assert "mcp-lock-missing" in res.output and "flowrun tools lock" in res.output
    res = flowrun("tools", "lock", str(spec))
    assert res.exit_code == 0, res.output
    assert "git.git_log: read, idempotent" in res.output
    locked = json.loads((tmp_path / "review.mcp.lock.json").read_text())
    assert set(locked["servers"]["git"]["tools"]) == {"git_log", "git_diff"}
    assert locked["servers"]["git"]["server"]["name"] == "mcp-git"
    res = flowrun("validate", str(spec))
    assert res.exit_code == 0, res.output
    assert "git_log (read)" in res.output
    res = flowrun("validate", "--check-mcp", str(spec))
    assert res.exit_code == 0, res.output
    res = flowrun("execute", str(spec), "--input-json", '{"count": 1}', "--output", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert "add a second line" in out["outputs"]["log"]
    assert "start the notes" not in out["outputs"]["log"]  # max_count 1
    assert "+second line" in out["outputs"]["diff"]
    assert out["totals"]["tool_calls"] == 2
    # the run is in the store and its trace has the execute_tool calls
    trace = flowrun("trace", out["run_id"])
    assert trace.exit_code == 0, trace.output
    assert "execute_tool git_log #1" in trace.output
    assert "execute_tool diff #1" in trace.output


def test_a_write_tool_may_not_be_declared_read(tmp_path: Path, repo: Path) -> None:
    cmd = json.dumps([sys.executable, "-m", "mcp_server_git", "--repository", str(repo)])
    spec = write_spec(
        tmp_path,
        f"""apiVersion: flowrun/v1
kind: Workflow
metadata: {{name: git-reset}}
mcp_servers:
  git: {{command: {cmd}, timeout: {START_TIMEOUT}}}
tools:
  reset: {{mcp: git, tool: git_reset, effect: read}}
nodes:
  undo: {{tool: reset, args: {{repo_path: "{repo}"}}}}
""",
        "reset.yaml",
    )
    lock(spec)
    res = flowrun("validate", str(spec))
    assert res.exit_code == 2
    assert "reset.yaml:7:46: mcp-looser-than-server: tool 'reset' says `effect: read`" in res.output
    assert "annotates 'git_reset' as destructive" in res.output


def test_lock_names_a_missing_tool_and_check_mcp_sees_a_changed_server(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        f"""apiVersion: flowrun/v1
kind: Workflow
metadata: {{name: stock}}
mcp_servers:
  shop: {fake_server(tmp_path)}
tools:
  lookup: {{mcp: shop, tool: lokup}}
nodes:
  one: {{tool: lookup, args: {{sku: A}}}}
""",
    )
    res = flowrun("tools", "lock", str(spec))
    assert res.exit_code == 2
    assert "unknown-mcp-tool: MCP server 'shop' lists no tool 'lokup'" in res.output
    assert "did you mean 'lookup'?" in res.output
    spec.write_text(spec.read_text().replace("lokup", "lookup"))
    lock(spec)
    assert flowrun("validate", "--check-mcp", str(spec)).exit_code == 0
    spec.write_text(
        spec.read_text().replace("FAKE_MCP_VARIANT: first", "FAKE_MCP_VARIANT: changed")
    )
    assert flowrun("validate", str(spec)).exit_code == 0  # offline: the lock still matches
    res = flowrun("validate", "--check-mcp", str(spec))
    assert res.exit_code == 2
    assert "mcp-lock-stale: MCP tool 'lookup' of server 'shop' changed since the lock" in res.output
    assert "readOnlyHint True → False" in res.output
    broken = spec.read_text().replace(str(Path(__file__).parent / "mcp_fake_server.py"), "/no.py")
    spec.write_text(broken)
    res = flowrun("tools", "lock", str(spec))
    assert res.exit_code == 2
    assert "mcp-server-unreachable: MCP server 'shop'" in res.output
    assert "No such file or directory" in res.output  # the server's own stderr
