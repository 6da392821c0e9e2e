"""Dead letters kept in the store (and replayed once fixed); health and metrics helpers."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from active_data_flow import DataFlow, Source
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.errors import ConfigurationError
from active_data_flow.registry import register_connector, untrusted_specs
from active_data_flow.runtimes.heartbeat import (
    DeadLetterSink,
    FlowStore,
    Heartbeat,
    beat,
    replay,
    sync,
)
from active_data_flow.runtimes.heartbeat.engine.flows import cursor_lag
from tests.integration.runtimes.heartbeat.conftest import Clock, memory_flow

RECORDS = [{"id": i, "qty": str(i) if i % 3 else "n/a"} for i in range(9)]


class Orders(DataFlow):
    source = MemorySource(records=RECORDS)
    sink = MemorySink(name="orders")
    runtime = Heartbeat(interval=60, batch_size=4)
    on_error = "dead_letter"
    dead_letter_sink = DeadLetterSink()
    lenient: ClassVar[bool] = False

    def transform(self, message: Any) -> Any:
        qty = message["qty"]
        return {"id": message["id"], "qty": 0 if self.lenient and qty == "n/a" else int(qty)}


def test_dead_letters_are_kept_listed_and_replayed_once_fixed(store: FlowStore) -> None:
    Orders.lenient = False
    sync(store, Orders)
    run = store.get_run(beat(store).succeeded[0])
    assert (run.read, run.written, run.failed) == (9, 6, 3)

    page = store.list_dead_letters("orders")
    assert page.total == 3
    letter = page.items[-1]  # newest first
    assert (letter.flow, letter.run_id, letter.position) == ("orders", run.id, 0)
    assert letter.message == {"id": 0, "qty": "n/a"}
    assert letter.error_type == "builtins.ValueError"
    assert "invalid literal" in (letter.error or "")

    failing = replay(store, "orders")  # still broken: nothing replayed
    assert (failing.replayed, sorted(failing.failed)) == ([], sorted(i.id for i in page.items))
    assert store.list_dead_letters("orders").items[0].replay_attempts == 1

    Orders.lenient = True  # the bug is fixed
    report = replay(store, "orders", ids=[letter.id])
    assert (report.replayed, report.written) == ([letter.id], 1)
    assert store.list_dead_letters("orders").total == 2
    everything = store.list_dead_letters("orders", include_replayed=True)
    assert everything.total == 3
    assert [d.replayed_at is not None for d in everything.items].count(True) == 1
    assert MemorySink.records_of("orders")[-1] == {"id": 0, "qty": 0}
    MemorySink.records_of("orders").clear()


def test_a_stored_spec_cannot_point_dead_letters_at_another_database() -> None:
    with untrusted_specs(), pytest.raises(ConfigurationError) as caught:
        DeadLetterSink(database="postgresql://elsewhere/db")
    assert caught.value.option == "database"


def test_health_reports_heartbeats_overdue_flows_and_per_flow_aggregates(
    make_store: Any, clock: Clock, sink_name: str
) -> None:
    store = make_store(clock=clock)
    assert store.last_heartbeat() is None
    store.create_flow(memory_flow("copy", [{"id": 1}, {"id": 2}], sink_name, interval=60))
    store.create_flow(memory_flow("other", [], sink_name, interval=60))

    beat(store, worker_id="web-1")
    assert store.last_heartbeat() == clock.now
    [worker] = store.list_workers()
    assert (worker.id, worker.beats, worker.last_claimed) == ("web-1", 1, 2)
    assert store.overdue_flows() == []

    clock.advance(60 + 120)  # due a minute ago plus two minutes, and no heartbeat came
    overdue = store.overdue_flows(grace_seconds=60)
    assert [f.name for f in overdue] == ["copy", "other"]
    metrics = store.metrics()
    assert metrics["flows_active"] == 2
    assert metrics["runs_pending"] == 2
    assert metrics["runs_overdue"] == 2
    assert metrics["last_heartbeat_age_s"] == pytest.approx(180)

    beat(store, worker_id="web-1")
    stats = store.flow_stats("copy")
    assert (stats.runs, stats.succeeded, stats.read, stats.written) == (2, 2, 2, 2)
    assert stats.avg_duration_s is not None
    assert stats.last_success_at == clock.now
    assert store.list_workers()[0].beats == 2


@register_connector("test_counted")
class CountedSource(Source):
    """A source that can tell how many messages follow a cursor."""

    def each(self, cursor: Any = None) -> Any:
        return iter(())

    def lag(self, cursor: Any) -> int:
        return 10 - (cursor or 0)


def test_cursor_lag_is_reported_when_the_source_can_tell(store: FlowStore) -> None:
    store.create_flow({"name": "lagging", "source": {"type": "test_counted"},
                       "sink": {"type": "memory"}})
    store.reset_cursor("lagging", 4)
    assert cursor_lag(store.get_flow("lagging")) == 6
    store.create_flow(memory_flow("plain", [], "x"))
    assert cursor_lag(store.get_flow("plain")) is None
