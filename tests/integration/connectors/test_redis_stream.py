"""Redis Streams on the real Redis: pipelined XADD with MAXLEN, reads by a consumer group,
XACK only once a batch is flushed, resume from the group, and a consumer killed in the
middle of a batch whose entries another consumer claims (XAUTOCLAIM): nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from active_data_flow import DataFlow
from active_data_flow.connector import Sink
from active_data_flow.connectors.memory import MemorySink
from active_data_flow.connectors.redis_stream import RedisStreamSink, RedisStreamSource
from active_data_flow.errors import ConfigurationError, FlowRunError, SinkError
from active_data_flow.runtimes.inline import Inline

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def stream(redis_url: str) -> Iterator[str]:
    """A stream key of this test's own, deleted afterwards."""
    key = f"adf-test-{uuid.uuid4().hex[:12]}"
    yield key
    client = redis.Redis.from_url(redis_url)
    client.delete(key)
    client.close()


def fill(redis_url: str, stream: str, count: int, **options: Any) -> None:
    with RedisStreamSink(url=redis_url, stream=stream, pipeline_size=100, **options) as sink:
        sink.write_batch({"id": i, "name": f"n{i}"} for i in range(count))


def pending(redis_url: str, stream: str, group: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.xpending(stream, group)["pending"])
    finally:
        client.close()


def copy_flow(source: RedisStreamSource, sink: Sink, batch: int = 50) -> DataFlow:
    class Copy(DataFlow):
        pass

    Copy.source = source
    Copy.sink = sink
    Copy.runtime = Inline(batch_size=batch)
    return Copy()


def test_sink_adds_in_pipelined_batches_and_trims_to_maxlen(redis_url: str,
                                                            stream: str) -> None:
    fill(redis_url, stream, 250)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.xlen(stream) == 250
    first = client.xrange(stream, count=1)[0][1]
    assert json.loads(first["data"]) == {"id": 0, "name": "n0"}
    fill(redis_url, stream, 50, maxlen=100, approximate=False)
    assert client.xlen(stream) == 100
    flat = f"{stream}-flat"
    try:
        fill(redis_url, flat, 1, encoding="fields")
        assert client.xrange(flat)[0][1] == {"id": "0", "name": "n0"}
    finally:
        client.delete(flat)
        client.close()


def test_a_group_reads_everything_once_and_acknowledges_after_the_flush(
        redis_url: str, stream: str, memory_sink: MemorySink) -> None:
    fill(redis_url, stream, 230)
    source = RedisStreamSource(url=redis_url, stream=stream, group="g", consumer="c1",
                               count=40)
    result = copy_flow(source, memory_sink).run()
    assert [r["id"] for r in memory_sink.records] == list(range(230))
    assert result.batches == 5
    assert pending(redis_url, stream, "g") == 0  # all acknowledged
    # A new run resumes from the group: only what was added since.
    fill(redis_url, stream, 3)
    copy_flow(source, memory_sink).run()
    assert [r["id"] for r in memory_sink.records] == [*range(230), 0, 1, 2]


class FailingSink(MemorySink):
    """Fails its flush number ``fail_on``."""

    class Config(MemorySink.Config):
        fail_on: int = 3

    config: Config
    flushes = 0

    def flush(self) -> None:
        if self._pending:
            type(self).flushes += 1
            if type(self).flushes == self.config.fail_on:
                raise SinkError("injected")
        super().flush()


def test_entries_of_a_failed_batch_stay_pending_and_are_read_again(
        redis_url: str, stream: str, memory_sink: MemorySink) -> None:
    fill(redis_url, stream, 200)
    source = RedisStreamSource(url=redis_url, stream=stream, group="g", consumer="c1",
                               count=50)
    FailingSink.flushes = 0
    sink = FailingSink(name=memory_sink.config.name, fail_on=3)
    with pytest.raises(FlowRunError):
        copy_flow(source, sink).run()
    assert len(memory_sink.records) == 100  # batches 1 and 2
    assert pending(redis_url, stream, "g") >= 50  # batch 3 delivered, never acknowledged
    copy_flow(source, memory_sink).run()  # the same consumer takes its pending back first
    assert sorted(r["id"] for r in memory_sink.records) == list(range(200))
    assert pending(redis_url, stream, "g") == 0


def test_options_and_cursor_are_checked(redis_url: str, stream: str) -> None:
    with pytest.raises(ConfigurationError) as bad:
        RedisStreamSource(stream=stream, group="g", start_id="latest")
    assert bad.value.option == "start_id"
    source = RedisStreamSource(url=redis_url, stream=stream, group="g")
    with pytest.raises(ConfigurationError) as bad:
        list(source.read(17))
    assert bad.value.option == "cursor"
    assert RedisStreamSource.from_dict(source.to_dict()).config == source.config
    parts = source.split(3)
    assert len({p.source.consumer for p in parts}) == 3  # type: ignore[attr-defined]


KILLED_CONSUMER = """
import os, signal, sys
from active_data_flow import DataFlow
from active_data_flow.connectors.jsonl import JsonLinesSink
from active_data_flow.connectors.redis_stream import RedisStreamSource
from active_data_flow.runtimes.inline import Inline

url, stream, out = sys.argv[1:4]

class Dies(DataFlow):
    source = RedisStreamSource(url=url, stream=stream, group="g", consumer="doomed", count=50)
    sink = JsonLinesSink(path=out)
    runtime = Inline(batch_size=50)

    def transform(self, message):
        if message["id"] == 125:  # in the middle of the third batch
            os.kill(os.getpid(), signal.SIGKILL)
        return message

Dies().run()
"""


def test_a_consumer_killed_mid_batch_has_its_entries_claimed_nothing_lost(
        redis_url: str, stream: str, tmp_path: Path, memory_sink: MemorySink) -> None:
    fill(redis_url, stream, 300)
    out = tmp_path / "doomed.jsonl"
    died = subprocess.run([sys.executable, "-c", KILLED_CONSUMER, redis_url, stream, str(out)],
                          cwd=ROOT, env=os.environ.copy(), capture_output=True, timeout=60)
    assert died.returncode == -9, died.stderr.decode()
    written = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert written == list(range(100))  # two batches committed (and acknowledged)
    assert pending(redis_url, stream, "g") >= 26  # the third batch, delivered, unacknowledged

    survivor = RedisStreamSource(url=redis_url, stream=stream, group="g", consumer="survivor",
                                 count=50, claim_idle_seconds=0.2)
    time.sleep(0.3)  # the dead consumer's entries are now idle past the claim timeout
    copy_flow(survivor, memory_sink).run()
    got = [r["id"] for r in memory_sink.records]
    assert sorted(written + got) == list(range(300))  # nothing lost, nothing twice
    assert pending(redis_url, stream, "g") == 0
