"""A splittable source for testing and benchmarking partitioned runs: ``range``.

:class:`RangeSource` yields ``{"id": i, "v": "row-i"}`` for ``start <= i < stop`` and splits
by ranges of ``i``. With ``wait`` it pauses before every ``every`` rows, like a remote API that
answers a page of rows per request, so a flow reading it is I/O-bound. Its positions are the
ids, so a run (or a part) resumes strictly after the last checkpointed id.

For failure tests, ``fail_at`` makes reading that id raise, transiently (``ConnectorTimeout``,
retried) or permanently (``SourceError``), once per existence of the file ``fail_flag`` (the
source deletes it as it raises), so exactly one execution fails, in whichever process.

Import this module (a worker does when its flows module does) to register the type.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from active_data_flow.connector import Partition, Source, SourceConfig, check_parts
from active_data_flow.errors import ConfigurationError, ConnectorTimeout, SourceError
from active_data_flow.message import Message, Untyped
from active_data_flow.registry import register_connector

__all__ = ["RangeSource"]


class RangeConfig(SourceConfig):
    """Options of :class:`RangeSource`.

    Attributes:
        start: the first id.
        stop: one past the last id.
        wait: seconds to wait before each page of ``every`` rows (0: none).
        every: rows per page.
        pad: characters of padding in each row's ``v``.
        per_read: read at most this many ids after the cursor (like an API that serves a
            bounded page per sync); the next run goes on from there.
        fail_at: an id whose reading fails while ``fail_flag`` exists (see the module).
        fail_flag: the file whose existence arms ``fail_at``.
        fail_kind: ``"transient"`` or ``"permanent"``.
    """

    start: int = Field(default=0, ge=0)
    stop: int = Field(ge=0)
    wait: float = Field(default=0.0, ge=0, le=60)
    every: int = Field(default=1000, ge=1)
    pad: int = Field(default=0, ge=0, le=10_000)
    per_read: int | None = Field(default=None, ge=1)
    fail_at: int | None = None
    fail_flag: Path | None = None
    fail_kind: Literal["transient", "permanent"] = "transient"

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.stop < self.start:
            raise ValueError(f"stop ({self.stop}) is before start ({self.start})")
        return self


@register_connector("range")
class RangeSource(Source):
    """Rows ``start <= id < stop``, optionally paced like a remote API (see the module)."""

    Config = RangeConfig
    config: RangeConfig

    def _first(self, cursor: Any) -> int:
        if cursor is None:
            return self.config.start
        if not isinstance(cursor, int) or isinstance(cursor, bool):
            raise ConfigurationError(f"range source cursor must be an id, got {cursor!r}",
                                     option="cursor")
        return max(self.config.start, cursor + 1)

    def _last(self, first: int) -> int:
        if self.config.per_read is None:
            return self.config.stop
        return min(self.config.stop, first + self.config.per_read)

    def each(self, cursor: Any = None) -> Iterator[Message]:
        config = self.config
        pad = "x" * config.pad
        first = self._first(cursor)
        for i in range(first, self._last(first)):
            if config.wait and (i - first) % config.every == 0:
                time.sleep(config.wait)
            if i == config.fail_at:
                self._maybe_fail(i)
            message = Untyped({"id": i, "v": f"row-{i}{pad}"})
            message.position = i
            yield message

    def _maybe_fail(self, i: int) -> None:
        flag = self.config.fail_flag
        if flag is None:
            return
        try:
            flag.unlink()
        except FileNotFoundError:
            return  # disarmed: an earlier execution failed already
        kind = ConnectorTimeout if self.config.fail_kind == "transient" else SourceError
        raise kind(f"range source: injected {self.config.fail_kind} failure at id {i}")

    def count(self) -> int:
        return self.config.stop - self.config.start

    def split(self, parts: int, cursor: Any = None) -> list[Partition]:
        """Cut ``[first, stop)`` into at most ``parts`` contiguous ranges of ids."""
        check_parts(parts)
        first = self._first(cursor)
        length = max(0, self._last(first) - first)
        parts = max(1, min(parts, length))
        cuts = [first + length * k // parts for k in range(parts + 1)]
        options = {**self.config.model_dump(), "per_read": None}
        return [Partition(RangeSource(**{**options, "start": lo, "stop": hi}))
                for lo, hi in itertools.pairwise(cuts)]
