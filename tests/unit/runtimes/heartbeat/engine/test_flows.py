"""flow_for: the runnable flow of a stored record (its code over its spec), and cursor_lag."""

from __future__ import annotations

from typing import Any

import pytest

from active_data_flow import DataFlow, FlowSpec
from active_data_flow.catalog import FlowCatalog
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.runtimes.heartbeat.engine.flows import cursor_lag, flow_for
from active_data_flow.runtimes.heartbeat.engine.sync import sync
from active_data_flow.runtimes.heartbeat.store import FlowCodeError, MemoryStore
from tests.unit.runtimes.heartbeat.engine.kit import rows, spec


# -- the runnable flow of a record ------------------------------------------------------
@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def test_a_code_flow_runs_its_loaded_class_over_the_stored_spec(store: MemoryStore) -> None:
    class Coded(DataFlow):
        source = MemorySource(records=rows(1))
        sinks = [MemorySink(name="catalog-coded")]

    catalog = FlowCatalog()
    sync(store, Coded, flows=catalog)

    flow = flow_for(store.get_flow("coded"), flows=catalog)

    assert type(flow) is Coded
    assert flow.spec.digest() == store.get_flow("coded").spec.digest()


def test_a_code_flow_missing_or_unbuildable_raises_a_code_error(store: MemoryStore) -> None:
    class Coded(DataFlow):
        source = MemorySource(records=rows(1))
        sinks = [MemorySink(name="catalog-coded")]

    sync(store, Coded, flows=FlowCatalog())
    record = store.get_flow("coded")

    with pytest.raises(FlowCodeError, match="not defined by any loaded module") as missing:
        flow_for(record, flows=FlowCatalog())
    assert missing.value.option == "name"

    class Unbuildable(DataFlow):
        name = "coded"
        source = MemorySource(records=rows(1))
        sinks: Any = None  # no sink: the class no longer compiles

    broken = FlowCatalog()
    broken.register(Unbuildable)
    with pytest.raises(FlowCodeError, match="flow 'coded' cannot be built"):
        flow_for(record, flows=broken)


def test_a_spec_flow_passes_messages_through_or_borrows_a_transform(
    store: MemoryStore,
) -> None:
    class Upper(DataFlow):
        source = MemorySource(records=[])
        sinks = [MemorySink(name="catalog-upper")]

    catalog = FlowCatalog()
    catalog.register(Upper)
    plain = store.create_flow(spec("plain", rows(1), "catalog-plain"))
    # Stored as they are (the facade would refuse transforms this process has not loaded).
    borrowing = store.flows.create(FlowSpec.parse(
        spec("borrowing", rows(1), "catalog-b", transform="upper")))
    orphan = store.flows.create(FlowSpec.parse(
        spec("orphan", rows(1), "catalog-o", transform="nobody")))

    assert type(flow_for(plain, flows=catalog)) is DataFlow
    borrowed = flow_for(borrowing, flows=catalog)
    assert type(borrowed) is Upper
    assert borrowed.spec.name == "borrowing"
    with pytest.raises(FlowCodeError) as caught:
        flow_for(orphan, flows=catalog)
    assert caught.value.option == "transform"
    assert "flow 'orphan' uses the transform of code flow 'nobody'" in str(caught.value)


def test_cursor_lag_asks_the_source_when_it_can_tell(store: MemoryStore) -> None:
    class Lagging(MemorySource):
        def lag(self, cursor: Any) -> int:
            return len(self.config.records) - (0 if cursor is None else cursor + 1)

    class Tracked(DataFlow):
        source = Lagging(records=rows(5))
        sinks = [MemorySink(name="catalog-lag")]

    catalog = FlowCatalog()
    sync(store, Tracked, flows=catalog)
    store.reset_cursor("tracked", 1)
    plain = store.create_flow(spec("plain", rows(5), "catalog-plain"))

    assert cursor_lag(store.get_flow("tracked"), flows=catalog) == 3
    assert cursor_lag(plain, flows=catalog) is None


