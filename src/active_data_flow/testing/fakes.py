"""Fakes for tests: connectors that fail on purpose."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from active_data_flow.connectors.memory import MemorySink
from active_data_flow.errors import (
    ConnectorTimeout,
    SinkError,
)
from active_data_flow.registry import register_connector

__all__ = ["FaultySink"]


@register_connector("faulty")
class FaultySink(MemorySink):
    """A memory sink that fails on chosen flushes.

    Options:
        name: the shared list's name, as for :class:`MemorySink`.
        fail_on: 1-based numbers of the flushes (counted across all instances with this
            name, so across runs) that raise instead of storing their records.
        error: ``"permanent"`` (``SinkError``) or ``"transient"`` (``ConnectorTimeout``).
    """

    _flushes: ClassVar[dict[str, int]] = {}

    class Config(MemorySink.Config):
        fail_on: list[int] = Field(default_factory=list)
        error: Literal["permanent", "transient"] = "permanent"

    config: Config

    def flush(self) -> None:
        if not self._pending:
            return
        with self._lock:
            count = self._flushes.get(self.config.name, 0) + 1
            self._flushes[self.config.name] = count
        if count in self.config.fail_on:
            kind = ConnectorTimeout if self.config.error == "transient" else SinkError
            raise kind(f"faulty sink {self.config.name!r}: injected failure on flush {count}")
        super().flush()

    @classmethod
    def flush_count(cls, name: str) -> int:
        """How many flushes with pending records instances named ``name`` attempted."""
        return cls._flushes.get(name, 0)
