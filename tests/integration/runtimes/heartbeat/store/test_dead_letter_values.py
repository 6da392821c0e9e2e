"""Every value a built-in source produces survives dead letters and replay: stored in the
store's tagged JSON on each database (and in memory), read back and replayed as the same
Python values."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings

from active_data_flow import DataFlow, Source
from active_data_flow.connector import SourceConfig
from active_data_flow.connectors.memory import MemorySink
from active_data_flow.message import Message, Row, Untyped
from active_data_flow.registry import register_connector
from active_data_flow.runner import dead_letter
from active_data_flow.runtimes.heartbeat import (
    DeadLetterSink,
    FlowStore,
    Heartbeat,
    MemoryStore,
    beat,
    replay,
    sync,
)
from active_data_flow.runtimes.heartbeat.store import Store
from tests.message_values import messages, same, values

_names = itertools.count()

KITCHEN_SINK: dict[str, Any] = {
    "id": 1,
    "updated_at": dt.datetime(2024, 5, 1, 12, 30, 15, 123456),
    "created_at": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    "day": dt.date(2024, 2, 29),
    "opens": dt.time(9, 30, 0, 5),
    "closes": dt.time(17, 0, tzinfo=dt.UTC),
    "price": Decimal("1234.5600"),
    "key": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "blob": b"\x00\x01\xfe\xff",
    "doc": {"a": [1, 2.5, None, {"b": "c"}], "$adf": "a user's own key"},
    "ratio": float("nan"),
    "top": float("inf"),
    "none": None,
    "flag": True,
    "wait": dt.timedelta(days=1, seconds=3),
    "host": ipaddress.ip_address("192.168.0.1"),
    "name": "Zoë \u0000 ✓",
}


@pytest.fixture(params=["memory", "sqlite", "postgresql", "mariadb"])
def any_store(request: pytest.FixtureRequest, make_database: Any) -> Iterator[Store]:
    """The memory store, and a migrated SQL store on each database."""
    if request.param == "memory":
        yield MemoryStore()
        return
    store = FlowStore(make_database(request.param), auto_upgrade=True)
    yield store
    store.close()


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(message=messages, metadata=messages, position=values)
def test_a_stored_letter_gives_back_its_values(any_store: Store, message: dict[str, Any],
                                               metadata: dict[str, Any], position: Any) -> None:
    flow = f"values-{next(_names)}"
    failed = Untyped(message, metadata, position=position)
    any_store.dead_letters.add([dead_letter(flow, failed, ValueError("no"))], None)

    [listed] = any_store.list_dead_letters(flow).items
    [replayable] = any_store.dead_letters.for_replay(flow)
    for letter in (listed, replayable):
        assert same(letter.message, message)
        assert same(letter.metadata, metadata)
        assert same(letter.position, position)


ROWS: dict[str, list[dict[str, Any]]] = {}


@register_connector("test_values")
class ValuesSource(Source):
    """The records of ``ROWS[key]`` (any Python values), positioned by index."""

    class Config(SourceConfig):
        key: str

    def each(self, cursor: Any = None) -> Iterator[Message]:
        start = 0 if cursor is None else cursor + 1
        for index, record in enumerate(ROWS[self.config.key][start:], start):
            message = Row(record)
            message.position = index
            yield message


class Typed(DataFlow):
    """Fails on records marked ``fail`` until fixed; copies the others as they are."""

    source = ValuesSource(key="typed")
    sink = MemorySink(name="typed-values")
    runtime = Heartbeat(interval=60)
    on_error = "dead_letter"
    dead_letter_sink = DeadLetterSink()
    fixed: ClassVar[bool] = False

    def transform(self, message: Message) -> Any:
        if message.get("fail") and not type(self).fixed:
            raise ValueError(f"record {message['id']} refused")
        return message.to_dict()


@pytest.fixture
def typed_sink() -> Iterator[list[Any]]:
    records = MemorySink.records_of("typed-values")
    records.clear()
    Typed.fixed = False
    yield records
    records.clear()


def test_a_database_flow_dead_letters_and_replays_every_value(
    store: FlowStore, typed_sink: list[Any]
) -> None:
    failing = [{**KITCHEN_SINK, "id": 2, "fail": True},
               {**KITCHEN_SINK, "id": 4, "fail": True, "updated_at": dt.datetime(1970, 1, 1)}]
    ROWS["typed"] = [{**KITCHEN_SINK, "id": 1}, failing[0], {**KITCHEN_SINK, "id": 3},
                     failing[1]]
    sync(store, Typed)
    run = store.get_run(beat(store).succeeded[0])
    assert (run.status, run.read, run.written, run.failed) == ("succeeded", 4, 2, 2)
    letters = store.list_dead_letters("typed").items
    assert [d.position for d in letters] == [3, 1]
    assert same([d.message for d in reversed(letters)], failing)
    typed_sink.clear()

    Typed.fixed = True
    report = replay(store, "typed")

    assert (len(report.replayed), report.failed) == (2, {})
    assert same([dict(r) for r in typed_sink], failing)
