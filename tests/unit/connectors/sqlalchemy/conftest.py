"""Fixtures of the database layer's tests: a clean registry and engine cache per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from active_data_flow.connectors.sqlalchemy import _db


@pytest.fixture(autouse=True)
def clean_databases() -> Iterator[None]:
    """Each test starts with no registered database and an empty engine cache."""
    _db.dispose_engines()  # engines other test folders left behind
    yield
    for name in _db.registered_databases():
        _db.unregister_database(name)
    _db.dispose_engines()
