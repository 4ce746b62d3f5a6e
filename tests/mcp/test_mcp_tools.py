"""MCP tools inside the envelope, against the fake server (a real MCP server over stdio)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runner.mcp.pool import running_servers
from tests.mcp.conftest import fake_server, lock, run_spec, starts, write_spec

pytestmark = pytest.mark.slow  # each run starts a Python MCP server


def spec(tmp_path: Path, tools: str, nodes: str, extra: str = "") -> Path:
    return write_spec(
        tmp_path,
        f"""apiVersion: flowrun/v1
kind: Workflow
metadata: {{name: stock-flow}}
mcp_servers:
  shop: {fake_server(tmp_path)}
tools:
{tools}
{extra}
nodes:
{nodes}
""",
    )


READS = """  lookup: {mcp: shop}
  lookup_again: {mcp: shop, tool: lookup}"""


def test_structured_read_reuses_one_server_per_run_and_stops_it(tmp_path: Path) -> None:
    path = spec(
        tmp_path,
        READS,
        """  first: {tool: lookup, args: {sku: A-1}}
  second: {tool: lookup_again, args: {sku: "${{ nodes.first.output.sku }}-2"}}""",
        "outputs: {stock: '${{ nodes.second.output.stock }}', sku: '${{ nodes.second.output.sku }}'}",
    )
    lock(path)
    locked = json.loads((tmp_path / "flow.mcp.lock.json").read_text())
    assert locked["spec"] == "stock-flow"
    assert locked["servers"]["shop"]["tools"]["lookup"]["annotations"]["readOnlyHint"] is True
    assert len(starts(tmp_path)) == 1  # the lock command's own connection
    plan, result = run_spec(path)
    assert result.status == "succeeded", result.reason
    assert result.outputs == {"stock": 7, "sku": "A-1-2"}
    assert result.usage.tool_calls == 2
    assert len(starts(tmp_path)) == 2  # one more start for the run, shared by both nodes
    assert running_servers() == 0
    pid = int(starts(tmp_path)[-1].split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped when the run ended
    # MCP results are untrusted unless the contract says trusted; effect from the hints
    step = plan.nodes["first"].tool
    assert step is not None
    assert (step.contract.effect, step.contract.trust, step.contract.idempotent) == (
        "read",
        "untrusted",
        True,
    )


WRITES = """  note: {mcp: shop, tool: add_note}"""


def test_write_without_preview_is_refused_in_dry_run_and_runs_live(
    tmp_path: Path, notes: Path
) -> None:
    path = spec(
        tmp_path,
        WRITES,
        """  check: {gate: [{check: "true", message: ok}]}
  write: {tool: note, needs: check, args: {text: hello}}""",
        "policy_default: {write: allow}",
    )
    lock(path)
    _, dry = run_spec(path)
    assert dry.status == "denied"
    assert "dry run" in (dry.nodes["write"].error or "")
    assert "no `preview`" in (dry.nodes["write"].error or "")
    assert not notes.exists()  # nothing was written
    _, live = run_spec(path, live=True)
    assert live.status == "succeeded", live.reason
    assert [json.loads(x)["text"] for x in notes.read_text().splitlines()] == ["hello"]
    assert live.nodes["write"].output == "noted: hello"


def test_policy_scopes_and_budget_apply_to_mcp_tools(tmp_path: Path, notes: Path) -> None:
    path = spec(
        tmp_path,
        READS + "\n  scoped: {mcp: shop, tool: lookup, scopes: [inventory]}",
        """  one: {tool: lookup, args: {sku: A}}
  two: {tool: lookup_again, needs: one, args: {sku: B}}""",
        """budget: {max_tool_calls: 1}
policies:
  - {id: no-sku-x, when: 'tool == "lookup" && args.sku == "X"', effect: deny, reason: "X is off limits"}""",
    )
    lock(path)
    _, res = run_spec(path)
    assert res.status == "budget_exceeded"
    assert res.nodes["one"].status == "succeeded"
    assert res.nodes["two"].status == "budget_exceeded"
    denied = spec(
        tmp_path,
        READS + "\n  scoped: {mcp: shop, tool: lookup, scopes: [inventory]}",
        """  one: {tool: lookup, args: {sku: X}}""",
        """policies:
  - {id: no-sku-x, when: 'tool == "lookup" && args.sku == "X"', effect: deny, reason: "X is off limits"}""",
    )
    _, res = run_spec(denied)
    assert res.status == "denied"
    assert "no-sku-x" in (res.nodes["one"].error or "")
    scoped = spec(
        tmp_path,
        READS + "\n  scoped: {mcp: shop, tool: lookup, scopes: [inventory]}",
        """  one: {tool: scoped, args: {sku: A}}""",
    )
    _, res = run_spec(scoped)
    assert res.status == "denied"
    _, res = run_spec(scoped, scopes=("inventory",))
    assert res.status == "succeeded", res.reason


FAILURES = """  crash: {mcp: shop}
  bad_result: {mcp: shop}
  slow: {mcp: shop, timeout: 1s}
  fail: {mcp: shop}
  lookup: {mcp: shop}"""


@pytest.mark.parametrize(
    ("node", "error_type", "words"),
    [
        ("crash", "McpServerExited", "exited during a call of 'crash'"),
        ("bad_result", "McpResultInvalid", "does not match its outputSchema: 'stock' is a"),
        ("slow", "McpTimeout", "did not answer within 1s"),
        ("fail", "McpToolError", "the warehouse API said no"),
    ],
)
def test_server_failures_fail_the_node_with_a_reason(
    tmp_path: Path, node: str, error_type: str | None, words: str
) -> None:
    args = "{seconds: 120}" if node == "slow" else "{}"
    path = spec(
        tmp_path,
        FAILURES,
        f"""  call: {{tool: {node}, args: {args}}}
  after: {{tool: lookup, needs: call, args: {{sku: A}}}}""",
    )
    lock(path)
    _, res = run_spec(path)
    assert res.status == "failed"
    call = res.nodes["call"]
    assert words in (call.error or ""), call.error
    assert call.detail.get("error_type") == error_type
    assert "after" not in res.nodes or res.nodes["after"].status != "succeeded"
    if node == "slow":  # the tool sleeps 120s: the node ended at its 1s bound (plus start-up)
        assert call.duration_s < 90
    assert running_servers() == 0


def test_a_server_that_does_not_start_fails_the_node(tmp_path: Path) -> None:
    path = spec(tmp_path, READS, """  first: {tool: lookup, args: {sku: A}}""")
    lock(path)
    broken = path.read_text().replace(str(Path(__file__).parent / "mcp_fake_server.py"), "/nope.py")
    # same identity would be needed to compile: rewrite the lock's identity too
    lockfile = tmp_path / "flow.mcp.lock.json"
    lockfile.write_text(
        lockfile.read_text().replace(str(Path(__file__).parent / "mcp_fake_server.py"), "/nope.py")
    )
    path.write_text(broken)
    _, res = run_spec(path)
    assert res.status == "failed"
    assert res.nodes["first"].detail.get("error_type") == "McpStartError"
    assert "could not be started" in (res.nodes["first"].error or "")


def test_a_server_whose_tool_changed_since_the_lock_fails_the_node(tmp_path: Path) -> None:
    path = spec(tmp_path, READS, """  first: {tool: lookup, args: {sku: A}}""")
    lock(path)
    # the same server (identity: command and env names) now says lookup may write
    path.write_text(
        path.read_text().replace("FAKE_MCP_VARIANT: first", "FAKE_MCP_VARIANT: changed")
    )
    _, res = run_spec(path)
    assert res.status == "failed"
    assert res.nodes["first"].detail.get("error_type") == "McpLockStale"
    assert "changed since the lock" in (res.nodes["first"].error or "")
