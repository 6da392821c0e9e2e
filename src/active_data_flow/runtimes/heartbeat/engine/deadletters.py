"""Dead letters kept in the flow store: the ``dead_letters`` sink, and replay.

A flow with ``on_error="dead_letter"`` sends each message whose transform failed (or that a
sink refused) to its ``dead_letter_sink``. With ``{"type": "dead_letters"}`` those letters go
to the store's ``adf_dead_letters`` table, filed under the flow and the run, where the web
engine lists them and :func:`replay` runs them through the flow again (once the bug is
fixed)::

    class ImportOrders(DataFlow):
        source = ...
        sink = ...
        on_error = "dead_letter"
        dead_letter_sink = DeadLetterSink()
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import Field, computed_field

from active_data_flow.catalog import FlowCatalog
from active_data_flow.connector import Sink, SinkConfig
from active_data_flow.errors import ConfigurationError
from active_data_flow.message import Message, Untyped, as_record
from active_data_flow.registry import register_connector, specs_trusted
from active_data_flow.runtimes.heartbeat.engine.executor import current_run, run_store, trust
from active_data_flow.runtimes.heartbeat.engine.flows import flow_for
from active_data_flow.runtimes.heartbeat.store import Store
from active_data_flow.runtimes.heartbeat.store.records import Record

__all__ = ["DeadLetterSink", "ReplayReport", "replay", "replay_outcome", "replay_summary"]


@register_connector("dead_letters")
class DeadLetterSink(Sink):
    """Store dead letters in the flow store's ``adf_dead_letters`` table.

    Options:
        database: the store's URL. Default: the store of the run being executed, else
            ``ADF_DATABASE_URL`` (else the default SQLite file). Not allowed in specs from
            the store or the web API, which always use the run's own store.
    """

    untrusted_ok = True  # writes to the run's own store; `database` is refused untrusted

    class Config(SinkConfig):
        database: str | None = None

    config: Config

    def _setup(self) -> None:
        if self.config.database is not None and not specs_trusted():
            raise ConfigurationError(
                "dead_letters sink: option 'database' cannot be set in a stored or web spec; "
                "dead letters go to the flow store of the run", option="database")
        self._pending: list[dict[str, Any]] = []

    def write_batch(self, records: Iterable[Message | Mapping[str, Any]]) -> None:
        self._pending.extend(map(as_record, records))

    def flush(self) -> None:
        if not self._pending:
            return
        run = current_run()
        run_id = run.run_id if run is not None else None
        run_store(self.config.database).dead_letters.add(self._pending, run_id)
        self._pending = []

    def discard(self) -> None:
        self._pending = []


class ReplayReport(Record):
    """What :func:`replay` did: ids replayed and ids failing again (with why)."""

    replayed: list[int] = Field(default_factory=list)
    failed: dict[int, str] = Field(default_factory=dict)
    written: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def replayed_count(self) -> int:
        """How many dead letters were replayed (written, and marked replayed)."""
        return len(self.replayed)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed_count(self) -> int:
        """How many dead letters failed again (kept, with the new error)."""
        return len(self.failed)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def summary(self) -> str:
        """The report in one line, e.g. "Replayed 3 dead letters; 2 failed again."."""
        return replay_summary(self.replayed_count, self.failed_count)

    @property
    def outcome(self) -> Literal["ok", "warning", "error"]:
        """``error`` when every replay failed, ``warning`` when some did, else ``ok``."""
        return replay_outcome(self.replayed_count, self.failed_count)


def replay_summary(replayed: int, failed: int) -> str:
    """What a replay did in one line, from its counts."""
    if not replayed and not failed:
        return "No dead letters to replay."
    if not failed:
        return f"Replayed {_letters(replayed)}."
    if not replayed:
        return (f"Replay failed: all {_letters(failed)} failed again "
                "(each keeps its new error).")
    return (f"Replayed {_letters(replayed)}; {failed:,} failed again "
            "(each keeps its new error).")


def replay_outcome(replayed: int, failed: int) -> Literal["ok", "warning", "error"]:
    """``error`` when every replay failed, ``warning`` when some did, else ``ok``."""
    if not failed:
        return "ok"
    return "warning" if replayed else "error"


def _letters(n: int) -> str:
    return f"{n:,} dead letter{'' if n == 1 else 's'}"


def replay(store: Store, flow: str, ids: Iterable[int] | None = None, *,
           flows: FlowCatalog | None = None) -> ReplayReport:
    """Run the flow's unreplayed dead letters (or those in ``ids``) through its transform
    (as the code is now) and sinks; mark those written as replayed, record why the others
    failed again. Nothing is marked replayed unless every sink flushed.

    Raises:
        FlowNotFound: no such flow.
        FlowCodeError: the flow's code is not loaded.
    """
    record = store.flows.get(flow)
    built = flow_for(record, flows=flows)
    letters = store.dead_letters.for_replay(flow, ids)
    replayed: list[int] = []
    failed: dict[int, str] = {}
    written = 0
    with trust(record):
        sinks = built.spec.build_sinks()
        ok = False
        try:
            for letter in letters:
                message = Untyped(letter.message, letter.metadata, position=letter.position)
                try:
                    out = _apply(built.transform, message)
                except Exception as exc:
                    failed[letter.id] = f"{type(exc).__name__}: {exc}"
                    continue
                for sink in sinks:
                    sink.write_batch(out)
                replayed.append(letter.id)
                written += len(out)
            for sink in sinks:
                sink.flush()
            ok = True
        finally:
            for sink in sinks:
                if not ok:
                    sink.discard()
                sink.close()
    store.dead_letters.mark_replayed(replayed)
    store.dead_letters.mark_failed(failed)
    return ReplayReport(replayed=replayed, failed=failed, written=written)


def _apply(transform: Any, message: Message) -> list[Any]:
    result = transform(message)
    if result is None:
        return []
    if isinstance(result, (Message, Mapping)):
        return [result]
    return list(result)
