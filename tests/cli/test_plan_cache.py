"""Kept plans (runner/plan/cache.py): a `flowrun` process compiles a spec once and takes its
plan from the cache folder while nothing it was made from changes; anything that changes, or a
cache file that is damaged or not private, means the spec is compiled again."""

from __future__ import annotations

import json
import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.plan import cache
from runner.plan.model import Plan
from tests.cli.conftest import run_flowrun

SPEC = """\
apiVersion: flowrun/v1
kind: Workflow
metadata: {name: kept}
inputs:
  type: object
  properties: {n: {type: integer}}
  required: [n]
models:
  small: {model: openai/gpt-4o-mini, max_tokens: 50}
profiles:
  other: {small: openai/gpt-4o}
tools:
  bump: {impl: kept_tools:bump}
nodes:
  ask:
    llm: small
    prompt_file: prompts/ask.txt
    output: {type: object, properties: {word: {type: string}}, required: [word]}
  first: {tool: bump, args: {n: "${{ inputs.n }}"}}
  second: {tool: bump, args: {n: "${{ nodes.first.output.n + 1 }}"}}
"""
TOOLS = """\
def bump(n: int) -> dict:
    return {"n": n + 1}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "ask.txt").write_text("Say one word.")
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "kept_tools.py").write_text(TOOLS)
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "plans"))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("kept_tools", None)


class Compiles:
    """Counts the compiler's runs behind cache.load_plan."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import runner.plan.compile as compile_module

        self.n = 0
        real = compile_module.compile_plan

        def counted(*a: object, **k: object) -> Plan:
            self.n += 1
            return real(*a, **k)  # type: ignore[arg-type]

        monkeypatch.setattr(compile_module, "compile_plan", counted)


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> Compiles:
    return Compiles(monkeypatch)


def _touch_later(path: Path) -> None:
    """Edit-time resolution differs between file systems: make the change visible in mtime."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))


def test_an_unchanged_spec_is_compiled_once_and_the_kept_plan_behaves_alike(
    project: Path, compiles: Compiles
) -> None:
    first = cache.load_plan("spec.yaml", None)
    again = cache.load_plan("spec.yaml", None)
    assert compiles.n == 1
    assert len(list((project / "plans").glob("*.plan"))) == 1
    assert again is not first
    assert again.bundle is not None and first.bundle is not None
    assert again.bundle.digest == first.bundle.digest
    assert list(again.nodes) == list(first.nodes) and again.order == first.order
    # the kept plan's expressions evaluate as the compiled ones do (fast path and extension)
    step = again.nodes["second"].tool
    assert step is not None
    view = {"nodes": {"first": {"output": {"n": 41}, "status": "succeeded", "error": None}}}
    assert step.args.evaluate(view) == {"n": 42}
    assert again.nodes["first"].tool.fn(n=1) == {"n": 2}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "change",
    [
        "spec",
        "prompt",
        "tool signature",
        "profile",
        "working directory",
        "allowed paths",
    ],
)
def test_whatever_a_plan_is_made_from_changes_it_is_compiled_again(
    project: Path, compiles: Compiles, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    before = cache.load_plan("spec.yaml", None)
    spec, profile = "spec.yaml", None
    if change == "spec":
        (project / "spec.yaml").write_text(SPEC.replace("max_tokens: 50", "max_tokens: 60"))
    elif change == "prompt":
        (project / "prompts" / "ask.txt").write_text("Say two words.")
    elif change == "tool signature":
        sys.modules.pop("kept_tools", None)
        (project / "kept_tools.py").write_text(TOOLS.replace("n: int", "n: int, step: int = 1"))
        _touch_later(project / "kept_tools.py")
    elif change == "profile":
        profile = "other"
    elif change == "working directory":
        (project / "sub").mkdir()
        monkeypatch.chdir(project / "sub")
        spec = "../spec.yaml"
    elif change == "allowed paths":
        monkeypatch.setenv("FLOWRUN_ALLOW_PATHS", str(project / "prompts"))
    after = cache.load_plan(spec, profile)
    assert compiles.n == 2, change
    if change == "profile":
        assert after.profile == "other" and before.profile is None
    if change == "prompt":
        assert after.bundle is not None and before.bundle is not None
        assert after.bundle.digest != before.bundle.digest
        assert "Say two words." in after.bundle.files.values()
    if change == "tool signature":
        step = after.nodes["first"].tool
        assert step is not None and "step" in step.args_schema["properties"]
    # and the new plan is the one kept from now on
    cache.load_plan(spec, profile)
    assert compiles.n == 2


@pytest.mark.parametrize(
    "damage", ["flipped byte", "truncated", "group-writable", "not pickle", "symlink"]
)
def test_a_damaged_or_shared_cache_file_is_not_used(
    project: Path, compiles: Compiles, damage: str
) -> None:
    cache.load_plan("spec.yaml", None)
    (kept,) = (project / "plans").glob("*.plan")
    data = kept.read_bytes()
    if damage == "flipped byte":
        kept.write_bytes(data[:-10] + bytes([data[-10] ^ 1]) + data[-9:])
    elif damage == "truncated":
        kept.write_bytes(data[: len(data) // 2])
    elif damage == "group-writable":
        kept.chmod(0o664)
    elif damage == "symlink":  # even to a good copy: a link may point anywhere
        copy = project / "elsewhere.plan"
        copy.write_bytes(data)
        copy.chmod(0o600)
        kept.unlink()
        kept.symlink_to(copy)
    else:  # a valid checksum over something that is not a kept plan
        import hashlib

        body = pickle.dumps(("not", "a plan"))
        kept.write_bytes(hashlib.sha256(body).digest() + body)
    plan = cache.load_plan("spec.yaml", None)
    assert compiles.n == 2
    assert set(plan.nodes) == {"ask", "first", "second"}


def test_a_spec_with_errors_is_never_kept(project: Path) -> None:
    from runner.errors import SpecError

    (project / "spec.yaml").write_text(SPEC.replace("nodes.first.output.n", "nodes.nope.output.n"))
    with pytest.raises(SpecError):
        cache.load_plan("spec.yaml", None)
    assert not list((project / "plans").glob("*.plan")) if (project / "plans").exists() else True


def test_off_keeps_nothing(
    project: Path, compiles: Compiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    cache.load_plan("spec.yaml", None)
    cache.load_plan("spec.yaml", None)
    assert compiles.n == 2
    assert not (project / "plans").exists()


def test_the_cache_is_kept_private_and_bounded(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "KEEP", 3)
    for i in range(5):
        (project / "spec.yaml").write_text(SPEC.replace("max_tokens: 50", f"max_tokens: {50 + i}"))
        cache.load_plan("spec.yaml", None)
    kept = list((project / "plans").glob("*.plan"))
    assert len(kept) == 3
    assert (project / "plans").stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in kept)


def test_flowrun_execute_keeps_the_plan_and_a_changed_prompt_reaches_the_next_run(
    project: Path,
) -> None:
    """End to end, two `flowrun execute` processes: the second takes the kept plan (the file is
    not written again) and a prompt edited after it runs with the edited prompt."""
    responses = project / "answers.jsonl"
    responses.write_text(json.dumps({"node": "ask", "content": {"word": "hi"}}) + "\n")
    env = {
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), str(project)]),
        cache.CACHE_ENV: str(project / "plans"),
    }
    args = ("execute", "spec.yaml", "--input-json", '{"n": 1}', "--responses", str(responses))
    one = run_flowrun(*args, "--output", "json", cwd=project, env=env)
    assert one.rc == 0, one
    (kept,) = (project / "plans").glob("*.plan")
    written = kept.read_bytes()
    two = run_flowrun(*args, "--output", "json", cwd=project, env=env)
    assert two.rc == 0, two
    assert json.loads(two.stdout)["nodes"]["second"]["output"] == {"n": 4}
    assert kept.read_bytes() == written  # used, not compiled and written again
    (project / "prompts" / "ask.txt").write_text("Answer with one word, please.")
    three = run_flowrun(*args, "--output", "json", cwd=project, env=env)
    assert three.rc == 0, three
    assert kept.read_bytes() != written  # compiled again, and kept in place of the old plan

    def digest(out: str) -> str:
        run_id = json.loads(out)["run_id"]
        shown = run_flowrun("show", run_id, "--output", "json", cwd=project, env=env)
        assert shown.rc == 0, shown
        return str(json.loads(shown.stdout)["bundle_digest"])

    from runner.plan.compile import compile_plan
    from runner.spec import load_spec

    fresh = compile_plan(load_spec(project / "spec.yaml"))
    assert fresh.bundle is not None
    assert digest(one.stdout) == digest(two.stdout) != digest(three.stdout) == fresh.bundle.digest


def test_a_kept_plans_spec_positions_are_read_again_from_its_text(project: Path) -> None:
    """A kept plan's Source is pickled as its text; its positions come back when first read."""
    first = cache.load_plan("spec.yaml", None)
    again = cache.load_plan("spec.yaml", None)
    where = ("nodes", "second", "args", "n")
    assert again.loaded.source.pos(where) == first.loaded.source.pos(where)
    assert again.loaded.source.data == first.loaded.source.data
    assert again.loaded.source.text == first.loaded.source.text


def test_a_cache_folder_that_cannot_be_used_only_means_compiling(
    project: Path, compiles: Compiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "not-a-folder").write_text("")
    monkeypatch.setenv(cache.CACHE_ENV, str(project / "not-a-folder"))
    for _ in range(2):
        assert set(cache.load_plan("spec.yaml", None).nodes) == {"ask", "first", "second"}
    assert compiles.n == 2
