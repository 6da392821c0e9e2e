"""An example ActiveDataFlow plugin: a ``range`` source and a ``stdout`` sink."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import Field

from active_data_flow import Sink, Source, register_connector
from active_data_flow.connector import SinkConfig, SourceConfig
from active_data_flow.errors import ConfigurationError
from active_data_flow.message import Message, Row, as_record

__version__ = "0.3.1"


@register_connector("range")
class RangeSource(Source):
    """Yield ``{"n": i}`` for ``start <= i < stop``; the position is ``i``."""

    class Config(SourceConfig):
        start: int = 0
        stop: int = Field(ge=0)

    config: Config

    def each(self, cursor: Any = None) -> Iterator[Message]:
        if cursor is not None and (type(cursor) is not int or cursor < -1):
            raise ConfigurationError(f"range source cursor must be a number, got {cursor!r}",
                                     option="cursor")
        first = self.config.start if cursor is None else cursor + 1
        for i in range(first, self.config.stop):
            message = Row(n=i)
            message.position = i
            yield message

    def count(self) -> int:
        return max(0, self.config.stop - self.config.start)


@register_connector("stdout")
class StdoutSink(Sink):
    """Print each record as one line of JSON."""

    class Config(SinkConfig):
        prefix: str = ""

    config: Config

    def write_batch(self, records: Iterable[Message | Mapping[str, Any]]) -> None:
        for record in records:
            sys.stdout.write(self.config.prefix + json.dumps(as_record(record)) + "\n")

    def flush(self) -> None:
        sys.stdout.flush()
