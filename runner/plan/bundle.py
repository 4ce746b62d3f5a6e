"""A run's plan bundle: every file that decides its behaviour, under one content digest.

The spec, its prompt files, Cedar policy files, subflow specs (with theirs) and MCP locks are
read by the compiler through `Sources`. At `execute` they come from disk and are recorded;
afterwards (resume, replay, the console, a Temporal worker on another machine) they come from
the stored bundle, so a run never depends on the project folder as it is later.

Files are keyed by their path relative to the entry spec's folder, in POSIX form; the paths
the user wrote stay in diagnostics.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import files
from runner.errors import Diagnostic, SpecError, UsageError
from runner.spec.loader import MAX_SPEC_BYTES, Source, load_file, load_text

BUNDLE_FORMAT = 1


class BundleError(UsageError):
    """A stored bundle that is malformed or whose files do not match its digest."""


def bundle_digest(entry: str, files: Mapping[str, str]) -> str:
    """sha256 over one canonical JSON text of the entry key and every file (sorted by key)."""
    payload = json.dumps(
        {"format": BUNDLE_FORMAT, "entry": entry, "files": dict(sorted(files.items()))},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Bundle:
    entry: str  # the entry spec's key in `files`
    files: Mapping[str, str]  # key (relative to the entry spec's folder) -> text
    digest: str

    @classmethod
    def of(cls, entry: str, files: Mapping[str, str]) -> Bundle:
        frozen = dict(sorted(files.items()))
        return cls(entry=entry, files=frozen, digest=bundle_digest(entry, frozen))

    @property
    def entry_text(self) -> str:
        return self.files[self.entry]

    def to_json(self) -> dict[str, Any]:
        return {"entry": self.entry, "files": dict(self.files), "digest": self.digest}

    @classmethod
    def from_json(cls, data: Any) -> Bundle:
        """A bundle read back (store, workflow input); its files must match its digest."""
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("entry"), str)
            or not isinstance(data.get("files"), dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in data["files"].items())
            or data["entry"] not in data["files"]
        ):
            raise BundleError("a plan bundle must have an entry spec and a map of file texts")
        bundle = cls.of(data["entry"], data["files"])
        if data.get("digest") not in (None, bundle.digest):
            raise BundleError(
                f"plan bundle {str(data.get('digest'))[:12]} does not match its files"
                f" (they hash to {bundle.digest[:12]})",
                hint="the stored bundle was altered; start a new run from the spec",
            )
        return bundle


def file_key(base: str, rel: str) -> str:
    """The key of `rel` written in a spec whose folder has key `base` ("" for the entry's)."""
    return posixpath.normpath(posixpath.join(base, rel.replace(os.sep, "/")))


class Sources:
    """Where the compiler reads the files a spec names (the seam between disk and bundle)."""

    entry: str

    def read(self, key: str) -> str:
        """The text of a file; OSError (FileNotFoundError) or UnicodeDecodeError as from disk."""
        raise NotImplementedError

    def is_file(self, key: str) -> bool:
        raise NotImplementedError

    def specs_beside(self, key: str) -> list[str]:
        """Names of the YAML files in the folder of `key` (to suggest one for a wrong path)."""
        raise NotImplementedError

    def load(self, key: str, shown: str) -> Source:
        """A subflow spec, parsed with positions; `shown` names it in diagnostics."""
        raise NotImplementedError

    def bundle(self) -> Bundle:
        raise NotImplementedError


class OutsideProject(files.UnreadableFile):
    """A file a spec names resolves outside the folders it may read (rule file-outside-project)."""


PROJECT_MARKERS = (".git", "pyproject.toml", "flowrun.toml", ".flowrun")
ALLOW_PATHS_ENV = "FLOWRUN_ALLOW_PATHS"


def project_root(spec_folder: Path) -> Path:
    """The spec's project folder: the nearest folder at or above the spec's that holds a
    `.git`, `pyproject.toml`, `flowrun.toml` or `.flowrun`; else the spec's own folder."""
    for folder in (spec_folder, *spec_folder.parents):
        if any((folder / m).exists() for m in PROJECT_MARKERS):
            return folder
    return spec_folder


def allowed_roots(spec_folder: Path) -> tuple[Path, ...]:
    """Where the files a spec names may live: its project folder, and the folders listed in
    $FLOWRUN_ALLOW_PATHS (separated by the OS's path separator)."""
    extra = [Path(p).resolve() for p in os.environ.get(ALLOW_PATHS_ENV, "").split(os.pathsep) if p]
    return (project_root(spec_folder), *extra)


class DiskSources(Sources):
    """Reads the project folder and records every file read, to bundle them afterwards.

    A file a spec names (prompt, policy, subflow, lock) must resolve, symlinks followed, inside
    the spec's project folder or a folder of $FLOWRUN_ALLOW_PATHS: a spec cannot read
    `/etc/passwd` or `~/.ssh` into a prompt that a model, a trace or a bundle would then hold.
    """

    def __init__(self, root: Path, entry: str, entry_text: str) -> None:
        self.root = root
        self.entry = entry
        self.files: dict[str, str] = {entry: entry_text}
        self.roots = allowed_roots(root)

    @classmethod
    def for_spec(cls, path: str, text: str) -> DiskSources:
        p = Path(path)
        return cls(p.resolve().parent, p.name, text)

    def _path(self, key: str) -> Path:
        return self.root / key

    def outside(self, key: str) -> str | None:
        """Why `key` may not be read (it resolves outside every allowed folder), or None."""
        real = self._path(key).resolve()
        if any(real.is_relative_to(r) for r in self.roots):
            return None
        return (
            "it resolves outside the spec's project folder (the nearest folder with .git, "
            f"pyproject.toml, flowrun.toml or .flowrun); list its folder in ${ALLOW_PATHS_ENV} "
            "to allow it"
        )

    def read(self, key: str) -> str:
        why = self.outside(key)
        if why is not None:
            raise OutsideProject(why)
        text = files.read_text(self._path(key), limit=MAX_SPEC_BYTES)
        self.files[key] = text
        return text

    def is_file(self, key: str) -> bool:
        return self._path(key).is_file()

    def specs_beside(self, key: str) -> list[str]:
        folder = self._path(key).parent
        return sorted(x.name for x in folder.glob("*.y*ml")) if folder.is_dir() else []

    def load(self, key: str, shown: str) -> Source:
        why = self.outside(key)
        if why is not None:
            raise SpecError(
                [
                    Diagnostic(
                        file=shown,
                        line=1,
                        col=1,
                        rule="file-outside-project",
                        message=f"cannot read {key!r}: {why}",
                    )
                ]
            )
        src = load_file(self._path(key), display=shown)
        self.files[key] = src.text
        return src

    def bundle(self) -> Bundle:
        return Bundle.of(self.entry, self.files)


class BundleSources(Sources):
    """Serves a stored bundle; a file it lacks is missing, whatever the disk holds now."""

    def __init__(self, bundle: Bundle) -> None:
        self._bundle = bundle
        self.entry = bundle.entry

    def read(self, key: str) -> str:
        text = self._bundle.files.get(key)
        if text is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), key)
        return text

    def is_file(self, key: str) -> bool:
        return key in self._bundle.files

    def specs_beside(self, key: str) -> list[str]:
        folder = posixpath.dirname(key)
        return sorted(
            posixpath.basename(k)
            for k in self._bundle.files
            if posixpath.dirname(k) == folder and posixpath.splitext(k)[1] in (".yaml", ".yml")
        )

    def load(self, key: str, shown: str) -> Source:
        return load_text(self.read(key), shown)

    def bundle(self) -> Bundle:
        return self._bundle
