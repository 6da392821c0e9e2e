"""Bulk writers: many records per statement, no per-record ORM objects.

One writer per set of record columns, chosen by dialect and driver:

* PostgreSQL with psycopg 3: plain inserts stream through ``COPY ... FROM STDIN``, and
  upserts copy into a session-local staging table, then merge with one
  ``INSERT ... SELECT ... ON CONFLICT``. COPY is several times faster than any INSERT form.
* Elsewhere: the dialect's ``INSERT`` (or upsert) is compiled once and executed as one
  driver-level ``executemany`` per chunk, with SQLAlchemy's type processors applied only
  to the columns that have one (SQLAlchemy's own executemany rebuilds each row's
  parameters generically, which costs more than the insert itself on SQLite).
* Columns whose Python-side default is a callable, and bind names SQLAlchemy must escape,
  use SQLAlchemy's standard ``Connection.execute(insert, records)`` instead.

All of them run inside the caller's transaction and raise SQLAlchemy ``DBAPIError``\\ s,
with ``connection_invalidated`` set on disconnects.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Dialect

from active_data_flow.connectors.sqlalchemy._models import ModelInfo
from active_data_flow.connectors.sqlalchemy._upsert import (
    UpsertSpec,
    insert_statement,
    merge_statement,
)

__all__ = ["Writer", "make_writer"]

Record = dict[str, Any]


class Writer(Protocol):
    """Writes records that all have the same columns."""

    #: Whether one statement streams any number of records (COPY): no need to chunk.
    streams: bool
    #: Whether building parameters reads every field of every record (so a record that
    #: lacks one raises KeyError before anything is sent).
    reads_every_field: bool

    def prepare(self, conn: Connection) -> None:
        """One-time setup on a connection, outside the data's transaction."""

    def write(self, conn: Connection, records: Sequence[Record]) -> None:
        """Write ``records`` in ``conn``'s current transaction."""


def make_writer(
    info: ModelInfo, columns: tuple[str, ...], dialect: Dialect, upsert: UpsertSpec | None,
    *, copy: bool = True,
) -> Writer:
    """The fastest correct writer for records with ``columns`` on ``dialect``."""
    stmt = insert_statement(info, columns, dialect.name, upsert)
    core_keys = {info.columns[a].key: a for a in columns}  # Core column key -> record key
    compiled = stmt.compile(dialect=dialect, column_keys=list(core_keys))
    defaults = _scalar_defaults(compiled)
    if defaults is None or compiled.escaped_bind_names:
        return _CoreWriter(stmt, core_keys)
    if copy and dialect.name == "postgresql" and dialect.driver == "psycopg":
        return _CopyWriter(info, core_keys, dialect, defaults, upsert)
    return _DriverWriter(str(compiled), compiled, info, dialect, defaults, core_keys)


def _scalar_defaults(compiled: Any) -> dict[str, Any] | None:
    """Constants for the columns whose Python-side default SQLAlchemy would fill in;
    ``None`` when one of them is a callable (only SQLAlchemy's executemany runs those)."""
    out: dict[str, Any] = {}
    for column in compiled.insert_prefetch:
        default = column.default
        if default is None or not default.is_scalar:
            return None
        out[column.key] = default.arg
    return out


def _row_builder(
    order: Sequence[str], processors: dict[str, Callable[[Any], Any]],
    constants: dict[str, Any], core_keys: dict[str, str], *, as_dict: bool,
) -> Callable[[Record], Any]:
    """A function from a record to a statement's parameters, generated for speed.

    ``order`` lists Core column keys; ``core_keys`` maps them to the record's keys (the
    model's attribute names). ``lambda r: (r['id'], p0(r['ts']), c0)``: one C-level tuple
    or dict build per row.
    """
    namespace: dict[str, Any] = {}
    parts: list[str] = []
    for i, key in enumerate(order):
        if key in constants:
            namespace[f"c{i}"] = constants[key]
            expr = f"c{i}"
        else:
            expr = f"r[{core_keys[key]!r}]"
        if key in processors:
            namespace[f"p{i}"] = processors[key]
            expr = f"p{i}({expr})"
        parts.append(f"{key!r}: {expr}" if as_dict else expr)
    body = "{" + ", ".join(parts) + "}" if as_dict else "(" + ", ".join(parts) + ",)"
    return eval(f"lambda r: {body}", namespace)  # type: ignore[no-any-return]


def _processors(info: ModelInfo, keys: Sequence[str], dialect: Dialect) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        impl = info.table.c[key].type.dialect_impl(dialect)
        proc: Callable[[Any], Any] | None = impl.bind_processor(dialect)
        if proc is None:
            continue
        if type(impl) is sqlite.DATETIME and impl._storage_format == _SQLITE_DATETIME_FORMAT:
            proc = _fast_sqlite_datetime(proc)
        out[key] = proc
    return out


# SQLAlchemy stores SQLite datetimes as text in this format (unless a column sets its own).
_SQLITE_DATETIME_FORMAT = sqlite.DATETIME._storage_format


def _fast_sqlite_datetime(slow: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """SQLAlchemy's SQLite datetime formatting, at C speed for naive datetimes.

    ``isoformat(" ", "microseconds")`` yields exactly SQLAlchemy's default storage text
    (``2024-01-01 12:00:00.000000``) in a third of the time; anything else (aware
    datetimes, dates) goes through SQLAlchemy's own processor.
    """
    iso, kind = dt.datetime.isoformat, dt.datetime

    def process(value: Any) -> Any:
        if type(value) is kind and value.tzinfo is None:
            return iso(value, " ", "microseconds")
        return slow(value)

    return process


class _CoreWriter:
    """SQLAlchemy's own executemany (Python-side callable defaults, escaped names)."""

    streams = False
    reads_every_field = False

    def __init__(self, stmt: sa.Insert, core_keys: dict[str, str]) -> None:
        self.stmt = stmt
        to_core = {a: c for c, a in core_keys.items()}
        same = all(c == a for c, a in core_keys.items())
        self.params: Callable[[Record], Record] = (
            (lambda r: r) if same else (lambda r: {to_core[k]: v for k, v in r.items()})
        )

    def prepare(self, conn: Connection) -> None:
        pass

    def write(self, conn: Connection, records: Sequence[Record]) -> None:
        conn.execute(self.stmt, [self.params(r) for r in records])


class _DriverWriter:
    """A statement compiled once, executed as a driver-level executemany."""

    streams = False

    def __init__(
        self, sql: str, compiled: Any, info: ModelInfo, dialect: Dialect,
        constants: dict[str, Any], core_keys: dict[str, str],
    ) -> None:
        self.sql = sql
        positional = compiled.positiontup is not None
        order = list(compiled.positiontup if positional else compiled.binds)
        processors = _processors(info, order, dialect)
        same_keys = all(c == a for c, a in core_keys.items())
        self.reads_every_field = True
        if not positional and not processors and not constants and same_keys:
            self.params: Callable[[Sequence[Record]], Any] = list  # the records themselves
            self.reads_every_field = False
        elif positional and not processors and not constants and len(order) > 1:
            get = itemgetter(*(core_keys[k] for k in order))  # a C-level tuple per record
            self.params = lambda records: list(map(get, records))
        else:
            build = _row_builder(order, processors, constants, core_keys,
                                 as_dict=not positional)
            self.params = lambda records: list(map(build, records))

    def prepare(self, conn: Connection) -> None:
        pass

    def write(self, conn: Connection, records: Sequence[Record]) -> None:
        conn.exec_driver_sql(self.sql, self.params(records))


class _CopyWriter:
    """PostgreSQL (psycopg 3): COPY into the table, or into a staging table and merge."""

    streams = True  # one COPY per flush: each statement costs round trips, rows do not
    reads_every_field = True

    def __init__(
        self, info: ModelInfo, core_keys: dict[str, str], dialect: Dialect,
        constants: dict[str, Any], upsert: UpsertSpec | None,
    ) -> None:
        quote = dialect.identifier_preparer.quote
        self.dialect = dialect
        order = [*core_keys, *(k for k in constants if k not in core_keys)]
        names = ", ".join(quote(info.table.c[k].name) for k in order)
        self.row = _row_builder(order, _processors(info, order, dialect), constants,
                                core_keys, as_dict=False)
        table = dialect.identifier_preparer.format_table(info.table)
        self.upsert = upsert
        self.stage: str | None = None
        if upsert is None:
            self.copy_sql = f"COPY {table} ({names}) FROM STDIN"
            return
        digest = hashlib.sha1(f"{table}|{names}".encode()).hexdigest()[:12]
        self.stage = f"adf_stage_{digest}"
        self.create_sql = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.stage} AS "
            f"SELECT {names} FROM {table} WITH NO DATA"
        )
        self.copy_sql = f"COPY {self.stage} ({names}) FROM STDIN"
        stage = sa.table(self.stage, *(sa.column(info.table.c[k].name) for k in order))
        by_core = {c.key: a for a, c in info.columns.items()}
        merge = merge_statement(info, [by_core[k] for k in order],
                                [stage.c[info.table.c[k].name] for k in order], upsert)
        self.merge_sql = str(merge.compile(dialect=dialect))
        self.truncate_sql = f"TRUNCATE {self.stage}"
        key = [order.index(info.columns[a].key) for a in upsert.unique_by]
        self.dedupe = bool(upsert.updates([by_core[k] for k in order]))
        self.key_of: Callable[[tuple[Any, ...]], tuple[Any, ...]] = (
            lambda row: tuple(row[i] for i in key)
        )

    def prepare(self, conn: Connection) -> None:
        if self.stage is None:
            return
        made = conn.connection.info.setdefault("adf_stages", set())
        if self.stage not in made:
            # Created once per connection, in its own transaction, so that a rolled-back
            # batch cannot take the staging table with it.
            conn.exec_driver_sql(self.create_sql)
            conn.commit()
            made.add(self.stage)

    def write(self, conn: Connection, records: Sequence[Record]) -> None:
        rows: Iterable[tuple[Any, ...]]
        if self.stage is not None and self.dedupe:
            rows = self._last_per_key(list(map(self.row, records)))
        else:
            rows = map(self.row, records)  # made one at a time as COPY sends them
        self._copy(conn, rows)
        if self.stage is not None:
            conn.exec_driver_sql(self.merge_sql)
            conn.exec_driver_sql(self.truncate_sql)

    def _last_per_key(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        # ON CONFLICT DO UPDATE may not touch one row twice in a statement; applying the
        # records one by one would leave the last one, so keep the last per key. Keys with
        # a NULL never conflict and are all kept.
        latest: dict[Any, tuple[Any, ...]] = {}
        loose: list[tuple[Any, ...]] = []
        for row in rows:
            key = self.key_of(row)
            if None in key:
                loose.append(row)
            else:
                latest.pop(key, None)
                latest[key] = row
        return [*latest.values(), *loose] if len(latest) + len(loose) < len(rows) else rows

    def _copy(self, conn: Connection, rows: Iterable[tuple[Any, ...]]) -> None:
        dbapi = self.dialect.loaded_dbapi
        raw: Any = conn.connection.dbapi_connection  # a psycopg.Connection
        try:
            with raw.cursor() as cursor, cursor.copy(self.copy_sql) as copy:
                write = copy.write_row
                for row in rows:
                    write(row)
        except dbapi.Error as exc:
            # COPY runs on the driver directly: wrap its errors as SQLAlchemy would, and
            # invalidate a connection that died, so the pool never hands it out again.
            gone = self.dialect.is_disconnect(exc, raw, None)
            wrapped = sa.exc.DBAPIError.instance(
                self.copy_sql, None, exc, dbapi.Error, connection_invalidated=gone,
                dialect=self.dialect,
            )
            if gone:
                conn.invalidate(exc)
            raise wrapped from exc
