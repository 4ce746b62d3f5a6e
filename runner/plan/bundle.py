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

from runner.errors import UsageError
from runner.spec.loader import Source, load_file, load_text

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


class DiskSources(Sources):
    """Reads the project folder and records every file read, to bundle them afterwards."""

    def __init__(self, root: Path, entry: str, entry_text: str) -> None:
        self.root = root
        self.entry = entry
        self.files: dict[str, str] = {entry: entry_text}

    @classmethod
    def for_spec(cls, path: str, text: str) -> DiskSources:
        p = Path(path)
        return cls(p.resolve().parent, p.name, text)

    def _path(self, key: str) -> Path:
        return self.root / key

    def read(self, key: str) -> str:
        text = self._path(key).read_text(encoding="utf-8")
        self.files[key] = text
        return text

    def is_file(self, key: str) -> bool:
        return self._path(key).is_file()

    def specs_beside(self, key: str) -> list[str]:
        folder = self._path(key).parent
        return sorted(x.name for x in folder.glob("*.y*ml")) if folder.is_dir() else []

    def load(self, key: str, shown: str) -> Source:
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
