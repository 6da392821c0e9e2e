"""Redis Streams: a source reading with a consumer group, and a sink adding entries.

The source (``redis_stream``) reads as one consumer of a group: first the entries it was
given before and never acknowledged (after a restart under the same consumer name), then
entries other consumers left pending for longer than ``claim_idle_seconds`` (``XAUTOCLAIM``:
their consumer died), then new ones. It acknowledges (``XACK``) an entry only once the batch
holding it is flushed by every sink and the flow's cursor saved: delivery is at-least-once,
and exactly-once into a SQL sink that upserts on a key of the record. A run ends when the
stream has nothing new for it. Parts of a partitioned run are consumers of the one group.

The sink (``redis_stream``) ``XADD``\\ s its buffered records in pipelined batches on
``flush()``, trimming the stream to about ``maxlen`` entries.

Entries hold a record as one JSON field (``encoding="json"``, field ``data``) or as flat
string fields (``encoding="fields"``). Needs the ``[redis]`` extra (``redis>=5``).
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from pydantic import Field

from active_data_flow.connector import (
    Partition,
    Sink,
    SinkConfig,
    Source,
    SourceConfig,
    check_parts,
)
from active_data_flow.errors import ConfigurationError, ConnectorTimeout, SinkError, SourceError
from active_data_flow.message import Message, Untyped, as_record
from active_data_flow.registry import register_connector

try:
    import redis
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("the redis_stream connectors need the redis package: "
                      "pip install 'active-data-flow[redis]'") from exc

__all__ = ["RedisStreamSink", "RedisStreamSource"]

_ID = re.compile(r"^\d+-\d+$")
_DATA = "data"

Encoding = Literal["json", "fields"]


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=30,
                                socket_connect_timeout=10)


def _translate(exc: redis.RedisError, what: str, error: type[Exception]) -> Exception:
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return ConnectorTimeout(f"{what}: Redis unavailable: {exc}")
    return error(f"{what}: {exc}")


def _decode(fields: Mapping[str, str], encoding: Encoding) -> dict[str, Any]:
    if encoding == "json":
        value = json.loads(fields[_DATA]) if _DATA in fields else {}
        return value if isinstance(value, dict) else {"value": value}
    return dict(fields)


def _encode(record: Mapping[str, Any], encoding: Encoding) -> dict[str, str]:
    if encoding == "json":
        return {_DATA: json.dumps(record, separators=(",", ":"), default=str)}
    return {str(k): v if isinstance(v, str) else json.dumps(v, default=str)
            for k, v in record.items()}


@register_connector("redis_stream")
class RedisStreamSource(Source):
    """Entries of a Redis stream, read by a consumer group (see the module docstring).

    Options:
        url: the Redis URL.
        stream: the stream's key.
        group: the consumer group (created at the stream's start, ``start_id``, if missing).
        consumer: this reader's name in the group (default ``hostname:pid``). Keep it stable
            across restarts so a restarted reader takes back its own pending entries at once.
        count: entries fetched per call.
        claim_idle_seconds: take over entries another consumer left unacknowledged this long.
        start_id: where a new group starts: ``0`` (the whole stream) or ``$`` (new entries).
        encoding: ``json`` (one field ``data``) or ``fields`` (flat string fields).
    """

    class Config(SourceConfig):
        url: str = "redis://127.0.0.1:6379/0"
        stream: str = Field(min_length=1)
        group: str = Field(min_length=1)
        consumer: str | None = None
        count: int = Field(default=500, ge=1, le=100_000)
        claim_idle_seconds: float = Field(default=60.0, ge=0)
        start_id: str = Field(default="0", pattern=r"^(0|\$|\d+-\d+)$")
        encoding: Encoding = "json"

    config: Config

    def _setup(self) -> None:
        self._redis: redis.Redis | None = None
        self._delivered: deque[str] = deque()
        self.consumer = self.config.consumer or f"{socket.gethostname()}:{os.getpid()}"

    def _connect(self) -> redis.Redis:
        if self._redis is None:
            self._redis = _client(self.config.url)
            try:
                self._redis.xgroup_create(self.config.stream, self.config.group,
                                          id=self.config.start_id, mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise _translate(exc, self._label(), SourceError) from exc
            except redis.RedisError as exc:
                raise _translate(exc, self._label(), SourceError) from exc
        return self._redis

    def each(self, cursor: Any = None) -> Iterator[Message]:
        if cursor is not None and not (isinstance(cursor, str) and _ID.match(cursor)):
            raise ConfigurationError(
                f"{self._label()}: cursor must be a stream entry id like '1700000000000-0', "
                f"got {cursor!r}", option="cursor")
        # The group, not the cursor, knows what is left: entries are acknowledged as their
        # batches commit, so a restart resumes after the last committed one.
        try:
            yield from self._read()
        except redis.RedisError as exc:
            raise _translate(exc, self._label(), SourceError) from exc

    def _read(self) -> Iterator[Message]:
        client = self._connect()
        cfg = self.config
        # 1. Entries delivered to this consumer before and never acknowledged.
        after = "0"
        while True:
            entries = self._group_read(client, after)
            if not entries:
                break
            yield from self._messages(entries)
            after = entries[-1][0]
        # 2. Entries of consumers that died (pending longer than claim_idle_seconds).
        start = "0-0"
        while True:
            reply: Any = client.xautoclaim(cfg.stream, cfg.group, self.consumer,
                                      min_idle_time=int(cfg.claim_idle_seconds * 1000),
                                      start_id=start, count=cfg.count)
            start, entries = reply[0], [e for e in reply[1] if e[1] is not None]
            yield from self._messages(entries)
            if start == "0-0":
                break
        # 3. New entries, until the stream has none for this group.
        while True:
            entries = self._group_read(client, ">")
            if not entries:
                return
            yield from self._messages(entries)

    def _group_read(self, client: redis.Redis, after: str) -> list[tuple[str, dict[str, str]]]:
        cfg = self.config
        reply: Any = client.xreadgroup(cfg.group, self.consumer, {cfg.stream: after},
                                       count=cfg.count)
        if not reply:
            return []
        return [e for e in reply[0][1] if e[1] is not None]

    def _messages(self, entries: list[tuple[str, dict[str, str]]]) -> Iterator[Message]:
        encoding = self.config.encoding
        for entry_id, fields in entries:
            self._delivered.append(entry_id)
            yield Untyped(_decode(fields, encoding), {"stream_id": entry_id},
                          position=entry_id)

    def committed(self, position: Any) -> None:
        """Acknowledge every entry delivered up to ``position`` (their batch is durable)."""
        ids: list[str] = []
        while self._delivered:
            entry_id = self._delivered.popleft()
            ids.append(entry_id)
            if entry_id == position:
                break
        if ids:
            try:
                self._connect().xack(self.config.stream, self.config.group, *ids)
            except redis.RedisError as exc:
                raise _translate(exc, self._label(), SourceError) from exc

    def lag(self, cursor: Any = None) -> int | None:
        """Entries not yet delivered to the group plus those pending (when Redis tells)."""
        try:
            for group in self._connect().xinfo_groups(self.config.stream):
                if group["name"] == self.config.group:
                    lag = group.get("lag")
                    return None if lag is None else int(lag) + int(group["pending"])
        except redis.RedisError:
            return None
        return None

    def split(self, parts: int, cursor: Any = None) -> list[Partition]:
        """``parts`` consumers of the one group (named ``<consumer>-<i>``)."""
        check_parts(parts)
        base = self.consumer
        return [Partition(type(self)(**{**self.config.model_dump(exclude_defaults=True),
                                        "consumer": f"{base}-{i}"}), cursor)
                for i in range(parts)]

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None


@register_connector("redis_stream")
class RedisStreamSink(Sink):
    """``XADD`` records to a Redis stream, in pipelined batches on ``flush()``.

    Options:
        url: the Redis URL.
        stream: the stream's key.
        maxlen: trim the stream to about this many entries (``None``: never trim).
        approximate: trim with ``~`` (cheaper; the stream may hold a few more).
        encoding: ``json`` (one field ``data``) or ``fields`` (flat string fields).
        pipeline_size: commands sent per round trip.
    """

    class Config(SinkConfig):
        url: str = "redis://127.0.0.1:6379/0"
        stream: str = Field(min_length=1)
        maxlen: int | None = Field(default=None, ge=1)
        approximate: bool = True
        encoding: Encoding = "json"
        pipeline_size: int = Field(default=1000, ge=1, le=100_000)

    config: Config

    def _setup(self) -> None:
        self._redis: redis.Redis | None = None
        self._pending: list[dict[str, str]] = []

    def write_batch(self, records: Iterable[Message | Mapping[str, Any]]) -> None:
        encoding = self.config.encoding
        self._pending.extend(_encode(as_record(r), encoding) for r in records)

    def flush(self) -> None:
        if not self._pending:
            return
        cfg = self.config
        if self._redis is None:
            self._redis = _client(cfg.url)
        try:
            for start in range(0, len(self._pending), cfg.pipeline_size):
                pipe = self._redis.pipeline(transaction=False)
                for fields in self._pending[start:start + cfg.pipeline_size]:
                    pipe.xadd(cfg.stream, fields, maxlen=cfg.maxlen,  # type: ignore[arg-type]
                              approximate=cfg.approximate)
                pipe.execute()
        except redis.RedisError as exc:
            raise _translate(exc, self._label(), SinkError) from exc
        self._pending = []

    def discard(self) -> None:
        self._pending = []

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._redis is not None:
                self._redis.close()
                self._redis = None
