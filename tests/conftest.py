"""Suite-wide isolation: every test gets its own run store, never the repository's."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    path = tmp_path_factory.mktemp("store") / "flowrun.db"
    monkeypatch.setenv("FLOWRUN_STORE", str(path))
    return path
