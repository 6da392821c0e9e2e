"""Fixtures of the heartbeat store and engine tests: a migrated store per database, a clock,
flow helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from active_data_flow.catalog import catalog
from active_data_flow.connectors.memory import MemorySink
from active_data_flow.runtimes.heartbeat import FlowStore
from tests.integration.runtimes.heartbeat import sqlkit


class Clock:
    """A settable clock for time travel: ``clock.advance(seconds)``."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture(autouse=True)
def _fresh_catalog() -> Iterator[None]:
    """Every test starts with no code flows loaded."""
    catalog.clear()
    yield
    catalog.clear()
    sqlkit.dispose_engines()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_store(db_url: str) -> Iterator[Callable[..., FlowStore]]:
    """Factory: ``make_store(lease_seconds=..., clock=...)`` -> a migrated store on db_url."""
    made: list[FlowStore] = []

    def make(**options: Any) -> FlowStore:
        store = FlowStore(db_url, auto_upgrade=True, **options)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., FlowStore]) -> FlowStore:
    """A migrated store on each database (SQLite, PostgreSQL, MariaDB)."""
    return make_store()


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def memory_flow(
    name: str, records: list[dict[str, Any]], sink: str, **runtime: Any
) -> dict[str, Any]:
    """A JSON spec copying ``records`` into the memory sink ``sink``."""
    return {
        "name": name,
        "source": {"type": "memory", "config": {"records": records}},
        "sink": {"type": "memory", "config": {"name": sink}},
        "runtime": {"type": "heartbeat", "config": runtime},
    }


@pytest.fixture
def sink_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique memory sink name, emptied afterwards."""
    name = f"out-{request.node.name}-{id(request)}"
    yield name
    MemorySink.records_of(name).clear()
