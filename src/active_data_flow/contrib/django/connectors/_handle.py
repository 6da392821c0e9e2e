"""The handle a Django sink gives ``flush_with`` hooks: SQLAlchemy Core statements run on the
Django connection, inside the sink's ``transaction.atomic`` block.

That is how a flow's cursor commits in the sink's own transaction when the sink writes to the
flow store's database (exactly-once): the store compiles its guarded updates for the
database's dialect and runs them through this handle, whose ``database_url`` says which
database it is (:meth:`FlowStore.shares_database_with`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from django.db import connections
from sqlalchemy.engine import URL, Dialect

__all__ = ["DjangoTransaction"]


@dataclass(frozen=True)
class _Result:
    rowcount: int


@functools.cache
def _dialect(url: URL) -> Dialect:
    # Django's cursors take "%s" placeholders on every backend (SQLite's converts them).
    return sa.create_mock_engine(url, executor=lambda *a, **k: None,
                                 paramstyle="format").dialect


class DjangoTransaction:
    """``execute(statement)`` on the Django connection of ``alias`` (in its transaction)."""

    def __init__(self, alias: str) -> None:
        from active_data_flow.contrib.django.conf import sqlalchemy_url

        self.alias = alias
        self.database_url: URL = sqlalchemy_url(alias)

    def execute(self, statement: Any) -> _Result:
        """Run a SQLAlchemy Core statement; return its ``rowcount``."""
        compiled = statement.compile(dialect=_dialect(self.database_url))
        params = compiled.construct_params()
        processors = compiled._bind_processors
        values = {k: (processors[k](v) if k in processors else v) for k, v in params.items()}
        args = [values[k] for k in compiled.positiontup or ()]
        with connections[self.alias].cursor() as cursor:
            cursor.execute(str(compiled), args)
            return _Result(cursor.rowcount)

    def __repr__(self) -> str:
        return f"DjangoTransaction({self.alias!r})"
