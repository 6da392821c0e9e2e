"""Pages of rows as Arrow tables: column types from the model, values column by column."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from active_data_flow.columnar import pyarrow

__all__ = ["arrow_types", "page_table"]


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


def page_table(rows: Sequence[Sequence[Any]], names: Sequence[str], types: Sequence[Any]) -> Any:
    """A page of result rows as an Arrow table with ``names`` and ``types``."""
    pa = pyarrow()
    columns = list(zip(*rows))  # noqa: B905  # every row has every column
    arrays = []
    for values, kind in zip(columns, types, strict=True):
        arrays.append(_array(pa, values, kind))
    return pa.Table.from_arrays(arrays, names=list(names))


def _array(pa: Any, values: Sequence[Any], kind: Any) -> Any:
    try:
        return pa.array(values, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        # Values Arrow has no type for (UUIDs, enums, mixed JSON): their text.
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())
