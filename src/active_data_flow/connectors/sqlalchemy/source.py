"""SqlAlchemySource: stream a table's rows in key order, resumably, in bounded memory."""

from __future__ import annotations

import datetime as dt
import logging
import weakref
from collections.abc import Generator, Iterator, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import Field, field_validator
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from active_data_flow.columnar import ArrowBatch
from active_data_flow.connector import Partition, Source, SourceConfig, check_parts
from active_data_flow.connectors.sqlalchemy import _db
from active_data_flow.connectors.sqlalchemy._arrow import (
    arrow_types,
    column_converters,
    page_table,
)
from active_data_flow.connectors.sqlalchemy._db import Database
from active_data_flow.connectors.sqlalchemy._models import ModelInfo, model_database
from active_data_flow.connectors.sqlalchemy._options import ModelOptions, names
from active_data_flow.connectors.sqlalchemy._query import QueryPlan
from active_data_flow.errors import ConfigurationError
from active_data_flow.message import Message, Row
from active_data_flow.registry import register_connector

__all__ = ["SqlAlchemySource"]

log = logging.getLogger(__name__)

_READONLY_ON = {
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "sqlite": "PRAGMA query_only = ON",
}
_READONLY_OFF = {
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "mysql": "SET SESSION TRANSACTION READ WRITE",
    "sqlite": "PRAGMA query_only = OFF",
}


@register_connector("sqlalchemy")
class SqlAlchemySource(Source):
    """Read a model's table in key order, in pages, resumably.

    Options:
        model: the mapped class, or its import string (``"pkg.mod:Model"``).
        where: ``{column: value}`` filters, ANDed; a list means IN, ``None`` IS NULL.
        order_by: a column or list (``"-col"`` / ``"col desc"`` descending). Without
            ``cursor_column`` this is the reading order (completed with the primary key).
        limit: read at most this many rows per run.
        select: the columns to read (default all); the key's columns are always included.
        includes: relationships to eager-load (``"posts"``, ``"posts.comments"``), nested in
            each message as dicts: one ``SELECT ... IN`` per relationship and page, no N+1.
        batch_size: rows per page (per query); memory holds one page.
        readonly: read in read-only transactions (default true).
        cursor_column: column(s) of the incremental key (default: the primary key), e.g.
            ``["updated_at", "id"]``; completed with the primary key when not unique.
        lag: on resume, re-read rows whose first cursor column lies within ``lag`` before
            the cursor (seconds or a timedelta for time columns; a number otherwise), to
            catch rows committed late with earlier values.
        database: a registered database name, a URL or an Engine (default: the model's
            registered database, else the one registered as ``"default"``).
        until: read only rows at or before this position (the end of a partition's range;
            :meth:`split` sets it).

    Each message's ``position`` is its key's value, JSON-safe (a list of values for a
    composite key); ``each(cursor)`` reads strictly after it.
    """

    untrusted_ok = True  # untrusted specs name registered models and databases only

    class Config(ModelOptions, SourceConfig):
        where: dict[str, Any] = Field(default_factory=dict)
        order_by: list[str] = Field(default_factory=list)
        limit: int | None = Field(default=None, ge=1)
        select: list[str] | None = None
        includes: list[str] = Field(default_factory=list)
        batch_size: int = Field(default=10_000, ge=1, le=100_000)
        readonly: bool = True
        cursor_column: list[str] | None = None
        lag: dt.timedelta | int | float | Decimal | None = None
        until: Any = None

        _as_lists = field_validator(
            "order_by", "select", "includes", "cursor_column", mode="before"
        )(names)

        @field_validator("lag")
        @classmethod
        def _non_negative(cls, value: Any) -> Any:
            if value is not None and value < (dt.timedelta(0) if isinstance(value, dt.timedelta)
                                              else 0):
                raise ValueError("must not be negative")
            return value

    config: Config

    def _setup(self) -> None:
        what = self._label()
        cfg = self.config
        cfg.check(what)
        self._info = ModelInfo.of(cfg.model, what)
        self._plan = QueryPlan.build(
            self._info, where=cfg.where, order_by=cfg.order_by, select=cfg.select,
            includes=cfg.includes, cursor_column=cfg.cursor_column, what=what,
        )
        self._lag = _lag_step(self._plan, cfg.lag, what)
        self._db: Database | None = None
        self._streams: weakref.WeakSet[Generator[Any, None, None]] = weakref.WeakSet()

    def to_dict(self) -> dict[str, Any]:
        """The spec: the model as its import string, the database as its registered name
        (or URL)."""
        self.config.check_storable()
        return super().to_dict()

    # -- reading ------------------------------------------------------------------------
    def each(self, cursor: Any = None) -> Iterator[Message]:
        """Yield the rows after ``cursor`` (all rows when ``None``) in key order.

        Raises:
            ConfigurationError: the cursor is not a position of this source (at once).
            ConnectorTimeout: the database stayed unreachable (while reading).
            SourceError: a query failed (while reading).
        """
        after = None if cursor is None else self._plan.keyset.decode(cursor, self._label())
        stream = self._stream(after)
        self._streams.add(stream)
        return stream

    def _stream(self, after: tuple[Any, ...] | None) -> Generator[Message, None, None]:
        """The read: messages made one at a time, so each is freed once the flow is done
        with it (few live objects, little garbage-collector work), from pages fetched whole.

        The hottest loop of a read, hence specialised: a one-column key costs no function
        call per row, and ``zip`` gets no ``strict=`` (a keyword argument costs a third of a
        microsecond a row; the keys are the query's own columns).
        """
        reader = _PageReader(self, self._database())
        keys = reader.keys
        try:
            for rows, fixed in reader.pages(after):
                if fixed is not None:  # rows of the lag window keep the cursor
                    for values in rows:
                        message = Row(zip(keys, values))  # noqa: B905
                        message.position = fixed
                        yield message
                elif reader.single_key is not None:
                    i = reader.single_key
                    for values in rows:
                        message = Row(zip(keys, values))  # noqa: B905
                        message.position = values[i]
                        yield message
                else:
                    position_of = reader.position_of
                    for values in rows:
                        message = Row(zip(keys, values))  # noqa: B905
                        message.position = position_of(values)
                        yield message
        finally:
            reader.close()

    def read_batches(self, cursor: Any = None, size: int = 10_000) -> Iterator[ArrowBatch]:
        """The rows after ``cursor`` as Arrow batches: one keyset page of up to ``size``
        rows each (the flow's batch: one page, one transform, one flush), with the same
        filters, ``lag`` window and positions as :meth:`each`.

        Raises:
            ConfigurationError: the cursor is not a position of this source (at once).
        """
        after = None if cursor is None else self._plan.keyset.decode(cursor, self._label())
        stream = self._batch_stream(after, size)
        self._streams.add(stream)
        return stream

    def _batch_stream(
        self, after: tuple[Any, ...] | None, size: int
    ) -> Generator[ArrowBatch, None, None]:
        db = self._database()
        page_size = min(size, 100_000)
        info = self._info
        keys = self._plan.keys + tuple(self._plan.nested)
        types = arrow_types([info.columns.get(k) for k in keys])
        reader: _PageReader = (
            AdbcPageReader(self, db, page_size, types) if AdbcPageReader.serves(db, self._plan)
            else ColumnPageReader(self, db, page_size, types))
        position_of = reader.position_of
        try:
            for table, fixed in reader.pages(after):
                position = fixed if fixed is not None else position_of(reader.last_row(table))
                yield ArrowBatch(table, position, _positions(table, position_of, fixed))
        finally:
            reader.close()

    def split(self, parts: int, cursor: Any = None) -> list[Partition]:
        """Cut the rows after ``cursor`` into at most ``parts`` ranges of the cursor key that
        hold about as many rows each.

        The cuts are found in key order with ``OFFSET`` probes (one count, then ``parts - 1``
        index scans), so skewed keys split evenly too. Partition ``i`` reads the rows after
        the previous cut up to and including its own (option ``until``); the last one is
        open-ended, so it also reads rows added after the split. Only the first partition
        keeps ``lag``. A read with ``limit`` is not split.
        """
        check_parts(parts)
        if parts == 1 or self.config.limit is not None:
            return [Partition(self.clone(), cursor)]
        cuts = self._cuts(parts, cursor)
        options = dict(self.config)
        starts: list[Any] = [cursor, *cuts]
        ends: list[Any] = [*cuts, self.config.until]
        return [
            Partition(type(self)(**{**options, "until": end,
                                    "lag": self.config.lag if i == 0 else None}), start)
            for i, (start, end) in enumerate(zip(starts, ends, strict=True))
        ]

    def _cuts(self, parts: int, cursor: Any) -> list[Any]:
        """The positions that end the first ``parts - 1`` of ``parts`` equal row ranges."""
        plan = self._plan
        after = None if cursor is None else plan.keyset.decode(cursor, self._label())
        reader = _PageReader(self, self._database())
        try:
            bounded = plan.statement(reader.dialect, limit=1, after=after,
                                     not_after=self._until())
            total = int(reader.scalar(sa.select(sa.func.count()).select_from(
                bounded.limit(None).order_by(None).subquery())))
            cuts: list[Any] = []
            parts = min(parts, total)  # more parts than rows: one row each (no negative OFFSET)
            for k in range(1, parts):
                rows = reader._fetch(bounded.offset(total * k // parts - 1))
                if not rows:
                    continue
                position = plan.keyset.encode([rows[0][i] for i in plan.key_indexes])
                if not cuts or cuts[-1] != position:
                    cuts.append(position)
            return cuts
        finally:
            reader.close()

    def _until(self) -> tuple[Any, ...] | None:
        """The inclusive end of a partition's range, decoded (``None``: open-ended)."""
        if self.config.until is None:
            return None
        return self._plan.keyset.decode(self.config.until, self._label())

    def count(self) -> int | None:
        """The number of rows a full read yields (``limit`` included)."""
        db = self._database()
        conn = db.connect("source")
        try:
            total = int(db.retrying(
                "source", f"counting {self._info.name} rows",
                lambda: conn.execute(self._plan.count_statement()).scalar_one(),
            ))
        finally:
            _db.release(conn)
        return min(total, self.config.limit) if self.config.limit else total

    def close(self) -> None:
        """Stop open reads and return their connections to the pool."""
        for stream in list(self._streams):
            stream.close()

    def _database(self) -> Database:
        if self._db is None:
            self._db = _db.resolve_database(
                self.config.database, model_database(self.config.model), self._label()
            )
        return self._db


class _PageReader:
    """Holds one connection for a read; each page is its own short transaction."""

    def __init__(
        self, source: SqlAlchemySource, db: Database, page_size: int | None = None
    ) -> None:
        self.source, self.db = source, db
        self.plan = source._plan
        self.dialect = db.dialect
        self.conn: Connection | None = None
        self.page_size = page_size or source.config.batch_size
        self.keys = self.plan.keys + tuple(self.plan.nested)
        self.position_of = self.plan.keyset.position_getter(self.plan.key_indexes)
        # A one-column key whose values are JSON-safe as they are (an integer id).
        self.single_key = self.plan.keyset.plain_index(self.plan.key_indexes)
        self.raw: bool | None = None  # pages skip SQLAlchemy's rows (learnt on the first)

    def pages(self, after: tuple[Any, ...] | None) -> Iterator[tuple[list[Any], Any]]:
        """Pages of rows after ``after``, each with the position to give all its rows
        (``None``: each its own).

        With ``lag`` the read begins with the window: rows at or before the cursor but within
        ``lag`` of it. They keep the cursor as their position, so a cursor never moves back.
        """
        remaining = self.source.config.limit
        lag = self.source._lag
        if after is not None and lag is not None:
            fixed = self.plan.keyset.encode(after)
            for rows in self._pages(None, after, after[0] - lag, remaining):
                if remaining is not None:
                    remaining -= len(rows)
                yield rows, fixed
        for rows in self._pages(after, self.source._until(), None, remaining):
            yield rows, None

    def _pages(
        self,
        after: tuple[Any, ...] | None,
        not_after: tuple[Any, ...] | None,
        first_from: Any,
        remaining: int | None,
    ) -> Iterator[list[Any]]:
        key_indexes = self.plan.key_indexes
        while remaining is None or remaining > 0:
            size = self.page_size if remaining is None else min(self.page_size, remaining)
            stmt = self.plan.statement(self.dialect, limit=size, after=after,
                                       not_after=not_after, first_from=first_from)
            rows = self._fetch(stmt)
            if rows:
                yield rows
            if len(rows) < size:
                return
            if remaining is not None:
                remaining -= len(rows)
            last = self.last_row(rows)
            after = tuple(last[i] for i in key_indexes)

    def last_row(self, rows: Any) -> Sequence[Any]:
        """The values of a page's last row."""
        return rows[-1]  # type: ignore[no-any-return]

    def scalar(self, stmt: sa.Select[Any]) -> Any:
        """One value (a count) on this reader's connection, retried like a page."""
        action = f"counting {self.plan.info.name} rows"
        return self.db.retrying("source", action, lambda: self._scalar(stmt),
                                on_retry=self._drop)

    def _scalar(self, stmt: sa.Select[Any]) -> Any:
        conn = self._connection()
        try:
            return conn.execute(stmt).scalar_one()
        finally:
            if conn.in_transaction() and not conn.invalidated:
                conn.rollback()

    def _fetch(self, stmt: sa.Select[Any]) -> list[Any]:
        """Run one page, reconnecting and re-running it after a transient failure."""
        action = f"reading {self.plan.info.name} rows"
        return self.db.retrying("source", action, lambda: self._run(stmt),
                                on_retry=self._drop)

    def _run(self, stmt: sa.Select[Any]) -> list[Any]:
        conn = self._connection()
        try:
            if self.plan.uses_orm:
                with Session(bind=conn, autoflush=False) as session:
                    objects = session.scalars(stmt).all()
                    rows: list[Any] = [self._values(o) for o in objects]
            else:
                rows = self._rows(conn, stmt)
        finally:
            if conn.in_transaction() and not conn.invalidated:
                try:  # end the page's transaction: no snapshot is held between pages
                    conn.rollback()
                except sa.exc.DBAPIError:  # a dead connection: the next page reconnects
                    self._drop()
        return rows

    def _rows(self, conn: Connection, stmt: sa.Select[Any]) -> Any:
        """A page's rows: the driver's own tuples when no column needs SQLAlchemy's result
        processing (one SQLAlchemy row object less per row), else SQLAlchemy's rows."""
        result = conn.execute(stmt)
        if self.raw is None:
            self.raw = _unprocessed(result)
        if not self.raw:
            return list(result.fetchall())
        try:
            return result.cursor.fetchall()
        finally:
            result.close()

    def _values(self, obj: Any) -> tuple[Any, ...]:
        record = self.plan.as_record(obj)
        return tuple(record[k] for k in self.plan.keys) + tuple(
            record[k] for k in self.plan.nested
        )

    def _connection(self) -> Connection:
        if self.conn is None or self.conn.closed or self.conn.invalidated:
            self._drop()
            self.conn = self.db.connect("source")
            if self.source.config.readonly:
                self._set_readonly(self.conn, on=True)
            if not self.plan.uses_orm:
                # Each page is one statement: as its own implicit transaction it costs one
                # round trip instead of three (BEGIN, SELECT, ROLLBACK). The pool restores
                # the isolation level when the connection goes back.
                self.conn.execution_options(isolation_level="AUTOCOMMIT")
        return self.conn

    def _set_readonly(self, conn: Connection, *, on: bool) -> None:
        statement = (_READONLY_ON if on else _READONLY_OFF).get(self.dialect)
        if statement is not None:
            conn.exec_driver_sql(statement)
            conn.commit()

    def _drop(self) -> None:
        """Discard the connection (after a failure): it goes back to the pool invalidated."""
        conn, self.conn = self.conn, None
        if conn is not None and not conn.closed:
            try:
                conn.invalidate()
            finally:
                conn.close()

    def close(self) -> None:
        """Reset the session's read-only mode and return the connection to the pool."""
        conn, self.conn = self.conn, None
        if conn is None or conn.closed:
            return
        try:
            if conn.in_transaction():
                conn.rollback()
            if self.source.config.readonly and not conn.invalidated:
                self._set_readonly(conn, on=False)
        except sa.exc.DBAPIError:
            # A connection that cannot be reset must not go back into the pool read-only.
            log.debug("resetting a source connection failed; discarding it", exc_info=True)
            conn.invalidate()
        finally:
            conn.close()


class ColumnPageReader(_PageReader):
    """Pages as Arrow tables, from the driver's raw rows: each column is converted once,
    with Arrow's casts where they match SQLAlchemy's result processing (SQLite's date-time
    text, say) and the processor value by value elsewhere."""

    def __init__(self, source: SqlAlchemySource, db: Database, page_size: int,
                 types: list[Any]) -> None:
        super().__init__(source, db, page_size)
        self.types = types
        columns = [source._info.columns.get(k) for k in self.keys]
        self.converters = column_converters(columns, types, db.engine.dialect)

    def last_row(self, rows: Any) -> Sequence[Any]:
        return [column[-1].as_py() for column in rows.columns]

    def _run(self, stmt: sa.Select[Any]) -> Any:
        rows = super()._run(stmt)
        if self.plan.uses_orm:  # values made by the ORM, already processed
            return page_table(rows, self.keys, self.types)
        return page_table(rows, self.keys, self.converters)

    def _rows(self, conn: Connection, stmt: sa.Select[Any]) -> Any:
        result = conn.execute(stmt)
        try:  # the driver's rows: SQLAlchemy's per-row processing is done per column instead
            return result.cursor.fetchall()
        finally:
            result.close()


class AdbcPageReader(ColumnPageReader):
    """PostgreSQL pages read straight into Arrow by ADBC (``adbc-driver-postgresql``, binary
    COPY on the server side, decoded in C): the same statements, bounds and positions as
    :class:`_PageReader`, on an ADBC connection of its own (each page in autocommit, read
    only when the source is). Driver errors are raised as SQLAlchemy's, so transient ones
    are retried like any page. A read ADBC cannot serve (its first connection fails, e.g.
    options only the engine knows; a key value with no SQL literal) goes on through the
    engine's own driver."""

    def __init__(self, source: SqlAlchemySource, db: Database, page_size: int,
                 types: list[Any]) -> None:
        super().__init__(source, db, page_size, types)
        self.adbc: Any = None
        self.fallback = False  # read through the engine's driver instead
        self.readonly_set = False

    @staticmethod
    def serves(db: Database, plan: QueryPlan) -> bool:
        """Whether ADBC can read this source: PostgreSQL, plain columns, driver installed."""
        return db.dialect == "postgresql" and not plan.uses_orm and _adbc() is not None

    def _run(self, stmt: sa.Select[Any]) -> Any:
        module = _adbc()
        assert module is not None
        if not self.fallback:
            try:
                sql = str(stmt.compile(dialect=self.db.engine.dialect,
                                       compile_kwargs={"literal_binds": True}))
            except sa.exc.CompileError as exc:
                self._fall_back(f"a key value has no SQL literal ({exc})")
        if not self.fallback and self.adbc is None:
            try:
                url = self.db.engine.url.set(drivername="postgresql")
                self.adbc = module.connect(url.render_as_string(hide_password=False),
                                           autocommit=True)
            except module.Error as exc:
                self._fall_back(f"ADBC cannot connect ({self.db.mask(str(exc))})")
        if self.fallback:
            return super()._run(stmt)
        try:
            if self.source.config.readonly and not self.readonly_set:
                with self.adbc.cursor() as cursor:
                    cursor.execute(_READONLY_ON["postgresql"])
                self.readonly_set = True
            with self.adbc.cursor() as cursor:
                cursor.execute(sql)
                table = cursor.fetch_arrow_table()
        except module.Error as exc:
            gone = isinstance(exc, (module.OperationalError, module.InterfaceError))
            if gone:
                self._drop()
            raise sa.exc.DBAPIError.instance(
                sql, None, exc, module.Error, connection_invalidated=gone) from exc
        table = table.rename_columns(list(self.keys))
        return _cast(table, self.types)

    def _fall_back(self, why: str) -> None:
        log.warning("%s: reading %s through the engine's driver: %s", self.source._label(),
                    self.plan.info.name, why, extra={"action": "adbc_fallback"})
        self.fallback = True

    def _drop(self) -> None:
        conn, self.adbc = self.adbc, None
        self.readonly_set = False
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing an ADBC connection failed", exc_info=True)
        super()._drop()

    def close(self) -> None:
        conn, self.adbc = self.adbc, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing an ADBC connection failed", exc_info=True)
        super().close()


def _unprocessed(result: Any) -> bool:
    """Whether no column of ``result`` has a result processor (the driver's values are what
    SQLAlchemy would return), from the result's metadata; when it cannot tell, False."""
    processors = getattr(getattr(result, "_metadata", None), "_processors", None)
    return (isinstance(processors, list) and len(processors) == len(result.keys())
            and all(p is None for p in processors))


def _adbc() -> Any:
    """The ADBC PostgreSQL DB-API module, or ``None`` when it is not installed."""
    try:
        import adbc_driver_postgresql.dbapi as module
    except ImportError:
        return None
    return module


def _cast(table: Any, types: list[Any]) -> Any:
    """Columns cast to the model's Arrow types where ADBC's differ (int4 -> int64, numeric
    as text -> decimal); a column that cannot be cast keeps ADBC's type."""
    columns = []
    for column, kind in zip(table.columns, types, strict=True):
        if kind is not None and column.type != kind:
            try:
                column = column.cast(kind)
            except Exception:
                log.debug("keeping ADBC's type %s (no cast to %s)", column.type, kind)
        columns.append(column)
    return type(table).from_arrays(columns, names=table.column_names)


def _positions(table: Any, position_of: Any, fixed: Any) -> Any:
    """The position of row ``i`` of a page's table (rows of a lag window keep the cursor)."""
    if fixed is not None:
        return lambda i: fixed
    columns = table.columns
    return lambda i: position_of([c[i].as_py() for c in columns])


def _lag_step(plan: QueryPlan, lag: Any, what: str) -> Any:
    """``lag`` as a value to subtract from the key's first column."""
    if lag is None:
        return None
    column = plan.keyset.columns[0]
    if plan.keyset.descending[0]:
        raise ConfigurationError(f"{what}: option 'lag' needs an ascending cursor", option="lag")
    try:
        kind = column.type.python_type
    except NotImplementedError:
        kind = None
    if kind in (dt.datetime, dt.date):
        return lag if isinstance(lag, dt.timedelta) else dt.timedelta(seconds=float(lag))
    if kind in (int, float, Decimal) and not isinstance(lag, dt.timedelta):
        return Decimal(str(lag)) if kind is Decimal else kind(lag)
    raise ConfigurationError(
        f"{what}: option 'lag' ({lag!r}) does not fit the cursor column "
        f"{plan.keyset.keys[0]!r} ({column.type}): use a timedelta or seconds for date/time "
        "columns and a number for numeric columns",
        option="lag",
    )
