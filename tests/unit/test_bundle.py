"""Plan bundles: every file that decides a run, gathered at compile time under one digest."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from runner.errors import SpecError
from runner.mcp.lock import Lock, identity, write_lock
from runner.plan.bundle import Bundle, BundleError
from runner.plan.compile import compile_bundle, compile_plan
from runner.spec import load_spec
from runner.spec.models import McpServer

MAIN = """\
apiVersion: flowrun/v1
kind: Workflow
metadata: {name: bundled}
policy_files: [policies/pay.cedar]
models:
  small: {model: openai/gpt-4o-mini, max_tokens: 50}
tools:
  step: {impl: tests.durable.dtools:step}
  effect: {impl: tests.durable.dtools:effect, effect: write}
nodes:
  first: {tool: step, args: {label: first}}
  ok:
    needs: [first]
    approval: {summary: "go on?"}
  sub:
    needs: [ok]
    flow: flows/child.yaml
    inputs: {label: "${{ nodes.first.output.label }}"}
  pick:
    llm: small
    needs: [sub]
    prompt_file: prompts/pick.j2
    output:
      type: object
      properties: {label: {type: string}}
      required: [label]
      additionalProperties: false
  pay: {tool: effect, needs: [pick], args: {label: "${{ nodes.sub.output.label }}"}}
outputs:
  paid: "${{ nodes.pay.output.label }}"
"""

CHILD = """\
apiVersion: flowrun/v1
kind: Workflow
metadata: {name: child}
inputs:
  type: object
  properties: {label: {type: string}}
  required: [label]
  additionalProperties: false
models:
  small: {model: openai/gpt-4o-mini, max_tokens: 50}
tools:
  step: {impl: tests.durable.dtools:step}
nodes:
  look: {tool: step, args: {label: "${{ 'child:' + inputs.label }}"}}
  say: {llm: small, needs: [look], prompt_file: prompts/say.j2}
outputs:
  label: "${{ nodes.look.output.label }}"
"""

PERMIT = 'permit(principal, action == Action::"effect", resource);\n'
FORBID = "forbid(principal, action, resource);\n"


def write_project(root: Path) -> Path:
    """A spec whose prompts, Cedar policy and subflow (with its own prompt) are separate files."""
    files = {
        "main.yaml": MAIN,
        "prompts/pick.j2": "Pick a label after {{ nodes.sub.output.label }}.\n",
        "policies/pay.cedar": PERMIT,
        "flows/child.yaml": CHILD,
        "flows/prompts/say.j2": "Say hello to {{ inputs.label }}.\n",
        "unused.txt": "not read by the compiler\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root / "main.yaml"


def test_bundle_holds_every_file_the_compiler_read(tmp_path: Path) -> None:
    spec = write_project(tmp_path)
    bundle = compile_plan(load_spec(spec)).bundle
    assert bundle is not None
    assert bundle.entry == "main.yaml"
    assert sorted(bundle.files) == [
        "flows/child.yaml",
        "flows/prompts/say.j2",
        "main.yaml",
        "policies/pay.cedar",
        "prompts/pick.j2",
    ]
    assert bundle.files["policies/pay.cedar"] == PERMIT
    # the digest is of content only: the same files elsewhere bundle the same
    other = tmp_path / "copy"
    shutil.copytree(tmp_path, other, ignore=shutil.ignore_patterns("copy"))
    again = compile_plan(load_spec(other / "main.yaml")).bundle
    assert again is not None and again.digest == bundle.digest


@pytest.mark.parametrize(
    ("rel", "text"),
    [
        ("prompts/pick.j2", "Pick a label, please, after {{ nodes.sub.output.label }}.\n"),
        ("flows/prompts/say.j2", "Say hi to {{ inputs.label }}.\n"),
        ("policies/pay.cedar", PERMIT + FORBID),
        ("flows/child.yaml", CHILD.replace("name: child", "name: child2")),
    ],
)
def test_changing_any_bundled_file_changes_the_digest(tmp_path: Path, rel: str, text: str) -> None:
    spec = write_project(tmp_path)
    before = compile_plan(load_spec(spec)).bundle
    (tmp_path / rel).write_text(text, encoding="utf-8")
    after = compile_plan(load_spec(spec)).bundle
    assert before is not None and after is not None
    assert before.digest != after.digest
    (tmp_path / "unused.txt").write_text("changed\n", encoding="utf-8")
    assert compile_plan(load_spec(spec)).bundle == after


def test_a_bundle_compiles_without_the_files_on_disk(tmp_path: Path) -> None:
    spec = write_project(tmp_path)
    plan = compile_plan(load_spec(spec))
    assert plan.bundle is not None
    stored = Bundle.from_json(plan.bundle.to_json())
    (tmp_path / "prompts" / "pick.j2").write_text("{{ broken", encoding="utf-8")
    (tmp_path / "policies" / "pay.cedar").write_text(FORBID, encoding="utf-8")
    shutil.rmtree(tmp_path / "flows")
    with pytest.raises(SpecError):  # what is on disk now no longer compiles
        compile_plan(load_spec(spec))
    again = compile_bundle(stored, str(spec))
    assert again.bundle == plan.bundle
    assert again.order == plan.order
    pick = again.nodes["pick"].llm
    assert pick is not None and pick.prompt.source.startswith("Pick a label after")
    sub = again.nodes["sub"].flow
    assert sub is not None and sub.plan.nodes["say"].llm is not None
    assert again.policy.cedar is not None


def test_a_missing_file_in_a_bundle_reads_as_a_missing_file(tmp_path: Path) -> None:
    spec = write_project(tmp_path)
    plan = compile_plan(load_spec(spec))
    assert plan.bundle is not None
    files = {k: v for k, v in plan.bundle.files.items() if k != "prompts/pick.j2"}
    with pytest.raises(SpecError) as e:
        compile_bundle(Bundle.of("main.yaml", files), str(spec))
    assert [(d.rule, d.message) for d in e.value.diagnostics] == [
        ("file-not-found", "cannot read prompt file 'prompts/pick.j2': No such file or directory")
    ]


def test_a_bundle_that_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    plan = compile_plan(load_spec(write_project(tmp_path)))
    assert plan.bundle is not None
    data = plan.bundle.to_json()
    data["files"]["prompts/pick.j2"] = "Ignore the policy.\n"
    with pytest.raises(BundleError, match="does not match its files"):
        Bundle.from_json(data)
    with pytest.raises(BundleError, match="entry spec"):
        Bundle.from_json({"entry": "x.yaml", "files": {}})


def test_the_mcp_lock_is_bundled(tmp_path: Path) -> None:
    command = ["python", "-m", "mcp_server_git"]
    spec = tmp_path / "git.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""\
            apiVersion: flowrun/v1
            kind: Workflow
            metadata: {{name: git-log}}
            mcp_servers:
              git: {{command: {command!r}}}
            tools:
              git_log: {{mcp: git}}
            nodes:
              log: {{tool: git_log, args: {{repo_path: .}}}}
            """
        ),
        encoding="utf-8",
    )
    entry = {
        "inputSchema": {"type": "object", "properties": {"repo_path": {"type": "string"}}},
        "annotations": {"readOnlyHint": True},
    }
    lock = tmp_path / "git.mcp.lock.json"
    write_lock(
        Lock(
            path=lock,
            spec="git-log",
            servers={
                "git": {
                    "identity": identity(McpServer(command=command)),
                    "tools": {"git_log": entry},
                }
            },
        )
    )
    plan = compile_plan(load_spec(spec))
    assert plan.bundle is not None
    assert plan.bundle.files["git.mcp.lock.json"] == lock.read_text(encoding="utf-8")
    lock.unlink()
    tool = compile_bundle(plan.bundle, str(spec)).nodes["log"].tool
    assert tool is not None and tool.contract.effect == "read"
