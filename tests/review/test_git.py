"""`REV:path` and `--git REV` in a real git repository, and the bad inputs around them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.review.conftest import PAIRS, REPO

FLOWRUN = (
    "from runner.cli import cli, main; from runner.review_cli import graph, diff; "
    "cli.add_command(graph); cli.add_command(diff); main()"
)
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def flowrun(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", FLOWRUN, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd, check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    """A repository: the first commit holds the bases and a prompt file, the work tree the heads."""
    git("init", "-q", "-b", "main", cwd=tmp_path)
    specs = tmp_path / "specs"
    (specs / "prompts").mkdir(parents=True)
    (specs / "x.yaml").write_text((PAIRS / "ungated-write" / "base.yaml").read_text())
    (specs / "gone.yaml").write_text((PAIRS / "no-change" / "base.yaml").read_text())
    (specs / "prompts" / "p.j2").write_text("Say hi to {{ inputs.ticket_id }}\n")
    (tmp_path / "notes.yaml").write_text("not: a spec\n")
    git("add", "-A", cwd=tmp_path)
    git("commit", "-q", "-m", "base", cwd=tmp_path)
    (specs / "x.yaml").write_text((PAIRS / "ungated-write" / "head.yaml").read_text())
    (specs / "gone.yaml").unlink()
    (specs / "new.yaml").write_text((PAIRS / "no-change" / "head.yaml").read_text())
    (tmp_path / "notes.yaml").write_text("not: a spec, changed\n")
    yield tmp_path


def test_rev_path_against_work_tree(repo: Path) -> None:
    r = flowrun("diff", "--output", "json", "main:specs/x.yaml", "specs/x.yaml", cwd=repo)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["base"]["label"] == "main:specs/x.yaml" and data["base"]["valid"]
    assert [f["class"] for f in data["flags"]] == ["ungated-write"]


def test_rev_path_from_a_subfolder(repo: Path) -> None:
    r = flowrun("diff", "--output", "json", "main:x.yaml", "x.yaml", cwd=repo / "specs")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["base"]["label"] == "main:specs/x.yaml"


def test_git_mode_lists_changed_specs_only(repo: Path) -> None:
    r = flowrun("diff", "--git", "main", "--output", "json", "--fail-on", "ungated-write", cwd=repo)
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert [d["head"]["label"] for d in data] == [
        "specs/gone.yaml",
        "specs/new.yaml",
        "specs/x.yaml",
    ]
    gone, new, _ = data
    assert not gone["head"]["exists"] and gone["base"]["exists"]
    assert new["head"]["exists"] and not new["base"]["exists"]
    assert "fail-on ungated-write: write node 'act' lost its gate (verify)" in r.stderr


def test_git_mode_markdown(repo: Path) -> None:
    r = flowrun("diff", "--git", "main", cwd=repo)
    assert r.returncode == 0
    assert r.stdout.count("### flowrun diff: ") == 3 and "**Spec removed.**" in r.stdout


def test_prompt_file_is_read_at_the_revision(repo: Path) -> None:
    spec = (
        (PAIRS / "no-change" / "base.yaml")
        .read_text()
        .replace("      Be brief.\n", "      Be brief.\n")
    )
    spec = spec.replace(
        "    prompt: |\n      Propose a refund for: {{ nodes.intake.output.body }}\n"
        "      Be brief.\n",
        "    prompt_file: prompts/p.j2\n",
    )
    (repo / "specs" / "pf.yaml").write_text(spec)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "pf", cwd=repo)
    (repo / "specs" / "prompts" / "p.j2").write_text("Say hello to {{ inputs.ticket_id }}\n")
    r = flowrun("diff", "--output", "json", "HEAD:specs/pf.yaml", "specs/pf.yaml", cwd=repo)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["base"]["valid"] and data["head"]["valid"]
    assert "-Say hi to {{ inputs.ticket_id }}" in data["prompts"][0]["diff"]
    assert "+Say hello to {{ inputs.ticket_id }}" in data["prompts"][0]["diff"]


def test_path_missing_at_rev_is_added(repo: Path) -> None:
    r = flowrun("diff", "--output", "json", "main:specs/new.yaml", "specs/new.yaml", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["base"]["exists"] is False


def test_unknown_rev_exits_2(repo: Path) -> None:
    r = flowrun("diff", "nosuchbranch:specs/x.yaml", "specs/x.yaml", cwd=repo)
    assert r.returncode == 2
    assert r.stderr.startswith("error: unknown revision 'nosuchbranch'")
    r = flowrun("diff", "--git", "nosuchbranch", cwd=repo)
    assert r.returncode == 2 and "unknown revision" in r.stderr and "Traceback" not in r.stderr


def test_git_outside_a_repository_exits_2(tmp_path: Path) -> None:
    r = flowrun("diff", "--git", "main", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("error: not a git repository") and "hint:" in r.stderr
    assert "Traceback" not in r.stderr
