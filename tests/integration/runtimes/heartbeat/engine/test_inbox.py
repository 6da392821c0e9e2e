"""The inbox in the flow store and the ``http_inbox`` source over it: idempotent pushes,
incremental reads by id, exactly-once into a sink on the store's database, retention."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from active_data_flow.errors import ConfigurationError
from active_data_flow.runtimes.heartbeat import FlowStore, beat
from active_data_flow.runtimes.heartbeat.engine.inbox import (
    HttpInboxSource,
    PushError,
    hash_token,
    parse_push,
)
from active_data_flow.runtimes.heartbeat.store import FlowNotFound, MemoryStore, Store
from tests.conftest import DATABASES
from tests.integration.runtimes.heartbeat import sqlkit
from tests.integration.runtimes.heartbeat.conftest import Clock

TOKEN = "inbox-secret"


def inbox_spec(name: str, sink: dict[str, Any], **source: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"type": "http_inbox",
                   "config": {"token_sha256": hash_token(TOKEN), **source}},
        "sink": sink,
        "runtime": {"type": "heartbeat", "config": {"batch_size": 7, "interval": 3600}},
    }


@pytest.fixture(params=["memory", *DATABASES])
def any_store(request: pytest.FixtureRequest, make_database: Callable[[str], str],
              clock: Clock) -> Iterator[Store]:
    """The memory store, and a SQL store on each database."""
    if request.param == "memory":
        yield MemoryStore(clock=clock)
        return
    store = FlowStore(make_database(request.param), auto_upgrade=True, clock=clock)
    yield store
    store.close()


def test_a_retried_push_stores_nothing_twice_and_reads_go_by_id(any_store: Store) -> None:
    any_store.create_flow(inbox_spec("orders", {"type": "memory", "config": {"name": "x"}}))
    first = any_store.inbox.push("orders", [("k:0", {"n": 0}), ("k:1", {"n": 1}), (None, {"n": 2})])
    assert (first.accepted, first.duplicates) == (3, 0)
    again = any_store.inbox.push("orders", [("k:0", {"n": 0}), ("k:1", {"n": 1}), ("k:2", {"n": 3}),
                                            ("k:2", {"n": 3})])
    assert (again.accepted, again.duplicates) == (1, 3)
    entries = any_store.inbox.read("orders", None, 100)
    assert [e.payload["n"] for e in entries] == [0, 1, 2, 3]
    assert [e.id for e in entries] == sorted(e.id for e in entries)
    assert again.last_id == entries[-1].id
    assert [e.payload["n"] for e in any_store.inbox.read("orders", entries[1].id, 1)] == [2]
    assert any_store.inbox.count("orders", entries[0].id) == 3
    with pytest.raises(FlowNotFound):
        any_store.inbox.push("nope", [(None, {"n": 1})])
    any_store.delete_flow("orders")  # its inbox goes with it
    any_store.create_flow(inbox_spec("orders", {"type": "memory", "config": {"name": "x"}}))
    assert any_store.inbox.count("orders") == 0


def test_purge_deletes_read_entries_past_their_retention_only(any_store: Store,
                                                              clock: Clock) -> None:
    any_store.create_flow(inbox_spec("orders", {"type": "memory", "config": {"name": "x"}}))
    any_store.inbox.push("orders", [("a", {"n": 0}), ("b", {"n": 1})])
    clock.advance(100)
    any_store.inbox.push("orders", [("c", {"n": 2})])
    ids = [e.id for e in any_store.inbox.read("orders", None, 10)]
    assert any_store.inbox.purge("orders", ids[-1], any_store.now()
                                 - timedelta(seconds=50)) == 2
    assert [e.payload["n"] for e in any_store.inbox.read("orders", None, 10)] == [2]
    # the key of a purged entry is free again: retention is how long retries deduplicate
    assert any_store.inbox.push("orders", [("a", {"n": 0})]).accepted == 1


def test_the_flow_reads_its_inbox_exactly_once_into_a_table_of_the_store_database(
        store: FlowStore, db_url: str) -> None:
    sqlkit.create(db_url, sqlkit.append_table("dst"))
    store.create_flow(inbox_spec(
        "orders", {"type": "test_table", "config": {"url": db_url, "table": "dst"}},
        retention_seconds=0))
    store.inbox.push("orders", [(f"r{i}", {"id": i + 1, "value": "v"}) for i in range(20)])
    assert beat(store).succeeded
    assert sqlkit.ids(db_url, "dst") == list(range(1, 21))
    cursor = store.get_flow("orders").cursor
    assert isinstance(cursor, int)
    assert store.inbox.count("orders") == 0  # read, committed, retention 0: gone
    store.inbox.push("orders", [(f"r{i}", {"id": i + 1, "value": "v"}) for i in range(20, 25)])
    store.trigger("orders")
    assert beat(store).succeeded
    assert sqlkit.ids(db_url, "dst") == list(range(1, 26))  # the new ones only


def test_retention_keeps_read_entries_for_a_while(store: FlowStore, db_url: str) -> None:
    sqlkit.create(db_url, sqlkit.append_table("dst"))
    store.create_flow(inbox_spec(
        "orders", {"type": "test_table", "config": {"url": db_url, "table": "dst"}}))
    store.inbox.push("orders", [("r1", {"id": 1, "value": "v"})])
    assert beat(store).succeeded
    assert store.inbox.count("orders") == 1  # kept (a day by default), past the cursor
    assert store.inbox.count("orders", store.get_flow("orders").cursor) == 0


def test_options_and_cursor_are_checked() -> None:
    with pytest.raises(ConfigurationError) as bad:
        HttpInboxSource(token_sha256="short")
    assert bad.value.option == "token_sha256"
    with pytest.raises(ConfigurationError) as bad:
        HttpInboxSource(token_sha256=hash_token("t"), schema={"n": "integer"})
    assert bad.value.option == "schema"
    source = HttpInboxSource(token_sha256=hash_token("t"), schema={"n": "int?"}, inbox="x")
    assert source.to_dict()["config"]["schema"] == {"n": "int?"}
    assert HttpInboxSource.from_dict(source.to_dict()).config == source.config
    with pytest.raises(ConfigurationError) as bad:
        list(source.read({"not": "an id"}))
    assert bad.value.option == "cursor"


def test_parse_push_shapes_keys_and_schema_errors() -> None:
    config = {"schema": {"id": "int", "total": "float?"}}
    one = parse_push({"id": 1, "total": None}, config, "K")
    assert one.entries == [("K", {"id": 1, "total": None})]
    assert one.rpc is None
    many = parse_push([{"id": 1, "total": 1.5}, {"id": 2, "total": 2}], config, "K")
    assert [k for k, _ in many.entries] == ["K:0", "K:1"]
    rpc = parse_push([{"jsonrpc": "2.0", "id": 1, "method": "push",
                       "params": {"record": {"id": 1, "total": 1}, "key": "a"}},
                      {"jsonrpc": "2.0", "id": 2, "method": "push_batch",
                       "params": {"records": [{"id": 2, "total": 2}], "key": "b"}}], config, None)
    assert rpc.rpc == "batch"
    assert [k for k, _ in rpc.entries] == ["a", "b:0"]
    assert rpc.calls == [(1, 1), (2, 1)]
    with pytest.raises(PushError) as bad:
        parse_push([{"id": 1, "total": 1}, {"id": "two", "total": 1}], config, None)
    assert bad.value.field == "1.id"
    assert bad.value.status == 422
    with pytest.raises(PushError) as bad:
        parse_push({"jsonrpc": "2.0", "id": 1, "method": "push_batch",
                    "params": {"records": [{"id": 1}]}}, config, None)
    assert bad.value.field == "params.records.0.total"
    with pytest.raises(PushError) as bad:
        parse_push({"jsonrpc": "2.0", "id": 1, "method": "pull", "params": {}}, config, None)
    assert bad.value.rpc_code == -32601
    keyed = parse_push([{"id": 5, "total": 1}], {**config, "key_field": "id"}, None)
    assert keyed.entries[0][0] == "5"
