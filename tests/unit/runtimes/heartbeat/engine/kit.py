"""What the engine's unit tests share besides fixtures: a clock, flow specs, reading sinks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from active_data_flow.connectors.memory import MemorySink
from active_data_flow.runtimes.heartbeat.store import ClaimedRun, Store

LEASE = 30.0
T0 = datetime(2030, 1, 7, 10, 0, 30, tzinfo=UTC)
FIVE_PAST = datetime(2030, 1, 7, 10, 5, tzinfo=UTC)


class Clock:
    """A settable clock: ``clock.advance(seconds)``, ``clock.set(moment)``."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def set(self, moment: datetime) -> datetime:
        self.now = moment
        return self.now


def spec(name: str, records: list[dict[str, Any]], sink: str, *, sink_type: str = "memory",
         sink_config: dict[str, Any] | None = None, batch_size: int | None = None,
         **fields_and_runtime: Any) -> dict[str, Any]:
    """The JSON spec of a flow copying ``records`` to the memory (or faulty) sink ``sink``.

    Keyword arguments that are fields of a flow spec (``triggers``, ``transform``,
    ``on_error``, ``dead_letter_sink``) go to the spec; the others are options of its
    heartbeat runtime (``interval``, ``max_attempts``, ``backoff``...).
    """
    fields = {k: fields_and_runtime.pop(k) for k in
              ("triggers", "transform", "on_error", "dead_letter_sink")
              if k in fields_and_runtime}
    made: dict[str, Any] = {
        "name": name,
        "source": {"type": "memory", "config": {"records": records}},
        "sink": {"type": sink_type, "config": {"name": sink, **(sink_config or {})}},
        "runtime": {"type": "heartbeat", "config": fields_and_runtime},
        **fields,
    }
    if batch_size is not None:
        made["batch_size"] = batch_size
    return made


def rows(count: int, start: int = 0) -> list[dict[str, Any]]:
    """``count`` records ``{"id": i}``."""
    return [{"id": i} for i in range(start, start + count)]


def written(sink: str) -> list[dict[str, Any]]:
    """What the memory sink ``sink`` holds, as plain dicts."""
    return [dict(r) for r in MemorySink.records_of(sink)]


def claim(store: Store, worker: str = "w1") -> ClaimedRun:
    """Claim the one due run."""
    [claimed] = store.runs.claim_due(worker)
    return claimed
