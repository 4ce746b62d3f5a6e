"""The two sides of a diff: a file or `REV:path` in git, loaded as far as it goes."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from runner.errors import Diagnostic, SpecError, UsageError
from runner.graph.model import Graph, from_plan, from_raw
from runner.plan.model import Plan
from runner.spec import LoadedSpec
from runner.spec.loader import load_text
from runner.spec.parse import parse_spec

Reader = Callable[[str], str | None]  # a path relative to the spec's folder → text, None if absent


@dataclass(kw_only=True)
class Side:
    """One version of a spec: whatever could be loaded, and the diagnostics of what could not."""

    label: str
    exists: bool
    text: str | None = None
    data: Any = None
    loaded: LoadedSpec | None = None
    plan: Plan | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    prompts: dict[str, dict[str, str]] = field(default_factory=dict)  # node → field → template text
    graph: Graph = field(default_factory=lambda: Graph(nodes={}, edges=[]))

    @property
    def valid(self) -> bool:
        return self.exists and self.plan is not None


# -- git ---------------------------------------------------------------------------------------
def git(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
        )
    except FileNotFoundError:
        raise UsageError(
            "git is not installed", hint="install git, or give two file paths"
        ) from None


def repo_root(cwd: Path | None = None) -> Path:
    """The work tree's top folder; a clear error (exit 2) outside a git repository."""
    r = git(["rev-parse", "--show-toplevel"], cwd)
    if r.returncode != 0:
        where = str(cwd or Path.cwd())
        raise UsageError(
            f"not a git repository: {where}",
            hint="run inside a git work tree, or give two file paths instead of REV:path / --git",
        )
    return Path(r.stdout.strip())


def check_rev(rev: str, cwd: Path | None = None) -> str:
    """The commit a REV names; exit 2 with a hint when it names none."""
    repo_root(cwd)
    r = git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd)
    if r.returncode != 0:
        raise UsageError(
            f"unknown revision {rev!r}",
            hint="give a branch, tag or commit that exists here (see `git log --oneline`)",
        )
    return r.stdout.strip()


def git_show(rev: str, repo_path: str, cwd: Path | None = None) -> str | None:
    """A file's text at REV, or None when REV has no such file."""
    r = git(["show", f"{rev}:{repo_path}"], cwd)
    if r.returncode != 0:
        return None
    return r.stdout


def repo_relative(path: str, root: Path) -> str:
    """`path` (relative to the CWD, or absolute) as git names it at a revision."""
    p = Path(path)
    full = (p if p.is_absolute() else Path.cwd() / p).resolve()
    try:
        return full.relative_to(root.resolve()).as_posix()
    except ValueError:
        raise UsageError(f"{path!r} is outside the git repository {str(root)!r}") from None


def split_rev(arg: str) -> tuple[str, str] | None:
    """`REV:path` → (REV, path); a plain path (also one with a drive or an existing file) → None."""
    if ":" not in arg or Path(arg).exists():
        return None
    rev, _, path = arg.partition(":")
    if not rev or not path:
        return None
    return rev, path


# -- loading -----------------------------------------------------------------------------------
def _inline_prompt_files(data: Any, read: Reader) -> Any:
    """Copy of the data with each readable `prompt_file` replaced by its text (for git sides)."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict):
        return data
    out = copy.deepcopy(data)
    for body in out["nodes"].values():
        targets = [body]
        if isinstance(body, dict) and isinstance(body.get("map"), dict):
            targets.append(body["map"].get("node"))
        for t in targets:
            if isinstance(t, dict) and isinstance(t.get("prompt_file"), str) and "prompt" not in t:
                text = read(t["prompt_file"])
                if text is not None:
                    t["prompt"] = text
                    del t["prompt_file"]
    return out


def _collect_prompts(data: Any, read: Reader) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(nodes, dict):
        return out
    for nid, body in nodes.items():
        if isinstance(body, dict) and isinstance(body.get("map"), dict):
            inner = body["map"].get("node")
            body = inner if isinstance(inner, dict) else body
        if not isinstance(body, dict):
            continue
        fields: dict[str, str] = {}
        if isinstance(body.get("prompt"), str):
            fields["prompt"] = body["prompt"]
        elif isinstance(body.get("prompt_file"), str):
            text = read(body["prompt_file"])
            fields["prompt"] = text if text is not None else f"<unreadable: {body['prompt_file']}>"
        if isinstance(body.get("system"), str):
            fields["system"] = body["system"]
        if fields:
            out[str(nid)] = fields
    return out


def load_side(
    label: str, text: str | None, compile_path: str, read: Reader, *, inline: bool
) -> Side:
    """Load text as far as it goes; a SpecError becomes diagnostics on the side, never an exit."""
    if text is None:
        return Side(label=label, exists=False)
    from runner.plan.compile import compile_plan

    side = Side(label=label, exists=True, text=text)
    try:
        src = load_text(text, compile_path)
    except SpecError as e:
        side.diagnostics = _relabel(e.diagnostics, compile_path, label)
        side.data = _plain_yaml(text)
    else:
        side.data = src.data
        if inline:
            src = dataclasses.replace(src, data=_inline_prompt_files(src.data, read))
        try:
            side.loaded = LoadedSpec(parse_spec(src), src)
            side.plan = compile_plan(side.loaded, None)
        except SpecError as e:
            side.diagnostics = _relabel(e.diagnostics, compile_path, label)
    from runner.mcp.lock import with_locked_tools  # MCP contracts: what their lock says

    side.data = with_locked_tools(side.data, compile_path, read)
    side.prompts = _collect_prompts(side.data, read)
    if side.plan is not None:
        side.graph = from_plan(side.plan)
    else:
        side.graph = from_raw(
            side.data, {n: "\n".join(f.values()) for n, f in side.prompts.items()}
        )
    return side


def _plain_yaml(text: str) -> Any:
    """Plain YAML data when the strict loader refuses it (a duplicate key): show what we can."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _relabel(diags: list[Diagnostic], path: str, label: str) -> list[Diagnostic]:
    return [dataclasses.replace(d, file=label) if d.file == path else d for d in diags]


def load_file_side(path: str) -> Side:
    """A spec in the work tree; a missing file is an absent side (shown as added or removed)."""
    p = Path(path)
    if not p.exists():
        return Side(label=path, exists=False)
    if p.is_dir():
        raise UsageError(f"{path!r} is a folder, not a spec file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path!r}: {e}") from None
    folder = p.resolve().parent

    def read(rel: str) -> str | None:
        try:
            return (folder / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    return load_side(path, text, path, read, inline=False)


def load_git_side(rev: str, path: str, cwd: Path | None = None) -> Side:
    """A spec at a revision; its prompt files are read at the same revision."""
    root = repo_root(cwd)
    check_rev(rev, cwd)
    rel = repo_relative(path, root)
    label = f"{rev}:{rel}"
    text = git_show(rev, rel, cwd)
    folder = PurePosixPath(rel).parent

    def read(name: str) -> str | None:
        return git_show(rev, _normalise(folder / name), cwd)

    # compiled as if it sat at its work-tree path, so tool implementations import the same way
    return load_side(label, text, str(root / rel), read, inline=True)


def _normalise(p: PurePosixPath) -> str:
    parts: list[str] = []
    for part in p.parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def load_arg(arg: str) -> Side:
    """A CLI argument: `REV:path` when it has a colon and names no existing file, else a path."""
    rev_path = split_rev(arg)
    if rev_path is not None:
        return load_git_side(*rev_path)
    return load_file_side(arg)


def changed_specs(rev: str, cwd: Path | None = None) -> list[str]:
    """Specs (YAML with `apiVersion: flowrun/`) changed, added or removed since REV."""
    root = repo_root(cwd)
    check_rev(rev, cwd)
    names: set[str] = set()
    r = git(["diff", "--name-only", "--no-renames", rev, "--"], root)
    names.update(n for n in r.stdout.splitlines() if n)
    r = git(["ls-files", "--others", "--exclude-standard"], root)
    names.update(n for n in r.stdout.splitlines() if n)
    out = []
    for name in sorted(names):
        if not name.endswith((".yaml", ".yml")):
            continue
        texts = [git_show(rev, name, root)]
        wt = root / name
        if wt.is_file():
            with contextlib.suppress(OSError, UnicodeDecodeError):
                texts.append(wt.read_text(encoding="utf-8"))
        if any(t is not None and "apiVersion: flowrun/" in t for t in texts):
            out.append(name)
    return out
