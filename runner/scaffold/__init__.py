"""`flowrun init`: write a new project (spec, tools, seed, evals, policy cases, CI) that works.

The files come from `template/` (package data): each `*.tmpl` file is copied with its
placeholders filled (`__NAME__`, `__PKG__`, `__ENV__`, `__VERSION__`), path parts that start
with `dot-` become dot files, and the spec language's JSON Schema is written next to them so
the spec's `$schema` modeline resolves. Nothing is written until every check has passed, and
an existing file is never overwritten.
"""

from __future__ import annotations

import contextlib
import keyword
import os
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from runner import __version__
from runner.errors import UsageError

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
MAX_NAME = 63
SCHEMA_FILE = "schema/flowrun-v1.schema.json"
# module names the generated tools package already uses
_RESERVED_PKGS = frozenset({"seed"})


@dataclass(frozen=True)
class Project:
    """What the templates are filled with."""

    name: str  # the workflow name: lowercase words joined by dashes
    pkg: str  # the tools module: tools/<pkg>.py
    env_var: str  # where the tools find their database

    @classmethod
    def named(cls, name: str) -> Project:
        check_name(name)
        pkg = name.replace("-", "_")
        return cls(name=name, pkg=pkg, env_var=f"{pkg.upper()}_DB")

    def fill(self, text: str) -> str:
        for token, value in (
            ("__NAME__", self.name),
            ("__PKG__", self.pkg),
            ("__ENV__", self.env_var),
            ("__VERSION__", __version__),
        ):
            text = text.replace(token, value)
        return text


def check_name(name: str) -> None:
    """A workflow name: lowercase letters and digits in words joined by single dashes."""
    if not NAME_RE.match(name) or len(name) > MAX_NAME:
        raise UsageError(
            f"invalid workflow name {name!r}: use lowercase letters, digits and single dashes, "
            f"starting with a letter, at most {MAX_NAME} characters",
            hint="for example --name invoice-credits",
        )
    pkg = name.replace("-", "_")
    if keyword.iskeyword(pkg) or pkg in _RESERVED_PKGS:
        raise UsageError(
            f"invalid workflow name {name!r}: its tools module would be tools/{pkg}.py, "
            "which Python cannot import or the project already uses",
            hint="choose another name with --name",
        )


def name_from_dir(directory: Path) -> str:
    """The default workflow name: the folder's name, lowercased, other characters as dashes."""
    raw = directory.resolve().name.lower()
    name = re.sub(r"[^a-z0-9]+", "-", raw).strip("-")
    name = re.sub(r"^[0-9-]+", "", name)[:MAX_NAME].strip("-")
    if not name:
        raise UsageError(
            f"cannot derive a workflow name from the folder name {directory.resolve().name!r}",
            hint="give one with --name, e.g. --name invoice-credits",
        )
    return name


def _walk(node: Traversable, prefix: PurePosixPath) -> list[tuple[PurePosixPath, Traversable]]:
    out: list[tuple[PurePosixPath, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda t: t.name):
        if child.is_dir():
            out += _walk(child, prefix / child.name)
        elif child.name.endswith(".tmpl"):
            out.append((prefix / child.name.removesuffix(".tmpl"), child))
    return out


def _target(rel: PurePosixPath, project: Project) -> str:
    parts = [
        "." + p.removeprefix("dot-") if p.startswith("dot-") else project.fill(p) for p in rel.parts
    ]
    return "/".join(parts)


def render(project: Project) -> dict[str, str]:
    """Every file of the new project: relative POSIX path → text, in a stable order."""
    from runner.spec.schema import schema_text

    root = resources.files(__package__) / "template"
    files = {
        _target(rel, project): project.fill(src.read_text(encoding="utf-8"))
        for rel, src in _walk(root, PurePosixPath())
    }
    files[SCHEMA_FILE] = schema_text()
    return dict(sorted(files.items()))


def _entries(directory: Path) -> list[str]:
    try:
        return sorted(p.name for p in directory.iterdir())
    except OSError as e:
        raise UsageError(f"cannot read {str(directory)!r}: {e.strerror or e}") from None


def _conflicts(directory: Path, files: dict[str, str]) -> list[str]:
    """Paths that already exist (a file, or anything where a folder must go)."""
    out: list[str] = []
    for rel in files:
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            path = directory.joinpath(*parts[:i])
            is_last = i == len(parts)
            if is_last and (path.exists() or path.is_symlink()):
                out.append(rel)
                break
            if not is_last and path.exists() and not path.is_dir():
                out.append("/".join(parts[:i]))
                break
    return sorted(set(out))


def _nearest_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path("/")


def check_target(directory: Path, files: dict[str, str], force: bool) -> None:
    """Refuse, before writing anything, a target that is a file, unwritable, or would clash."""
    shown = str(directory)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{shown!r} is a file, not a directory", hint="give a folder to create")
    base = _nearest_existing(directory)
    if not base.is_dir():
        raise UsageError(f"cannot create {shown!r}: {str(base)!r} is a file")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {str(base)!r}: permission denied")
    if not directory.exists():
        return
    entries = _entries(directory)
    if entries and not force:
        listed = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise UsageError(
            f"{shown!r} is not empty ({len(entries)} entries: {listed})",
            hint="init into a new folder, or add --force to add the project next to them "
            "(existing files are never overwritten)",
        )
    clash = _conflicts(directory, files)
    if clash:
        raise UsageError(
            f"{len(clash)} file{'s' if len(clash) != 1 else ''} already exist in {shown!r}; "
            "nothing was written:\n" + "\n".join(f"  {c}" for c in clash),
            hint="move or rename them, or init into a new folder",
        )


def write(directory: Path, files: dict[str, str]) -> list[str]:
    """Write every file, creating folders; on an OS error remove what was written and say so."""
    made_dirs: list[Path] = []
    made_files: list[Path] = []

    def mkdir(path: Path) -> None:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        for p in reversed(missing):
            p.mkdir()
            made_dirs.append(p)

    try:
        mkdir(directory)
        for rel, text in files.items():
            path = directory.joinpath(*rel.split("/"))
            mkdir(path.parent)
            with path.open("x", encoding="utf-8", newline="\n") as f:  # "x": never overwrite
                made_files.append(path)
                f.write(text)
    except OSError as e:
        for p in reversed(made_files):
            p.unlink(missing_ok=True)
        for d in reversed(made_dirs):
            with contextlib.suppress(OSError):
                d.rmdir()
        where = e.filename or directory
        raise UsageError(
            f"cannot write {str(where)!r}: {e.strerror or e}; nothing was left behind"
        ) from None
    return list(files)


def init_project(
    directory: Path, name: str | None = None, force: bool = False
) -> tuple[Project, list[str]]:
    """Check everything, then write the project into `directory`; return it and its files."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{str(directory)!r} is a file, not a directory", hint="give a folder")
    project = Project.named(name if name is not None else name_from_dir(directory))
    files = render(project)
    check_target(directory, files, force)
    return project, write(directory, files)
