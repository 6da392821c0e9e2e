"""Test-only SQL connectors and helpers for the heartbeat tests.

The real SQLAlchemy connectors live in ``active_data_flow.connectors.sqlalchemy``; these small
ones exist so that the heartbeat's guarantees are tested against plain, visible SQL:

* ``test_table`` source: rows of a table with ``id > cursor``, by id, in chunks;
* ``test_table`` sink: append or upsert rows; ``flush_with(hook)`` calls ``hook(connection)``
  inside its transaction (how the store commits a cursor with the batch);
* ``test_tally`` source: records one execution (run id, worker) per run on its own
  autocommit connection, then yields nothing: the concurrency harness counts these.

They register on import; child processes import this module too.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from active_data_flow.connector import Sink, SinkConfig, Source, SourceConfig
from active_data_flow.connectors.sqlalchemy._db import is_transient_db_error
from active_data_flow.errors import ConnectorTimeout, SinkError
from active_data_flow.message import Message, Row, as_record
from active_data_flow.registry import register_connector
from active_data_flow.runtimes.heartbeat import current_run

_engines: dict[str, sa.Engine] = {}
_lock = threading.Lock()


def engine(url: str) -> sa.Engine:
    """A process-wide engine per URL (pre-pinged, so it survives server restarts)."""
    with _lock:
        found = _engines.get(url)
        if found is None:
            found = _engines[url] = sa.create_engine(url, pool_pre_ping=True)
        return found


def dispose_engines() -> None:
    """Close every engine made here (tests drop their databases afterwards)."""
    with _lock:
        for e in _engines.values():
            e.dispose()
        _engines.clear()


def data_table(name: str) -> sa.Table:
    """``(id INTEGER PRIMARY KEY, value VARCHAR(100))`` under ``name``."""
    return sa.Table(name, sa.MetaData(),
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("value", sa.String(100), nullable=False))


def append_table(name: str) -> sa.Table:
    """A target that accepts duplicates: ``(n SERIAL PRIMARY KEY, id, value)``."""
    return sa.Table(name, sa.MetaData(),
                    sa.Column("n", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("id", sa.Integer, nullable=False),
                    sa.Column("value", sa.String(100), nullable=False))


def tally_table() -> sa.Table:
    """Executions counted by the concurrency harness."""
    return sa.Table("tally", sa.MetaData(),
                    sa.Column("n", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("run_id", sa.Integer, nullable=False),
                    sa.Column("worker", sa.String(100), nullable=False))


def create(url: str, table: sa.Table) -> None:
    """Create ``table`` in the database at ``url`` (dropping it first)."""
    with engine(url).begin() as conn:
        table.drop(conn, checkfirst=True)
        table.create(conn)


def fill(url: str, name: str, count: int) -> None:
    """Create table ``name`` holding ids 1..count."""
    table = data_table(name)
    create(url, table)
    if count:
        with engine(url).begin() as conn:
            conn.execute(table.insert(), [{"id": i, "value": f"v{i}"}
                                          for i in range(1, count + 1)])


def ids(url: str, name: str) -> list[int]:
    """The ids in table ``name``, in id order, with repetitions if any."""
    with engine(url).connect() as conn:
        return list(conn.execute(sa.text(f"SELECT id FROM {name} ORDER BY id")).scalars())


@register_connector("test_table")
class TableSource(Source):
    """Rows of ``table`` at ``url`` with ``id > cursor``, read ``chunk`` at a time."""

    class Config(SourceConfig):
        url: str
        table: str
        chunk: int = 500
        delay: float = 0.0  # seconds each chunk takes to read (holding no connection)

    config: Config

    def each(self, cursor: Any = None) -> Iterator[Message]:
        table = data_table(self.config.table)
        last = int(cursor) if cursor is not None else 0
        while True:
            with engine(self.config.url).connect() as conn:
                rows = conn.execute(sa.select(table).where(table.c.id > last)
                                    .order_by(table.c.id).limit(self.config.chunk)).all()
            time.sleep(self.config.delay)
            if not rows:
                return
            for row in rows:
                message = Row({"id": row.id, "value": row.value})
                message.position = row.id
                yield message
            last = rows[-1].id


@register_connector("test_table")
class TableSink(Sink):
    """Write records into ``table`` at ``url``: ``append`` (plain inserts into an
    :func:`append_table`, duplicates allowed), ``upsert`` or ``insert`` (into a
    :func:`data_table`; a duplicate id is an integrity error)."""

    class Config(SinkConfig):
        url: str
        table: str
        mode: Literal["append", "upsert", "insert"] = "append"
        delay: float = 0.0  # seconds each batch takes, inside its transaction

    config: Config

    def _setup(self) -> None:
        self._pending: list[dict[str, Any]] = []

    def write_batch(self, records: Iterable[Message | Mapping[str, Any]]) -> None:
        self._pending.extend(as_record(r) for r in records)

    def flush(self) -> None:
        self.flush_with(None)

    def flush_with(self, hook: Callable[[Any], bool] | None) -> bool:
        if not self._pending:
            return bool(hook and self._commit([], hook))
        result = self._commit(self._pending, hook)
        self._pending = []
        return result

    def _commit(self, rows: list[dict[str, Any]], hook: Callable[[Any], bool] | None) -> bool:
        try:
            with engine(self.config.url).begin() as conn:
                if rows:
                    conn.execute(self._statement(conn.dialect.name), rows)
                    time.sleep(self.config.delay)
                return bool(hook(conn)) if hook is not None else False
        except sa.exc.DBAPIError as exc:
            if is_transient_db_error(exc):
                raise ConnectorTimeout(f"test_table sink: {exc.orig}") from exc
            raise SinkError(f"test_table sink: {type(exc).__name__}: {exc.orig}") from exc

    def _statement(self, dialect: str) -> Any:
        if self.config.mode == "append":
            return append_table(self.config.table).insert()
        table = data_table(self.config.table)
        if self.config.mode == "insert":  # a duplicate id is an IntegrityError
            return table.insert()
        if dialect == "postgresql":
            pg = postgresql.insert(table)
            return pg.on_conflict_do_update(index_elements=["id"],
                                            set_={"value": pg.excluded.value})
        if dialect in ("mysql", "mariadb"):
            my = mysql.insert(table)
            return my.on_duplicate_key_update(value=my.inserted.value)
        lite = sqlite.insert(table)
        return lite.on_conflict_do_update(index_elements=["id"],
                                          set_={"value": lite.excluded.value})

    def discard(self) -> None:
        self._pending = []


@register_connector("test_tally")
class TallySource(Source):
    """Count one execution of the current run in the ``tally`` table; yield nothing."""

    class Config(SourceConfig):
        url: str

    config: Config

    def each(self, cursor: Any = None) -> Iterator[Message]:
        run = current_run()
        worker = f"{os.getpid()}:{run.worker_id if run else '-'}"
        with engine(self.config.url).connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(tally_table().insert().values(
                run_id=run.run_id if run else -1, worker=worker[:100]))
        yield from ()
