"""The table the SQLAlchemy connectors' contract runs read and write, and its fixtures.

One database per test module and kind (SQLite, PostgreSQL, MariaDB), emptied before each test:
creating a database per test would cost most of the suite's time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from active_data_flow.connectors.sqlalchemy import dispose_engines
from tests.conftest import DATABASES, create_database, drop_database


class Base(DeclarativeBase):
    pass


class ContractRecord(Base):
    """The contract's records: ``{"id": int, "name": str | None}``.

    A BIGINT key is no SQLite rowid alias, so a record without ``id`` is refused on every
    database alike; TEXT holds the contract's long strings.
    """

    __tablename__ = "contract_records"

    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str | None] = mapped_column(sa.Text)


@dataclass
class SqlTable:
    """The contract table of one database: fill it, read it back."""

    url: str
    engine: sa.Engine

    def fill(self, records: list[dict[str, Any]]) -> None:
        """Replace the table's rows with ``records``."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(ContractRecord))
            if records:
                conn.execute(sa.insert(ContractRecord), records)

    def rows(self) -> list[dict[str, Any]]:
        """Every committed row, in key order, through a connection of the test's own."""
        table = ContractRecord.__table__
        with self.engine.connect() as conn:
            result = conn.execute(sa.select(table).order_by(table.c.id))
            return [dict(row._mapping) for row in result]


@pytest.fixture(scope="module", params=DATABASES)
def sql_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SqlTable]:
    """A database of each kind with the contract table, for one test module."""
    folder: Path = tmp_path_factory.mktemp("contract-db")
    url = create_database(request.param, folder)
    engine = sa.create_engine(url)
    try:
        Base.metadata.create_all(engine)
        yield SqlTable(url, engine)
    finally:
        engine.dispose()
        dispose_engines()
        drop_database(url)


@pytest.fixture
def sql_table(sql_database: SqlTable) -> Iterator[SqlTable]:
    """The module's database with an empty contract table; the connectors' pools are
    disposed afterwards."""
    dispose_engines()
    sql_database.fill([])
    yield sql_database
    dispose_engines()
