"""Arrow helpers of the SQLAlchemy connectors: page conversion and upsert de-duplication."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from active_data_flow.connectors.sqlalchemy._arrow import (
    arrow_types,
    column_converters,
    page_table,
)
from active_data_flow.connectors.sqlalchemy._bulk import _last_per_key

TABLE = sa.Table(
    "t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.DateTime), sa.Column("ok", sa.Boolean), sa.Column("n", sa.Numeric(8, 2)),
    sa.Column("name", sa.String(20)),
)


def test_sqlite_raw_rows_become_typed_columns() -> None:
    columns = list(TABLE.c)
    types = arrow_types(columns)
    converters = column_converters(columns, types, sqlite.dialect())
    raw = [(1, "2024-01-01 12:00:00.000005", 1, 2.5, "a"), (2, None, 0, None, None)]
    table = page_table(raw, [c.key for c in columns], converters)
    assert table.schema.types == [pa.int64(), pa.timestamp("us"), pa.bool_(),
                                  pa.decimal128(8, 2), pa.string()]
    assert table.to_pylist() == [
        {"id": 1, "at": dt.datetime(2024, 1, 1, 12, 0, 0, 5), "ok": True, "n": Decimal("2.50"),
         "name": "a"},
        {"id": 2, "at": None, "ok": False, "n": None, "name": None},
    ]


def test_values_arrow_has_no_type_for_become_their_value_or_text() -> None:
    import enum

    class Colour(enum.Enum):
        RED = "red"

    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    table = page_table([(Colour.RED, Opaque()), (None, None)], ["c", "o"], [None, None])
    assert table.to_pylist() == [{"c": "red", "o": "opaque"}, {"c": None, "o": None}]


def test_the_last_row_of_each_key_is_kept_and_null_keys_never_conflict() -> None:
    table = pa.table({"c0": [1, 2, 1, None, None], "c1": ["a", "b", "c", "d", "e"]})
    kept = _last_per_key(table, [0]).to_pylist()
    assert sorted(kept, key=lambda r: r["c1"]) == [
        {"c0": 2, "c1": "b"}, {"c0": 1, "c1": "c"}, {"c0": None, "c1": "d"},
        {"c0": None, "c1": "e"}]
    unique = pa.table({"c0": [1, 2], "c1": ["a", "b"]})
    assert _last_per_key(unique, [0]) is unique
