"""``sync``: registering the application's code-defined flows in the store (``adf sync``)."""

from __future__ import annotations

from typing import Any

from active_data_flow import DataFlow
from active_data_flow.catalog import FlowCatalog
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.runtimes.heartbeat import Heartbeat
from active_data_flow.runtimes.heartbeat.engine.sync import sync
from active_data_flow.runtimes.heartbeat.store import MemoryStore
from tests.unit.runtimes.heartbeat.engine.kit import T0, rows, spec


def flow_class(name: str, **attributes: Any) -> type[DataFlow]:
    """A code-defined flow class named ``name``."""
    body: dict[str, Any] = {"name": name, "source": MemorySource(records=rows(1)),
                            "sinks": [MemorySink(name=f"sync-{name}")],
                            "runtime": Heartbeat(interval=60), **attributes}
    return type(name.title(), (DataFlow,), body)


def test_sync_creates_then_leaves_then_updates_code_flows(
    store: MemoryStore, flows: FlowCatalog
) -> None:
    orders, users = flow_class("orders"), flow_class("users")

    first = sync(store, [orders, users], flows=flows)
    assert (sorted(first.created), first.updated, first.unchanged, first.ok) == (
        ["orders", "users"], [], [], True)
    record = store.get_flow("orders")
    assert (record.origin, record.spec, record.next_run_at) == ("code", orders.flow_spec(), T0)

    assert sorted(sync(store, flows=flows).unchanged) == ["orders", "users"]

    orders.batch_size = 5
    third = sync(store, flows=flows)
    assert (third.updated, third.unchanged) == (["orders"], ["users"])
    assert store.get_flow("orders").spec.batch_size == 5


def test_a_flow_created_from_a_spec_keeps_its_name(store: MemoryStore,
                                                   flows: FlowCatalog) -> None:
    store.create_flow(spec("orders", rows(1), "sync-spec"))

    report = sync(store, flow_class("orders"), flows=flows)

    assert not report.ok
    assert "was created from a spec" in report.errors["orders"]
    assert report.errors["orders"].startswith("flow 'orders'")
    record = store.get_flow("orders")
    assert (record.origin, record.code_error) == ("spec", None)


def test_a_misdefined_flow_is_reported_and_its_record_says_why(
    store: MemoryStore, flows: FlowCatalog
) -> None:
    good = flow_class("orders")
    sync(store, good, flows=flows)
    flows.clear()
    bad = flow_class("orders", runtime={"type": "heartbeat",
                                        "config": {"interval": "61 * * * *"}})

    report = sync(store, bad, flows=flows)

    assert report.errors["orders"] == (
        "flow 'orders': heartbeat runtime: option 'interval': invalid cron expression "
        "'61 * * * *': the minute field '61' is out of range (0-59)")
    assert store.get_flow("orders").code_error == report.errors["orders"]
    assert store.get_flow("orders").spec == good.flow_spec()  # the stored flow is kept


def test_code_flows_no_module_defines_are_flagged_or_pruned(
    store: MemoryStore, flows: FlowCatalog
) -> None:
    on_demand = Heartbeat()
    gone, kept = flow_class("gone", runtime=on_demand), flow_class("kept", runtime=on_demand)
    busy = flow_class("busy")
    sync(store, [gone, kept, busy], flows=FlowCatalog())
    store.create_flow(spec("stored", rows(1), "sync-stored"))
    [running] = store.runs.claim_due("w1")

    report = sync(store, kept, flows=flows)

    assert (report.missing, report.removed) == (["busy", "gone"], [])
    assert "flow 'gone' is defined in code, but it is not defined by any loaded module" in (
        store.get_flow("gone").code_error or "")
    assert store.get_flow("kept").code_error is None
    assert store.get_flow("stored").code_error is None

    pruned = sync(store, flows=flows, prune=True)

    assert (pruned.removed, pruned.missing) == (["gone"], ["busy"])
    assert "is running" in pruned.errors["busy"]
    assert sorted(f.name for f in store.list_flows().items) == ["busy", "kept", "stored"]
    assert running.flow.name == "busy"


def test_sync_loads_the_target_it_is_given(store: MemoryStore, flows: FlowCatalog) -> None:
    report = sync(store, [flow_class("a"), flow_class("b")], flows=flows)

    assert flows.names() == ["a", "b"]
    assert sorted(report.created) == ["a", "b"]
    assert sorted(store.flows.code_flow_names()) == ["a", "b"]
