"""The table connector contracts (``active_data_flow.testing.tables``) on the Django
connectors, on SQLite, PostgreSQL and MariaDB: the suites the SQLAlchemy connectors pass."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from active_data_flow.connector import Sink, Source
from active_data_flow.contrib.django.connectors import DjangoSink, DjangoSource
from active_data_flow.testing import TableSinkContract, TableSourceContract
from tests.contrib.django.testapp.models import Contact, Person

Record = dict[str, Any]


class _Tables:
    alias: str
    engine: sa.Engine

    @pytest.fixture(autouse=True)
    def _alias(self, alias: str, engine: sa.Engine) -> None:
        self.alias, self.engine = alias, engine

    def _fill(self, model: Any, rows: list[Record]) -> None:
        model.objects.using(self.alias).all().delete()
        model.objects.using(self.alias).bulk_create([model(**r) for r in rows])


class TestDjangoTableSource(_Tables, TableSourceContract):
    def timestamp(self, minute: int) -> Any:
        return dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=minute)

    def fill_people(self, rows: list[Record]) -> None:
        self._fill(Person, rows)

    def people_source(self, **options: Any) -> Source:
        return DjangoSource(model=Person, database=self.alias, **options)


class TestDjangoTableSink(_Tables, TableSinkContract):
    def fill_contacts(self, rows: list[Record]) -> None:
        self._fill(Contact, rows)

    def contacts(self) -> list[Record]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.exec_driver_sql(
                "SELECT id, email, name, score FROM testapp_contact")]

    def contact_sink(self, **options: Any) -> Sink:
        return DjangoSink(model=Contact, database=self.alias, **options)


class TestDjangoTableSinkSingleRecord(TestDjangoTableSink):
    single_record = True
