"""The store API suite runs on both implementations (`target`, tests/conftest.py): a SQLite file
and a PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runner.store import Store, open_store


@pytest.fixture
def store(target: str) -> Iterator[Store]:
    s = open_store(target)
    yield s
    s.close()
