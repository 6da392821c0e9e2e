"""Insert and upsert statements for each dialect.

``upsert`` maps to ``INSERT ... ON CONFLICT (unique_by) DO UPDATE SET col = excluded.col``
on PostgreSQL and SQLite, and to ``INSERT ... ON DUPLICATE KEY UPDATE col = VALUES(col)`` on
MariaDB/MySQL (which fires on any unique key, so ``unique_by`` there must be the table's
only unique key besides the primary key to mean what it says). An empty ``update_only``
leaves existing rows untouched (``DO NOTHING``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from active_data_flow.connectors.sqlalchemy._models import ModelInfo
from active_data_flow.errors import ConfigurationError, SinkError

__all__ = ["UPSERT_DIALECTS", "UpsertSpec", "insert_statement", "merge_statement"]

UPSERT_DIALECTS = ("postgresql", "sqlite", "mysql")


@dataclass(frozen=True)
class UpsertSpec:
    """What an upsert matches on and what it updates.

    Attributes:
        unique_by: column keys of the unique key a conflict is detected on.
        update_only: column keys to update on conflict; ``None`` means every written
            column outside ``unique_by``; empty means leave the existing row as it is.
    """

    unique_by: tuple[str, ...]
    update_only: tuple[str, ...] | None = None

    def updates(self, columns: Sequence[str]) -> list[str]:
        """The columns an upsert of records with ``columns`` updates on conflict.

        Raises:
            SinkError: the records lack a unique_by or update_only column.
        """
        missing = [c for c in self.unique_by if c not in columns]
        if missing:
            raise SinkError(f"upsert records lack the unique_by column(s) {missing}")
        if self.update_only is None:
            return [c for c in columns if c not in self.unique_by]
        absent = [c for c in self.update_only if c not in columns]
        if absent:
            raise SinkError(f"upsert records lack the update_only column(s) {absent}")
        return [c for c in self.update_only if c not in self.unique_by]


def check_dialect(dialect: str, what: str) -> None:
    """Raise ``ConfigurationError`` when ``dialect`` has no upsert statement here."""
    if dialect not in UPSERT_DIALECTS:
        raise ConfigurationError(
            f"{what}: upsert is supported on PostgreSQL, SQLite and MariaDB/MySQL, not on "
            f"{dialect}", option="upsert",
        )


def insert_statement(
    info: ModelInfo, columns: Sequence[str], dialect: str, upsert: UpsertSpec | None
) -> sa.Insert:
    """``INSERT INTO table`` (for executemany over ``columns``), or its dialect's upsert."""
    if upsert is None:
        return sa.insert(info.table)
    return _on_conflict(info, _dialect_insert(dialect, info.table), columns, dialect, upsert)


def merge_statement(
    info: ModelInfo, columns: Sequence[str], source: Sequence[Any], upsert: UpsertSpec
) -> sa.Insert:
    """PostgreSQL: ``INSERT INTO table (columns) SELECT source ... ON CONFLICT ...``."""
    stmt = postgresql.insert(info.table).from_select(
        [info.columns[c] for c in columns], sa.select(*source)
    )
    return _on_conflict(info, stmt, columns, "postgresql", upsert)


def _dialect_insert(dialect: str, table: sa.Table) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect in ("mysql", "mariadb"):
        return mysql.insert(table)
    check_dialect(dialect, "sqlalchemy sink")
    raise AssertionError("unreachable")


def _on_conflict(
    info: ModelInfo, stmt: Any, columns: Sequence[str], dialect: str, upsert: UpsertSpec
) -> sa.Insert:
    updates = upsert.updates(columns)
    if dialect in ("mysql", "mariadb"):
        if not updates:  # a no-op assignment: the MySQL spelling of DO NOTHING
            first = info.columns[upsert.unique_by[0]]
            return stmt.on_duplicate_key_update({first: first})  # type: ignore[no-any-return]
        return stmt.on_duplicate_key_update(  # type: ignore[no-any-return]
            {info.columns[c]: stmt.inserted[info.columns[c].key] for c in updates}
        )
    target = [info.columns[c] for c in upsert.unique_by]
    if not updates:
        return stmt.on_conflict_do_nothing(index_elements=target)  # type: ignore[no-any-return]
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=target,
        set_={info.columns[c]: stmt.excluded[info.columns[c].key] for c in updates},
    )
