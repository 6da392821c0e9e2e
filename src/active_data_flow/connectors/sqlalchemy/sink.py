"""SqlAlchemySink: buffered bulk inserts and upserts, or one ORM object per record."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, RootTransaction

from active_data_flow.connector import Sink
from active_data_flow.connectors._table_options import TableSinkOptions
from active_data_flow.connectors.sqlalchemy import _db
from active_data_flow.connectors.sqlalchemy._bulk import (
    TableWriter,
    Writer,
    make_table_writer,
    make_writer,
)
from active_data_flow.connectors.sqlalchemy._db import Database
from active_data_flow.connectors.sqlalchemy._models import ModelInfo, model_database
from active_data_flow.connectors.sqlalchemy._options import ModelOptions
from active_data_flow.connectors.sqlalchemy._single import SingleWriter
from active_data_flow.connectors.sqlalchemy._upsert import UpsertSpec, check_dialect
from active_data_flow.errors import (
    ConfigurationError,
    ConnectorTimeout,
    RecordRejected,
    SinkError,
)
from active_data_flow.message import Message, Row, Untyped, as_record, record_key
from active_data_flow.registry import register_connector

__all__ = ["SqlAlchemySink"]

log = logging.getLogger(__name__)

Record = dict[str, Any]
Plan = list[tuple[Writer | None, list[Record]]]
TablePlan = list[tuple[TableWriter, Any]]
_PLAIN = (dict, Row, Untyped)
# A statement-level error that one bad record can cause: find and isolate that record.
_RECORD_DB_ERRORS = (sa.exc.IntegrityError, sa.exc.DataError)


class _Isolate(Exception):
    """A bulk statement failed because of some record: write the batch again, isolating it."""


class _Regroup(Exception):
    """Records turned out to differ in their fields: write the batch again, grouped exactly."""


@register_connector("sqlalchemy")
class SqlAlchemySink(Sink):
    """Write records to a model's table.

    Options:
        model: the mapped class, or its import string (``"pkg.mod:Model"``).
        batch_size: records per INSERT statement (PostgreSQL's COPY streams a whole flush),
            and how many a write may find buffered before it flushes them (default 1000).
            ``1`` is the single-record path: one ORM object per record, so ``@validates``
            validators and mapper events run.
        upsert: insert, or update the row with the same ``unique_by`` key.
        unique_by: the unique key upserts match on (default: the primary key).
        update_only: the columns an upsert updates (default: all written columns but the
            key; ``[]`` leaves existing rows untouched).
        transaction: write each flush in one transaction, committed at once or not at all
            (default true); false commits each statement on its own.
        transaction_batch_size: commit every this many records within a flush instead.
        skip_validations: single-record path: do not run ``@validates`` validators.
        skip_callbacks: single-record path: write with Core, no mapper/session events.
        database: a registered database name, a URL or an Engine (default: the model's
            registered database, else the one registered as ``"default"``).

    ``flush()`` is the durability point: it commits. A record the database or a validator
    refuses (unique violation, invalid value) is found, logged with its key and reported as
    :class:`~active_data_flow.errors.RecordRejected`: raised (the flush's transaction rolls
    back, nothing is half-written) or, under a flow's ``skip``/``dead_letter`` policy,
    passed on while the rest of the batch is committed.
    """

    untrusted_ok = True  # untrusted specs name registered models and databases only

    class Config(ModelOptions, TableSinkOptions):
        """The model options and every table sink's (see :class:`TableSinkOptions`)."""

    config: Config

    def _setup(self) -> None:
        what = self._label()
        cfg = self.config
        cfg.check(what)
        self._info = info = ModelInfo.of(cfg.model, what)
        self._upsert = _upsert_spec(cfg, info, what)
        if cfg.transaction_batch_size is not None and not cfg.transaction:
            raise ConfigurationError(
                f"{what}: option 'transaction_batch_size' needs transaction=true",
                option="transaction_batch_size",
            )
        self._key_fields = self._upsert.unique_by if self._upsert else info.primary_key
        self._known = frozenset(info.columns)
        self._threshold = max(cfg.batch_size, cfg.transaction_batch_size or 0)
        self._single = SingleWriter(
            info, self._upsert, skip_validations=cfg.skip_validations,
            skip_callbacks=cfg.skip_callbacks,
        ) if cfg.batch_size == 1 else None
        self._buffer: list[Record] = []
        self._writers: dict[tuple[tuple[str, ...], bool], Writer] = {}
        self._tables: list[Any] = []  # Arrow tables (the columnar path), flushed last
        self._table_writers: dict[tuple[tuple[str, ...], tuple[str, ...]],
                                  TableWriter | None] = {}
        self._db: Database | None = None
        self._conn: Connection | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec: the model as its import string, the database as its registered name
        (or URL)."""
        self.config.check_storable()
        return super().to_dict()

    # -- buffering ----------------------------------------------------------------------
    def write(self, record: Message | Mapping[str, Any]) -> None:
        """Buffer one record, flushing first if ``batch_size`` records are waiting."""
        if len(self._buffer) >= self._threshold:
            self.flush()
        self._buffer.append(as_record(record))

    def write_batch(self, records: Iterable[Message | Mapping[str, Any]]) -> None:
        """Buffer records, flushing first if ``batch_size`` records are waiting.

        The records of one call are committed together by the next flush, so a flow's
        batch is one transaction (and its cursor can join it, see :meth:`flush_with`).
        """
        if len(self._buffer) >= self._threshold:
            self.flush()
        plain = _PLAIN  # dicts (Row is one) are buffered as they are, without a call each
        self._buffer.extend([
            r if type(r) in plain else as_record(r)  # type: ignore[misc]  # a dict, then
            for r in records
        ])

    def write_table(self, table: Any) -> None:
        """Buffer an Arrow table (the columnar path): the next flush writes it whole, by
        ``COPY`` on PostgreSQL and one executemany from its columns elsewhere, in the same
        transaction as buffered records. A table that a statement refuses is written again
        row by row, so that the refused records are isolated and reported as in the row
        path. The single-record path and per-statement commits take its rows as records."""
        cfg = self.config
        if self._single is not None or not cfg.transaction or cfg.transaction_batch_size:
            super().write_table(table)
            return
        if len(self._buffer) + sum(t.num_rows for t in self._tables) >= self._threshold:
            self.flush()
        if table.num_rows:
            self._tables.append(table)

    def discard(self) -> None:
        """Drop the records not flushed yet."""
        self._buffer = []
        self._tables = []

    def flush(self) -> None:
        """Write and commit everything buffered.

        Raises:
            RecordRejected: a record was refused and no ``on_reject`` handler is set.
            ConnectorTimeout: the database stayed unreachable (retried with backoff).
            SinkError: a statement failed for another reason.
        """
        self._flush(None)

    def flush_with(self, hook: Callable[[Any], bool]) -> bool:
        """Flush, calling ``hook(connection)`` in the same transaction just before commit.

        Returns the hook's result. Without ``transaction`` there is no shared transaction:
        the records are flushed and ``False`` returned without calling the hook.
        """
        if not self.config.transaction:
            self.flush()
            return False
        return self._flush(hook)

    def close(self) -> None:
        """Flush what is left and return the connection to the pool."""
        try:
            self.flush()
        finally:
            conn, self._conn = self._conn, None
            _db.release(conn)

    # -- transactions -------------------------------------------------------------------
    def _flush(self, hook: Callable[[Any], bool] | None) -> bool:
        if not self._buffer and not self._tables and hook is None:
            return False
        db = self._database()
        cfg = self.config
        size = (cfg.transaction_batch_size if cfg.transaction else cfg.batch_size) or len(
            self._buffer
        )
        while True:
            records = self._buffer[:size] if len(self._buffer) > size else self._buffer
            last = records is self._buffer
            tables, self._tables = (self._tables, []) if last else ([], self._tables)
            result = self._transaction(db, records, hook if last else None, tables)
            if last:
                self._buffer = []
                return result
            del self._buffer[: len(records)]

    def _transaction(
        self, db: Database, records: list[Record], hook: Callable[[Any], bool] | None,
        tables: list[Any] | None = None,
    ) -> bool:
        """Write ``records`` (then ``tables``) and run ``hook`` in one transaction, retrying
        transient errors."""
        records, by_table = self._table_plan(db, records, tables or [])
        plan = self._plan(db, records)
        attempt, isolate = 1, False
        while True:
            conn = self._connection(db)
            rejected: list[tuple[Record, BaseException]] = []
            trans: RootTransaction | None = None
            try:
                for writer, _ in plan:
                    if writer is not None:
                        writer.prepare(conn)
                for table_writer, _ in by_table:
                    table_writer.prepare(conn)
                trans = _db.begin_immediate(conn)
                self._write(conn, plan, rejected, isolate)
                for table_writer, table in by_table:
                    try:
                        table_writer.write_table(conn, table)
                    except _RECORD_DB_ERRORS:
                        raise _Isolate from None
                result = bool(hook(conn)) if hook is not None else False
            except _Isolate:
                self._rollback(trans)
                if by_table:  # find the refused rows on the row path
                    records = [*records, *(r for _, t in by_table for r in t.to_pylist())]
                    by_table = []
                    plan = self._plan(db, records)
                isolate = True
                continue
            except _Regroup:
                self._rollback(trans)
                plan = self._plan(db, records, exact=True)
                continue
            except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
                self._rollback(trans)
                if not _db.is_transient_db_error(exc) or attempt >= db.retry.attempts:
                    raise self._failure(db, exc, attempt) from exc
                self._pause(db, exc, attempt)
                attempt += 1
                continue
            except BaseException:
                self._rollback(trans)
                raise
            self._commit(db, trans)
            for record, error in rejected:
                self._report(db, record, error, raise_it=False)
            return result

    def _commit(self, db: Database, trans: RootTransaction) -> None:
        try:
            trans.commit()
        except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
            self._drop()
            kind = ConnectorTimeout if _db.is_transient_db_error(exc) else SinkError
            detail = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
            raise kind(
                f"sink ({db.label}): committing {self._info.name} records failed, so the batch "
                f"may or may not be stored: {db.mask(str(detail))}"
            ) from exc

    def _rollback(self, trans: RootTransaction | None) -> None:
        try:
            if trans is not None and trans.is_active:
                trans.rollback()
        except sa.exc.DBAPIError:
            self._drop()
        conn = self._conn
        if conn is not None and (conn.invalidated or conn.closed):
            self._drop()

    def _failure(self, db: Database, exc: BaseException, attempts: int) -> Exception:
        error = _db.translate(exc, db, "sink", f"writing {self._info.name} records")
        if isinstance(error, ConnectorTimeout) and attempts > 1:
            return ConnectorTimeout(f"{error} (after {attempts} attempts)")
        return error

    def _pause(self, db: Database, exc: BaseException, attempt: int) -> None:
        self._drop()
        pause = db.retry.pause(attempt)
        log.warning(
            "sink (%s): writing %s records failed transiently (%s); retrying the batch in "
            "%.2fs (attempt %d of %d)", db.label, self._info.name,
            db.mask(str(getattr(exc, "orig", exc))), pause, attempt + 1, db.retry.attempts,
            extra={"action": "db_retry", "database": db.name},
        )
        time.sleep(pause)

    # -- writing ------------------------------------------------------------------------
    def _plan(self, db: Database, records: list[Record], *, exact: bool = False) -> Plan:
        """Group records by their columns, each group with its writer (bulk path).

        Records nearly always share their fields. When the writer reads every field of
        every record (and so raises KeyError where one lacks a field), equal lengths are
        proof enough; otherwise, or after a KeyError (``exact``), fields are compared.
        """
        if not records:
            return []
        if self._single is not None:
            for record in records:
                self._check_fields(tuple(record), record)
                if self._upsert is not None:  # name a missing key, as the bulk path does
                    try:
                        self._upsert.updates(tuple(record))
                    except SinkError as exc:
                        raise SinkError(f"{self._label()} ({self._info.name}): {exc}") from None
            return [(None, records)]
        dialect = db.engine.dialect
        first = records[0]
        writer = self._writer(dialect, tuple(first), first)
        if not exact and writer.reads_every_field:
            width = len(first)
            if all(len(r) == width for r in records):
                return [(writer, records)]
        keys = first.keys()
        if all(r.keys() == keys for r in records):
            return [(writer, records)]
        groups = [(tuple(k), list(g)) for k, g in itertools.groupby(records, key=tuple)]
        return [(self._writer(dialect, cols, g[0]), g) for cols, g in groups]

    def _table_plan(
        self, db: Database, records: list[Record], tables: list[Any]
    ) -> tuple[list[Record], TablePlan]:
        """Each table with its writer; tables only the row path can write join ``records``."""
        dialect = db.engine.dialect
        plan: TablePlan = []
        for table in tables:
            columns = tuple(table.column_names)
            types = tuple(str(t) for t in table.schema.types)
            key = (columns, types)
            if key not in self._table_writers:
                self._check_fields(columns, table.slice(0, 1).to_pylist()[0])
                try:
                    self._table_writers[key] = make_table_writer(
                        self._info, columns, dialect, self._upsert, table.schema.types,
                        batch_size=self.config.batch_size)
                except SinkError as exc:
                    raise SinkError(f"{self._label()} ({self._info.name}): {exc}") from None
            writer = self._table_writers[key]
            if writer is None:
                records = [*records, *table.to_pylist()]
            else:
                plan.append((writer, table))
        return records, plan

    def _writer(self, dialect: Dialect, columns: tuple[str, ...], sample: Record) -> Writer:
        return self._writer_for(dialect, columns, sample, copy=True)

    def _writer_for(
        self, dialect: Dialect, columns: tuple[str, ...], sample: Record, *, copy: bool
    ) -> Writer:
        writer = self._writers.get((columns, copy))
        if writer is None:
            self._check_fields(columns, sample)
            try:
                writer = make_writer(self._info, columns, dialect, self._upsert, copy=copy)
            except SinkError as exc:
                raise SinkError(f"{self._label()} ({self._info.name}): {exc}") from None
            self._writers[(columns, copy)] = writer
        return writer

    def _check_fields(self, columns: tuple[str, ...], sample: Record) -> None:
        unknown = [c for c in columns if c not in self._known]
        if unknown:
            raise SinkError(
                f"{self._label()}: record {self._key(sample)!r} has field(s) "
                f"{', '.join(map(repr, unknown))} that are not columns of {self._info.name} "
                f"(columns: {', '.join(self._info.columns)})"
            )

    def _write(
        self, conn: Connection, plan: Plan, rejected: list[tuple[Record, BaseException]],
        isolate: bool,
    ) -> None:
        def bad(record: Record, error: BaseException) -> None:
            if self.on_reject is None:  # fail: roll the whole transaction back
                raise self._report(self._database(), record, error, raise_it=True) from error
            rejected.append((record, error))

        size = self.config.batch_size
        for writer, records in plan:
            if writer is None:
                assert self._single is not None
                self._single.write(conn, records, bad)
                continue
            step = len(records) if writer.streams and not isolate else size
            for start in range(0, len(records), step):
                chunk = records[start:start + step]
                if isolate:
                    self._write_isolated(conn, chunk, bad)
                    continue
                try:
                    writer.write(conn, chunk)
                except _RECORD_DB_ERRORS:
                    raise _Isolate from None
                except KeyError:  # a record lacks a field the first one has
                    raise _Regroup from None

    def _write_isolated(
        self, conn: Connection, chunk: list[Record], bad: Callable[[Record, BaseException], None]
    ) -> None:
        """Write a chunk in a savepoint; if it fails, each record in its own savepoint."""
        dialect = conn.dialect
        writer = self._writer_for(dialect, tuple(chunk[0]), chunk[0], copy=False)
        savepoint = conn.begin_nested()
        try:
            writer.write(conn, chunk)
            savepoint.commit()
            return
        except _RECORD_DB_ERRORS:
            savepoint.rollback()
        for record in chunk:
            one = self._writer_for(dialect, tuple(record), record, copy=False)
            savepoint = conn.begin_nested()
            try:
                one.write(conn, [record])
                savepoint.commit()
            except _RECORD_DB_ERRORS as exc:
                savepoint.rollback()
                bad(record, exc)

    # -- rejections ---------------------------------------------------------------------
    def _key(self, record: Record) -> Any:
        values = tuple(record.get(f) for f in self._key_fields)
        if all(v is None for v in values):
            return record_key(record)
        return values[0] if len(values) == 1 else values

    def _report(
        self, db: Database, record: Record, error: BaseException, *, raise_it: bool
    ) -> RecordRejected:
        key = self._key(record)
        if isinstance(error, sa.exc.DBAPIError):
            reason = db.mask(" ".join(f"{type(error.orig).__name__}: {error.orig}".split()))
        else:
            reason = f"{type(error).__name__}: {error}"
        rejection = RecordRejected(
            f"sink ({db.label}): {self._info.name} record {key!r} rejected: {reason[:500]}",
            record=record, key=key,
        )
        log.warning("%s", rejection, extra={"action": "record_rejected", "key": repr(key)})
        if not raise_it:
            self.reject(rejection)
        return rejection

    # -- connections --------------------------------------------------------------------
    def _database(self) -> Database:
        if self._db is None:
            db = _db.resolve_database(
                self.config.database, model_database(self.config.model), self._label()
            )
            if self._upsert is not None:
                check_dialect(db.dialect, self._label())
            self._db = db
        return self._db

    def _connection(self, db: Database) -> Connection:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            self._drop()
            conn = self._conn = db.connect("sink")
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                conn.invalidate()
            finally:
                conn.close()


def _upsert_spec(cfg: SqlAlchemySink.Config, info: ModelInfo, what: str) -> UpsertSpec | None:
    if not cfg.upsert:
        for option in ("unique_by", "update_only"):
            if getattr(cfg, option) is not None:
                raise ConfigurationError(f"{what}: option {option!r} needs upsert=true",
                                         option=option)
        return None
    unique_by = tuple(cfg.unique_by or info.primary_key)
    info.check_columns(list(unique_by), "unique_by", what)
    if frozenset(unique_by) not in info.unique_keys:
        keys = "; ".join(", ".join(sorted(k)) for k in info.unique_keys) or "none"
        raise ConfigurationError(
            f"{what}: option 'unique_by': ({', '.join(unique_by)}) is not a unique key of "
            f"{info.name} (its unique keys: {keys}); declare unique=True or a "
            "UniqueConstraint on the model", option="unique_by",
        )
    update_only = None
    if cfg.update_only is not None:
        info.check_columns(cfg.update_only, "update_only", what)
        update_only = tuple(cfg.update_only)
    return UpsertSpec(unique_by, update_only)
