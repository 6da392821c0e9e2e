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

__all__ = ["TableWriter", "Writer", "make_table_writer", "make_writer"]

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
        self.order, self.constants, self.core_keys = order, constants, core_keys
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
        self.key_positions = key
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

    def write_table(self, conn: Connection, table: Any) -> None:
        """Write an Arrow table: CSV rendered by Arrow, streamed by one COPY."""
        _copy_table(self, conn, table)
        if self.stage is not None:
            conn.exec_driver_sql(self.merge_sql)
            conn.exec_driver_sql(self.truncate_sql)

    def copy_bytes(self, conn: Connection, data: Any, *, csv: bool) -> None:
        """COPY ``data`` (already rendered) into the target."""
        sql = self.copy_sql + (" (FORMAT csv)" if csv else "")
        self._copy(conn, None, data=data, sql=sql)

    def _copy(
        self, conn: Connection, rows: Iterable[tuple[Any, ...]] | None, *, data: Any = None,
        sql: str | None = None,
    ) -> None:
        dbapi = self.dialect.loaded_dbapi
        raw: Any = conn.connection.dbapi_connection  # a psycopg.Connection
        sql = sql or self.copy_sql
        try:
            with raw.cursor() as cursor, cursor.copy(sql) as copy:
                if rows is None:
                    copy.write(data)
                else:
                    write = copy.write_row
                    for row in rows:
                        write(row)
        except dbapi.Error as exc:
            # COPY runs on the driver directly: wrap its errors as SQLAlchemy would, and
            # invalidate a connection that died, so the pool never hands it out again.
            gone = self.dialect.is_disconnect(exc, raw, None)
            wrapped = sa.exc.DBAPIError.instance(
                sql, None, exc, dbapi.Error, connection_invalidated=gone,
                dialect=self.dialect,
            )
            if gone:
                conn.invalidate(exc)
            raise wrapped from exc


# -- the columnar path: Arrow tables ------------------------------------------------------
class TableWriter(Protocol):
    """Writes Arrow tables that all have the same columns."""

    def prepare(self, conn: Connection) -> None:
        """One-time setup on a connection, outside the data's transaction."""

    def write_table(self, conn: Connection, table: Any) -> None:
        """Write ``table``'s rows in ``conn``'s current transaction."""


def make_table_writer(
    info: ModelInfo, columns: tuple[str, ...], dialect: Dialect, upsert: UpsertSpec | None,
    types: Sequence[Any], *, batch_size: int,
) -> TableWriter | None:
    """The writer of Arrow tables with ``columns`` (of Arrow ``types``) on ``dialect``, or
    ``None`` when only the row path can write them (callable defaults, escaped names, types
    with no columnar route): PostgreSQL streams ``COPY ... (FORMAT csv)`` rendered by Arrow
    in C (upserts: into the staging table, then one merge); elsewhere one driver-level
    executemany per ``batch_size`` rows, its parameters built column by column."""
    stmt = insert_statement(info, columns, dialect.name, upsert)
    core_keys = {info.columns[a].key: a for a in columns}
    compiled = stmt.compile(dialect=dialect, column_keys=list(core_keys))
    defaults = _scalar_defaults(compiled)
    if defaults is None or compiled.escaped_bind_names:
        return None
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        if not all(_csv_safe(t) for t in types):
            return None
        processors = _processors(info, list(core_keys), dialect)
        if any(not isinstance(info.table.c[k].type, sa.Boolean) for k in processors):
            return None
        return _CopyWriter(info, core_keys, dialect, defaults, upsert)
    if compiled.positiontup is None:
        return None
    return _ColumnWriter(str(compiled), compiled, info, dialect, defaults, core_keys,
                         batch_size)


def _csv_safe(arrow_type: Any) -> bool:
    """Whether Arrow's CSV writer renders the type as PostgreSQL's CSV COPY reads it."""
    import pyarrow as pa

    t = pa.types
    return bool(
        t.is_integer(arrow_type) or t.is_floating(arrow_type) or t.is_string(arrow_type)
        or t.is_large_string(arrow_type) or t.is_boolean(arrow_type)
        or t.is_decimal(arrow_type) or t.is_date(arrow_type) or t.is_null(arrow_type)
        or (t.is_timestamp(arrow_type)) or t.is_time(arrow_type)
    )


class _ColumnWriter:
    """A positional statement compiled once, executed as a driver-level executemany whose
    parameter tuples are zipped from the table's columns (type processors applied per
    column, not per row)."""

    def __init__(
        self, sql: str, compiled: Any, info: ModelInfo, dialect: Dialect,
        constants: dict[str, Any], core_keys: dict[str, str], batch_size: int,
    ) -> None:
        self.sql = sql
        self.order: list[str] = list(compiled.positiontup)
        self.processors = _processors(info, self.order, dialect)
        self.constants = constants
        self.core_keys = core_keys
        self.batch_size = batch_size
        # SQLite date-times in SQLAlchemy's default text: rendered by Arrow, in C.
        self.sqlite_text = {
            key for key in self.order
            if type(impl := info.table.c[key].type.dialect_impl(dialect)) is sqlite.DATETIME
            and impl._storage_format == _SQLITE_DATETIME_FORMAT
        }

    def prepare(self, conn: Connection) -> None:
        pass

    def write_table(self, conn: Connection, table: Any) -> None:
        n = table.num_rows
        columns: list[Any] = []
        for key in self.order:
            if key in self.constants:
                values: list[Any] = [self.constants[key]] * n
            else:
                column = table.column(self.core_keys[key])
                if key in self.sqlite_text and (text := _sqlite_datetimes(column)) is not None:
                    columns.append(text)
                    continue
                values = column.to_pylist()
            proc = self.processors.get(key)
            columns.append(values if proc is None else list(map(proc, values)))
        rows = list(zip(*columns))  # noqa: B905  # equal lengths: one table's columns
        del columns
        step = self.batch_size
        for start in range(0, n, step):
            conn.exec_driver_sql(self.sql, rows[start:start + step])


def _sqlite_datetimes(column: Any) -> list[Any] | None:
    """Naive timestamps as SQLAlchemy's SQLite text (``2024-01-01 12:00:00.000000``), or
    ``None`` for other types (the processor then formats them)."""
    import pyarrow as pa

    if not pa.types.is_timestamp(column.type) or column.type.tz is not None:
        return None
    try:  # microseconds render as SQLAlchemy's text: six digits, a space before the time
        text = column.cast(pa.timestamp("us")).cast(pa.string())
    except pa.ArrowInvalid:  # nanoseconds that microseconds cannot hold: the processor
        return None
    return text.to_pylist()  # type: ignore[no-any-return]


def _copy_table(writer: _CopyWriter, conn: Connection, table: Any) -> None:
    """Stream ``table`` into ``writer``'s COPY target as CSV rendered by Arrow."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    n = table.num_rows
    arrays = []
    for key in writer.order:
        if key in writer.constants:
            arrays.append(pa.array([writer.constants[key]] * n))
        else:
            arrays.append(table.column(writer.core_keys[key]))
    data = pa.table(arrays, names=[f"c{i}" for i in range(len(arrays))])
    if writer.stage is not None and writer.dedupe:
        data = _last_per_key(data, writer.key_positions)
    sink = pa.BufferOutputStream()
    pcsv.write_csv(data, sink, pcsv.WriteOptions(include_header=False))
    writer.copy_bytes(conn, sink.getvalue(), csv=True)


def _last_per_key(table: Any, key_positions: list[int]) -> Any:
    """The last row of each key (ON CONFLICT may not touch one row twice); rows whose key
    holds a NULL never conflict and are all kept."""
    import pyarrow as pa
    import pyarrow.compute as pc

    keys = [f"c{i}" for i in key_positions]
    indexed = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    null_key = pc.or_kleene(*[pc.is_null(indexed.column(k)) for k in keys]) if len(
        keys) > 1 else pc.is_null(indexed.column(keys[0]))
    keyed = indexed.filter(pc.invert(null_key))
    last = keyed.group_by(keys, use_threads=False).aggregate([("__row", "max")])
    if last.num_rows == keyed.num_rows:
        return table
    picked = pa.concat_arrays([last.column("__row_max").combine_chunks(),
                               indexed.filter(null_key).column("__row").combine_chunks()])
    return table.take(picked)
