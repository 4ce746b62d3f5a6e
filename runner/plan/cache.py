"""Compiled plans kept between `flowrun` commands, so an unchanged spec is not compiled again.

perf (issue 26): compiling is most of what a `flowrun execute` process adds per node (a
500-node chain: ~65 ms of loading and checking before its first node runs). A `flowrun`
process (never a program that calls flowrun's code in its own process) keeps the plan it
compiled in a cache folder and takes it from there the next time nothing it was made from has
changed. What a plan is made from, and how each is checked before a cached plan is used:

- the spec file's text, the path as given, the working directory and the profile: in the key;
- every other file the compiler read (prompt files, Cedar policies, subflows, MCP locks: the
  plan's bundle): read again through the same project-folder checks and compared;
- flowrun's own code, the Python version and the installed packages (litellm's price map
  among them): a fingerprint of their files' sizes and times, in the key; so is
  `$FLOWRUN_ALLOW_PATHS`;
- the Python modules loaded when the plan was compiled from outside the interpreter's and the
  packages' folders (tool code, its helpers): each file's size and time, and for the ones the
  plan holds functions of, that the name still loads that file.

Anything that differs, or a cache file that is not the user's own, not private, truncated or
not readable by this version, means a miss: the spec is compiled as if there were no cache.
The folder is `$FLOWRUN_PLAN_CACHE`, else `$XDG_CACHE_HOME/flowrun/plans`, else
`~/.cache/flowrun/plans`; `FLOWRUN_PLAN_CACHE=off` turns the cache off (docs/security.md,
"Kept plans").
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import pickle
import stat
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

from runner.plan.model import Plan

CACHE_ENV = "FLOWRUN_PLAN_CACHE"
FORMAT = 1
KEEP = 64  # cached plans kept; the least recently used go first
MAX_BYTES = 64 * 1024 * 1024  # a plan whose pickle is larger is not kept
_DIGEST = 32  # a cache file: sha256 of the rest, then the pickled entry

_FINGERPRINT: list[str] = []


def cache_folder() -> Path | None:
    """Where plans are kept, or None when the cache is off."""
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() in ("off", "0", "false", "no"):
        return None
    if value:
        return Path(value)
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no home folder to be found: nothing is kept
            return None
    return Path(base) / "flowrun" / "plans"


def _code_fingerprint() -> str:
    """flowrun's files, the interpreter and the package folders, as sizes and times (once a
    process: ~1 ms)."""
    if _FINGERPRINT:
        return _FINGERPRINT[0]
    import runner

    h = hashlib.sha256(sys.version.encode())
    root = Path(runner.__file__).parent
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith((".py", ".json", ".yaml", ".txt")):
                st = os.stat(os.path.join(folder, name))
                h.update(f"{folder}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    # installing, upgrading or removing a package changes its folder's entries (dist-info)
    for entry in sys.path:
        if entry.endswith(("site-packages", "dist-packages")) and os.path.isdir(entry):
            h.update(f"{entry}:{os.stat(entry).st_mtime_ns}\n".encode())
    _FINGERPRINT.append(h.hexdigest())
    return _FINGERPRINT[0]


def _key(spec: str, text: bytes, profile: str | None) -> str:
    from runner.plan.bundle import ALLOW_PATHS_ENV

    parts = [
        FORMAT,
        _code_fingerprint(),
        spec,
        os.getcwd(),
        str(Path(spec).resolve()),
        profile,
        os.environ.get(ALLOW_PATHS_ENV, ""),
        hashlib.sha256(text).hexdigest(),
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


@functools.cache
def _outside_prefixes() -> tuple[str, ...]:
    """Folders whose modules are not the user's: the interpreter's, the installed packages'
    (both as written and resolved) and flowrun's own."""
    import runner

    folders = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(runner.__file__).parent)}
    return tuple({os.path.join(p, "") for f in folders for p in (f, str(Path(f).resolve()))})


def _user_modules() -> dict[str, tuple[str, int, int]]:
    """Every loaded module whose file is neither the interpreter's, an installed package's,
    nor flowrun's: name -> (file, size, mtime_ns)."""
    out: dict[str, tuple[str, int, int]] = {}
    for name, module in list(sys.modules.items()):
        real = _user_file(module)
        if real is None:
            continue
        try:
            st = os.stat(real)
        except OSError:
            continue
        out[name] = (real, st.st_size, st.st_mtime_ns)
    return out


def _user_file(module: Any) -> str | None:
    """The resolved file of a module of the user's, or None (no file, or the interpreter's,
    an installed package's or flowrun's)."""
    file = getattr(module, "__file__", None)
    skip = _outside_prefixes()
    if not isinstance(file, str) or file.startswith(skip):
        return None
    real = str(Path(file).resolve())
    return None if real.startswith(skip) else real


class _Pickler(pickle.Pickler):
    """Pickles a plan and notes the module of every function it holds (the tools, previews
    and compensations of the plan and of its subflows), which are pickled by name."""

    def __init__(self, file: Any) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.held: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.FunctionType | types.BuiltinFunctionType | type):
            module = getattr(obj, "__module__", None)
            if isinstance(module, str):
                self.held.add(module)
        return NotImplemented


def _private(path: Path) -> bool:
    """A cache file is used only when it is this user's and no one else may write it (and not
    a link to some other file)."""
    st = os.lstat(path)
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_uid == os.geteuid()
        and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def _same_files(plan: Plan, spec: str) -> bool:
    """Every file of the plan's bundle but the spec reads as it did, through the same checks."""
    from runner.plan.bundle import DiskSources

    bundle = plan.bundle
    if bundle is None:
        return False
    sources = DiskSources.for_spec(spec, bundle.entry_text)
    for key, text in bundle.files.items():
        if key == bundle.entry:
            continue
        try:
            if sources.read(key) != text:
                return False
        except (OSError, UnicodeDecodeError):
            return False
    return True


def _same_modules(modules: dict[str, tuple[str, int, int]]) -> bool:
    for real, size, mtime in modules.values():
        try:
            st = os.stat(real)
        except OSError:
            return False
        if (st.st_size, st.st_mtime_ns) != (size, mtime):
            return False
    return True


def _read(path: Path, spec: str) -> Plan | None:
    from runner.plan.tools import on_import_path, search_roots

    try:
        if not _private(path):
            return None
        data = path.read_bytes()
    except OSError:
        return None
    body = data[_DIGEST:]
    if len(data) <= _DIGEST or hashlib.sha256(body).digest() != data[:_DIGEST]:
        return None
    try:
        meta, plan_bytes = pickle.loads(body)
        if meta.get("format") != FORMAT or not _same_modules(meta["modules"]):
            return None
        # the plan's tool modules are imported as the compiler imports them
        with on_import_path(search_roots(Path(spec).resolve().parent)):
            plan = pickle.loads(plan_bytes)
    except Exception:  # written by another flowrun, or a module that no longer loads
        return None
    if not isinstance(plan, Plan):
        return None
    for name in meta["held"]:  # the name still loads the file the plan was compiled with
        if _user_file(sys.modules.get(name)) != meta["modules"][name][0]:
            return None
    if not _same_files(plan, spec):
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: kept longest
    return plan


def _write(folder: Path, path: Path, plan: Plan) -> None:
    buf = io.BytesIO()
    pickler = _Pickler(buf)
    try:
        pickler.dump(plan)
    except Exception:  # something in this plan cannot be kept (it is compiled every time)
        return
    modules = _user_modules()
    for name in pickler.held - set(modules):  # the rest: the interpreter's or installed code
        module = sys.modules.get(name)
        if module is None or _user_file(module) is not None:
            return  # a function whose code cannot be checked again: compiled every time
    held = sorted(pickler.held & set(modules))
    meta = {"format": FORMAT, "modules": modules, "held": held}
    plan_bytes = buf.getvalue()
    body = pickle.dumps((meta, plan_bytes), protocol=pickle.HIGHEST_PROTOCOL)
    if len(body) > MAX_BYTES:
        return
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".plan-")  # 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(hashlib.sha256(body).digest() + body)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _prune(folder)


def _prune(folder: Path) -> None:
    entries = []
    for p in folder.glob("*.plan"):
        with contextlib.suppress(OSError):
            entries.append((p.stat().st_mtime_ns, p))
    for _, p in sorted(entries, reverse=True)[KEEP:]:
        with contextlib.suppress(OSError):
            p.unlink()


def _lookup(folder: Path, spec: str, profile: str | None) -> tuple[Path | None, Plan | None]:
    """Where the spec's plan is kept, and the kept plan when it can be used."""
    from runner.files import read_bytes
    from runner.spec.loader import MAX_SPEC_BYTES

    try:  # a FIFO or a device is refused unopened (load_spec then says why)
        text = read_bytes(spec, limit=MAX_SPEC_BYTES)
    except OSError:
        return None, None  # load_spec says what is wrong with the path
    path = folder / f"{_key(spec, text, profile)}.plan"
    return path, _read(path, spec)


def load_plan(spec: str, profile: str | None) -> Plan:
    """The plan of the spec file `spec` for `profile`: kept from an earlier command when
    nothing it was made from changed, else compiled (and kept). Errors are compile_plan's;
    the cache itself never fails a command (anything wrong with it means compiling)."""
    from runner.plan.compile import compile_plan, spec_detectors
    from runner.spec import load_spec

    folder = cache_folder()
    path = None
    if folder is not None:
        try:
            path, plan = _lookup(folder, spec, profile)
        except Exception:  # a vanished working folder, a link loop, ...: no cache
            path, plan = None, None
        if plan is not None:
            spec_detectors(plan.loaded)
            return plan
    plan = compile_plan(load_spec(spec), profile)
    if folder is not None and path is not None:
        with contextlib.suppress(Exception):  # a folder that cannot be written: not kept
            _write(folder, path, plan)
    return plan
