"""Memory source and sink: for tests, notebooks and examples.

``MemorySource(records=[...])`` yields the given mappings; its position is the index of the
record, so a run resumed with a cursor starts at the next record.

``MemorySink(name="out")`` stores what it receives in a process-wide list under its name, so
the fresh instances a flow builds for each run (and instances rebuilt from a spec) all write
to the same place; read it back with ``sink.records`` or ``MemorySink.records_of("out")``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Annotated, Any, ClassVar

from pydantic import Field, SkipValidation, field_validator, model_validator

from active_data_flow.connector import Sink, SinkConfig, Source, SourceConfig
from active_data_flow.errors import ConfigurationError
from active_data_flow.message import Message, Row, as_record
from active_data_flow.registry import register_connector

__all__ = ["MemorySink", "MemorySource"]


@register_connector("memory")
class MemorySource(Source):
    """Yield the records of a list, as :class:`~active_data_flow.message.Untyped` messages.

    Options:
        records: a list of mappings. Records are not copied: a transform that mutates its
            message mutates the list's record.
    """

    class Config(SourceConfig):
        # Not validated element by element: a million records must not be copied.
        records: Annotated[Sequence[Mapping[str, Any]], SkipValidation] = Field(
            default_factory=list
        )

        @field_validator("records", mode="before")
        @classmethod
        def _must_be_sequence(cls, value: Any) -> Any:
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"must be a list of mappings, got {type(value).__name__}")
            if value and not isinstance(value[0], Mapping):
                raise ValueError(f"must be a list of mappings, got a {type(value[0]).__name__}")
            return value

    config: Config

    def _start(self, cursor: Any) -> int:
        if cursor is None:
            return 0
        if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < -1:
            raise ConfigurationError(
                f"memory source cursor must be a record index, got {cursor!r}", option="cursor"
            )
        return cursor + 1

    def each(self, cursor: Any = None) -> Iterator[Message]:
        records = self.config.records
        start = self._start(cursor)
        for index, record in enumerate(islice(records, start, None), start):
            message = Row(record)
            message.position = index
            yield message

    def count(self) -> int:
        return len(self.config.records)


@register_connector("memory")
class MemorySink(Sink):
    """Collect records in a named, process-wide list.

    Options:
        name: the list's name; instances with the same name share it. Default: a new
            unique name per instance (its clones and its spec keep that name).
    """

    _stores: ClassVar[dict[str, list[dict[str, Any]]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    class Config(SinkConfig):
        name: str = Field(min_length=1, max_length=200)

        @model_validator(mode="before")
        @classmethod
        def _default_name(cls, values: Any) -> Any:
            if isinstance(values, dict) and values.get("name") is None:
                values = {**values, "name": f"memory-{uuid.uuid4().hex[:12]}"}
            return values

    config: Config

    def _setup(self) -> None:
        self._pending: list[dict[str, Any]] = []
        with self._lock:
            self._stores.setdefault(self.config.name, [])

    def write_batch(self, records: Iterable[Message | Mapping[str, Any]]) -> None:
        self._pending.extend(map(as_record, records))

    def write(self, record: Message | Mapping[str, Any]) -> None:
        self._pending.append(as_record(record))

    def flush(self) -> None:
        if self._pending:
            with self._lock:
                self._stores[self.config.name].extend(self._pending)
            self._pending = []

    def discard(self) -> None:
        self._pending = []

    @property
    def records(self) -> list[dict[str, Any]]:
        """Everything flushed to this sink's list so far (the live list)."""
        return self.records_of(self.config.name)

    @classmethod
    def records_of(cls, name: str) -> list[dict[str, Any]]:
        """The live list of records flushed under ``name``."""
        with cls._lock:
            return cls._stores.setdefault(name, [])

    def clear(self) -> None:
        """Empty this sink's list."""
        self.records.clear()
