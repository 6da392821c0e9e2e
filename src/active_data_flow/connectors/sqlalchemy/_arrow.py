"""Pages of rows as Arrow tables: column types from the model, values column by column."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect

from active_data_flow.columnar import pyarrow

__all__ = ["arrow_types", "column_converters", "page_table"]


def arrow_types(columns: Sequence[sa.Column[Any] | None]) -> list[Any]:
    """The Arrow type of each column (``None``: inferred from the values)."""
    pa = pyarrow()
    out: list[Any] = []
    for column in columns:
        kind = None if column is None else column.type
        if isinstance(kind, sa.Boolean):
            out.append(pa.bool_())
        elif isinstance(kind, sa.Integer):
            out.append(pa.int64())
        elif isinstance(kind, sa.Float):
            out.append(pa.float64())
        elif isinstance(kind, sa.Numeric) and kind.asdecimal and kind.precision:
            out.append(pa.decimal128(kind.precision, kind.scale or 0))
        elif isinstance(kind, sa.DateTime):
            out.append(pa.timestamp("us", tz="UTC" if kind.timezone else None))
        elif isinstance(kind, sa.Date):
            out.append(pa.date32())
        elif isinstance(kind, sa.Time):
            out.append(pa.time64("us"))
        elif isinstance(kind, sa.Enum) and kind.enum_class is not None:
            out.append(None)
        elif isinstance(kind, sa.String):
            out.append(pa.string())
        elif isinstance(kind, sa.LargeBinary):
            out.append(pa.binary())
        else:
            out.append(None)
    return out


def column_converters(
    columns: Sequence[sa.Column[Any] | None], types: Sequence[Any], dialect: Dialect
) -> list[Converter]:
    """For each column, a function from the driver's raw values to an Arrow array of the
    column's type: the values as they are when SQLAlchemy does not process them, Arrow's
    cast where it reads what the driver returns (SQLite's date-time text, 0/1 booleans),
    SQLAlchemy's result processor value by value otherwise."""
    pa = pyarrow()
    out: list[Converter] = []
    for column, kind in zip(columns, types, strict=True):
        proc = None
        if column is not None:
            try:  # some processors depend on the driver's type code, unknown here
                proc = column.type.dialect_impl(dialect).result_processor(dialect, None)
            except Exception:
                proc = None
        if proc is None:
            out.append(functools.partial(_array, pa, kind=kind))
        elif kind is not None and _castable(column, dialect):
            out.append(functools.partial(_cast, pa, kind=kind, proc=proc))
        else:
            out.append(functools.partial(_processed, pa, kind=kind, proc=proc))
    return out


Converter = Callable[[Sequence[Any]], Any]


def _castable(column: Any, dialect: Dialect) -> bool:
    impl = column.type.dialect_impl(dialect)
    if dialect.name != "sqlite":
        return isinstance(impl, sa.Boolean)
    if isinstance(impl, (sqlite.DATETIME, sqlite.DATE)):
        return impl._storage_format in (_SQLITE_DATETIME, _SQLITE_DATE) and not impl._reg
    return isinstance(impl, sa.Boolean)


_SQLITE_DATETIME = sqlite.DATETIME._storage_format
_SQLITE_DATE = sqlite.DATE._storage_format


def _cast(pa: Any, values: Sequence[Any], kind: Any, proc: Callable[[Any], Any]) -> Any:
    try:
        return pa.array(values).cast(kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return _processed(pa, values, kind, proc)


def _processed(pa: Any, values: Sequence[Any], kind: Any, proc: Callable[[Any], Any]) -> Any:
    return _array(pa, list(map(proc, values)), kind)


def page_table(
    rows: Sequence[Sequence[Any]], names: Sequence[str], types: Sequence[Any]
) -> Any:
    """A page of rows as an Arrow table with ``names``; ``types`` are Arrow types (``None``:
    inferred) or converters from :func:`column_converters`."""
    pa = pyarrow()
    if not rows:
        return pa.table({name: [] for name in names})
    columns = list(zip(*rows))  # noqa: B905  # every row has every column
    arrays = [kind(values) if callable(kind) else _array(pa, values, kind)
              for values, kind in zip(columns, types, strict=True)]
    return pa.Table.from_arrays(arrays, names=list(names))


def _array(pa: Any, values: Sequence[Any], kind: Any) -> Any:
    try:
        return pa.array(values, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        # Values Arrow has no type for (enums, mixed JSON): an enum's value, else the text.
        return pa.array([None if v is None else v.value if isinstance(v, enum.Enum)
                         else str(v) for v in values])
