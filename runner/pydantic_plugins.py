"""pydantic's plugin discovery, without importlib.metadata when no plugin is installed.

The first time pydantic builds a validator, its plugin loader (pydantic.plugin._loader) imports
importlib.metadata and reads the entry points of every installed distribution, looking for the
`pydantic` group. In a `flowrun validate` of ~250 ms that import and scan take ~20 ms (7%),
and almost no installation has such a plugin.

perf (issue 26): a `flowrun` process looks for the group itself first, in the entry_points.txt
of each distribution on sys.path (what importlib.metadata reads); only when none declares a
`pydantic` group, and the path holds nothing this look cannot read (a zip archive, an import
hook that lists distributions of its own), pydantic is given a loader that finds no plugin.
Otherwise pydantic's own loader runs, as it always did. Any other name asked of the stand-in
loader loads pydantic's real one and answers from it.
"""

from __future__ import annotations

import os
import re
import sys
import types
from typing import Any

LOADER = "pydantic.plugin._loader"
_GROUP = re.compile(rb"^[ \t]*\[[ \t]*pydantic[ \t]*\][ \t]*\r?$", re.M)
# the finders whose distributions are the dist-info and egg-info folders on sys.path
_PATH_FINDERS = frozenset({"PathFinder", "BuiltinImporter", "FrozenImporter"})


def declares_plugin() -> bool | None:
    """Whether a distribution on sys.path declares a pydantic plugin; None: cannot tell."""
    for finder in sys.meta_path:  # finders are classes or instances
        name = getattr(finder, "__name__", type(finder).__name__)
        if name not in _PATH_FINDERS and hasattr(finder, "find_distributions"):
            return None  # distributions found another way than by the folders read below
    for entry in sys.path:
        folder = entry or "."
        try:
            with os.scandir(folder) as it:
                names = [e.name for e in it if e.name.endswith((".dist-info", ".egg-info"))]
        except (FileNotFoundError, PermissionError):
            continue  # importlib.metadata finds nothing there either
        except OSError:
            return None  # a zip archive or something else that is not a folder
        for name in names:
            try:
                with open(os.path.join(folder, name, "entry_points.txt"), "rb") as f:
                    text = f.read()
            except OSError:  # no entry points, or an egg-info that is a file
                continue
            if _GROUP.search(text):
                return True
    return False


class _NoPlugins(types.ModuleType):
    """The loader's stand-in: no plugin; anything else comes from the real loader."""

    @staticmethod
    def get_plugins() -> tuple[()]:
        return ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # what the import system asks of any module (`__path__`)
            raise AttributeError(name)
        if sys.modules.get(LOADER) is self:
            del sys.modules[LOADER]
        import importlib

        return getattr(importlib.import_module(LOADER), name)


def skip_scan_without_plugins() -> bool:
    """In a process about to build validators: stand in for pydantic's plugin loader when no
    plugin is installed (True), else leave pydantic alone (False)."""
    if LOADER in sys.modules or declares_plugin() is not False:
        return False
    sys.modules[LOADER] = _NoPlugins(LOADER, __doc__)
    return True
