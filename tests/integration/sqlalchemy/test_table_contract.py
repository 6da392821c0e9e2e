"""The table connector contracts (``active_data_flow.testing.tables``) on the SQLAlchemy
connectors, on SQLite, PostgreSQL and MariaDB (the Django connectors pass the same suites)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from active_data_flow.connector import Sink, Source
from active_data_flow.connectors.sqlalchemy import SqlAlchemySink, SqlAlchemySource
from active_data_flow.testing import TableSinkContract, TableSourceContract
from tests.integration.sqlalchemy.conftest import url_of
from tests.integration.sqlalchemy.models import Contact, Person

Record = dict[str, Any]


class _Tables:
    engine: sa.Engine

    @pytest.fixture(autouse=True)
    def _engine(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _fill(self, model: Any, rows: list[Record]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(model))
            if rows:
                conn.execute(sa.insert(model), rows)


class TestSqlAlchemyTableSource(_Tables, TableSourceContract):
    def fill_people(self, rows: list[Record]) -> None:
        self._fill(Person, rows)

    def people_source(self, **options: Any) -> Source:
        return SqlAlchemySource(model=Person, database=url_of(self.engine), **options)


class TestSqlAlchemyTableSink(_Tables, TableSinkContract):
    def fill_contacts(self, rows: list[Record]) -> None:
        self._fill(Contact, rows)

    def contacts(self) -> list[Record]:
        table = Contact.__table__
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(table.c.id, table.c.email, table.c.name, table.c.score))]

    def contact_sink(self, **options: Any) -> Sink:
        return SqlAlchemySink(model=Contact, database=url_of(self.engine), **options)


class TestSqlAlchemyTableSinkSingleRecord(TestSqlAlchemyTableSink):
    single_record = True
