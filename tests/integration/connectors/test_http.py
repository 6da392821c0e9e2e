"""The HTTP pull source and the HTTP sink against a real (loopback) API served by uvicorn:
every pagination style, incremental reads, authentication, rate limiting, retries on
429/5xx honouring Retry-After; batching, idempotency keys and per-record errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from active_data_flow import DataFlow
from active_data_flow.connector import Sink, Source
from active_data_flow.connectors.http import HttpSink, HttpSource
from active_data_flow.connectors.memory import MemorySink
from active_data_flow.errors import (
    ConfigurationError,
    ConnectorTimeout,
    FlowRunError,
    SinkError,
    SourceError,
)
from active_data_flow.runtimes.inline import Inline
from tests.integration.connectors.api import TOKEN, State, served

ITEMS = 95


@pytest.fixture
def state() -> State:
    return State(items=[{"id": i, "updated_at": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}"}
                        for i in range(ITEMS)])


@pytest.fixture
def api(state: State) -> Iterator[str]:
    with served(state) as url:
        yield url


def ids(source: Source, cursor: Any = None) -> list[int]:
    with source:
        return [m["id"] for m in source.read(cursor)]


def flow_of(source: Source, sink: Sink, batch: int = 10, **options: Any) -> DataFlow:
    class Flow(DataFlow):
        pass

    Flow.source, Flow.sink, Flow.runtime = source, sink, Inline(batch_size=batch)
    for name, value in options.items():
        setattr(Flow, name, value)
    return Flow()


@pytest.mark.parametrize("options", [
    {"url": "/pages", "pagination": "page", "page_size": 10, "page_size_param": "page_size",
     "records_path": "data.items"},
    {"url": "/offsets", "pagination": "offset", "page_size": 10, "page_size_param": "limit"},
    {"url": "/cursors", "pagination": "cursor", "records_path": "items"},
    {"url": "/next", "pagination": "next_link", "records_path": "results"},
    {"url": "/linked", "pagination": "link_header"},
], ids=["page", "offset", "cursor", "next_link", "link_header"])
def test_every_pagination_reads_every_record_once(api: str, options: dict[str, Any]) -> None:
    source = HttpSource(**{**options, "url": api + options["url"]})
    assert ids(source) == list(range(ITEMS))


def test_incremental_reads_resume_after_the_greatest_cursor_value(
        api: str, state: State, memory_sink: MemorySink) -> None:
    source = HttpSource(url=f"{api}/since", cursor_field="updated_at",
                        cursor_param="updated_since")
    first = flow_of(source, memory_sink).run()
    assert first.cursor == state.items[-1]["updated_at"]
    state.items.append({"id": 1000, "updated_at": "2026-02-01T00:00:00"})
    second = flow_of(source, memory_sink).run(cursor=first.cursor)
    assert second.read == 1
    assert [r["id"] for r in memory_sink.records] == [*range(ITEMS), 1000]
    with pytest.raises(ConfigurationError) as bad:
        ids(HttpSource(url=f"{api}/offsets"), "2026")
    assert bad.value.option == "cursor"


def test_429_and_5xx_are_retried_with_backoff_honouring_retry_after(
        api: str, state: State) -> None:
    state.fail_next, state.fail_status, state.retry_after = 2, 429, "1"
    source = HttpSource(url=f"{api}/offsets", pagination="offset", page_size=50,
                        page_size_param="limit", backoff_seconds=0.01)
    assert ids(source) == list(range(ITEMS))
    times = [t for t, _ in state.seen]
    assert times[1] - times[0] >= 0.9  # waited as Retry-After asked, not the 10 ms backoff
    state.fail_next, state.fail_status, state.retry_after = 2, 503, None
    assert ids(source) == list(range(ITEMS))
    state.fail_next = 100
    with pytest.raises(ConnectorTimeout) as gave_up:
        ids(HttpSource(url=f"{api}/offsets", max_retries=2, backoff_seconds=0.01))
    assert gave_up.value.transient
    assert "503" in str(gave_up.value)
    state.fail_next = 0
    with pytest.raises(SourceError) as missing:  # a 404 is not retried
        ids(HttpSource(url=f"{api}/nowhere"))
    assert "404" in str(missing.value)


def test_requests_keep_to_the_rate_limit(api: str, state: State) -> None:
    source = HttpSource(url=f"{api}/offsets", pagination="offset", page_size=10,
                        page_size_param="limit", requests_per_second=20)
    assert ids(source) == list(range(ITEMS))
    times = [t for t, _ in state.seen]
    assert len(times) == 10
    assert times[-1] - times[0] >= 9 / 20 * 0.9


@pytest.mark.parametrize("auth", [{"auth": "bearer", "token": TOKEN},
                                  {"auth": "basic", "username": "ann", "password": "secret"},
                                  {"auth": "header", "token": TOKEN}],
                         ids=["bearer", "basic", "header"])
def test_authentication(api: str, auth: dict[str, Any]) -> None:
    assert ids(HttpSource(url=f"{api}/secure", **auth)) == [0, 1, 2]
    with pytest.raises(SourceError) as refused:
        ids(HttpSource(url=f"{api}/secure"))
    assert "401" in str(refused.value)
    with pytest.raises(ConfigurationError) as bad:
        HttpSource(url=f"{api}/secure", auth="bearer")
    assert bad.value.option == "token"


def test_the_sink_posts_batches_with_a_stable_idempotency_key(
        api: str, state: State) -> None:
    sink = HttpSink(url=f"{api}/ingest", batch_size=10, idempotency_prefix="orders")
    source = HttpSource(url=f"{api}/offsets", pagination="offset", page_size=100,
                        page_size_param="limit")
    state.fail_next, state.retry_after = 0, None
    flow_of(source, sink, batch=25).run()
    assert sorted(r["id"] for r in state.stored()) == list(range(ITEMS))
    assert len(state.posts) == 11  # batches of 25 (and 20) cut into requests of 10 at most
    assert all(k is not None and k.startswith("orders-") for k in state.posts)
    # A request answered 503 is retried with the same key: stored once.
    state.received.clear()
    state.posts.clear()
    state.fail_next = 1
    first = state.seen[-1][0]
    with HttpSink(url=f"{api}/ingest", backoff_seconds=0.01) as again:
        again.write_batch([{"id": 1}, {"id": 2}])
    assert state.seen[-1][0] > first
    assert state.stored() == [{"id": 1}, {"id": 2}]
    # ...and a batch replayed by a new run (same records) carries the same key.
    with HttpSink(url=f"{api}/ingest") as replay:
        replay.write_batch([{"id": 1}, {"id": 2}])
    assert len(state.posts) == 2
    assert state.posts[0] == state.posts[1]


def test_the_sink_cuts_requests_by_size(api: str, state: State) -> None:
    with HttpSink(url=f"{api}/ingest", max_batch_bytes=200) as sink:
        sink.write_batch({"id": i, "text": "x" * 40} for i in range(10))
    assert len(state.posts) == 4  # 54 bytes a record: 3 fit in 200 with the brackets
    assert sorted(r["id"] for r in state.stored()) == list(range(10))


@pytest.mark.parametrize("fmt", ["json", "jsonrpc"])
def test_records_the_receiver_refuses_follow_on_error(api: str, state: State,
                                                      fmt: str) -> None:
    url = f"{api}/{'rpc' if fmt == 'jsonrpc' else 'ingest'}"
    state.items = [{"id": i, "bad": i in (3, 7)} for i in range(10)]
    source = HttpSource(url=f"{api}/offsets", pagination="offset", page_size=100,
                        page_size_param="limit")
    dead = MemorySink()
    result = flow_of(source, HttpSink(url=url, format=fmt), batch=5,
                     on_error="dead_letter", dead_letter_sink=dead).run()
    assert result.failed == 2
    assert result.written == 8
    assert sorted(letter["message"]["id"] for letter in dead.records) == [3, 7]
    assert "bad record" in dead.records[0]["error"]
    with pytest.raises(FlowRunError) as failed:
        flow_of(source, HttpSink(url=url, format=fmt), batch=5).run()
    assert isinstance(failed.value.__cause__, SinkError)
    dead.clear()
