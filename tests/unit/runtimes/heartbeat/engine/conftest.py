"""Fixtures of the engine's unit tests: an in-memory store on a settable clock, a flow catalog
of the test's own, executors closed afterwards, memory sinks emptied, backoff not slept."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import active_data_flow.testing  # noqa: F401  (registers the "faulty" sink)
from active_data_flow.catalog import FlowCatalog, catalog
from active_data_flow.connectors.memory import MemorySink
from active_data_flow.runtimes.heartbeat.engine import executor as executor_module
from active_data_flow.runtimes.heartbeat.engine.executor import Executor
from active_data_flow.runtimes.heartbeat.store import MemoryStore
from active_data_flow.testing import FaultySink
from tests.unit.runtimes.heartbeat.engine.kit import LEASE, Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryStore:
    """An in-memory store whose time is ``clock``; leases last LEASE seconds."""
    return MemoryStore(clock=clock, lease_seconds=LEASE)


@pytest.fixture
def flows() -> Iterator[FlowCatalog]:
    """The process-wide catalog of code-defined flows, empty for the test (the store checks
    the transforms that stored specs borrow against it)."""
    catalog.clear()
    yield catalog
    catalog.clear()


@pytest.fixture
def make_executor(store: MemoryStore, flows: FlowCatalog) -> Iterator[Callable[..., Executor]]:
    """Factory: ``make_executor(worker_id)`` -> an executor on ``store`` and ``flows``,
    closed (its lease renewer stopped) after the test."""
    made: list[Executor] = []

    def make(worker_id: str = "w1") -> Executor:
        executor = Executor(store, worker_id=worker_id, flows=flows)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.close()


@pytest.fixture
def executor(make_executor: Callable[..., Executor]) -> Executor:
    return make_executor()


@pytest.fixture
def sink(request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique memory sink name, emptied (and its fault count reset) afterwards."""
    name = f"out-{request.node.name}-{id(request)}"
    yield name
    MemorySink.records_of(name).clear()
    FaultySink._flushes.pop(name, None)


@pytest.fixture(autouse=True)
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """The executor's backoff waits, recorded instead of slept (a wait still ends at once
    when the run is asked to stop)."""
    recorded: list[float | None] = []

    def wait(self: executor_module._Halt, timeout: float | None = None) -> bool:
        recorded.append(timeout)
        return self.is_set()

    monkeypatch.setattr(executor_module._Halt, "wait", wait)
    return recorded
