"""The connector contracts (``active_data_flow.testing``) on DjangoSource and DjangoSink, on
SQLite, PostgreSQL and MariaDB: the same suites the SQLAlchemy connectors pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
import sqlalchemy as sa

from active_data_flow.connector import Sink, Source
from active_data_flow.contrib.django.connectors import DjangoSink, DjangoSource
from active_data_flow.testing import SinkContract, SourceContract
from tests.contrib.django.testapp.models import ContractRecord

Record = dict[str, Any]


class _Table:
    alias: str
    engine: sa.Engine

    @pytest.fixture(autouse=True)
    def _alias(self, alias: str, engine: sa.Engine) -> None:
        self.alias, self.engine = alias, engine

    def fill(self, records: list[Record]) -> None:
        ContractRecord.objects.using(self.alias).all().delete()
        ContractRecord.objects.using(self.alias).bulk_create(
            [ContractRecord(**r) for r in records])

    def rows(self) -> list[Record]:
        """Committed rows, through a connection of the test's own (not Django's)."""
        with self.engine.connect() as conn:
            result = conn.exec_driver_sql(
                "SELECT id, name FROM testapp_contractrecord ORDER BY id")
            return [dict(row._mapping) for row in result]


class TestDjangoSource(_Table, SourceContract):
    """Pages of 5 rows, so reads and resumes cross page boundaries."""

    def make_source(self, records: list[Record], tmp_path: Path) -> Source:
        self.fill(records)
        return DjangoSource(model=ContractRecord, database=self.alias, batch_size=5)


class TestDjangoSourceByLabel(TestDjangoSource):
    def make_source(self, records: list[Record], tmp_path: Path) -> Source:
        self.fill(records)
        return DjangoSource(model="testapp.ContractRecord", database=self.alias, batch_size=5,
                            readonly=False)


class TestDjangoSink(_Table, SinkContract):
    """``bulk_create`` in statements of 7 records, one ``atomic`` block a flush."""

    transactional = True
    duplicates: ClassVar[Literal["keep", "update", "reject"]] = "reject"
    missing_key = "error"
    options: ClassVar[dict[str, Any]] = {"batch_size": 7}

    def make_sink(self, tmp_path: Path) -> Sink:
        return DjangoSink(model=ContractRecord, database=self.alias, **self.options)

    def read_back(self, sink: Sink) -> list[Record]:
        return self.rows()

    def expected(self, records: list[Record]) -> list[Record]:
        return [{"id": r.get("id"), "name": r.get("name")} for r in records]


class TestDjangoSinkSingleRecord(TestDjangoSink):
    """``batch_size=1``: ``full_clean()`` and ``save()`` per record, each in a savepoint."""

    options: ClassVar[dict[str, Any]] = {"batch_size": 1}


class TestDjangoSinkUpsert(TestDjangoSink):
    duplicates = "update"
    options: ClassVar[dict[str, Any]] = {"batch_size": 7, "upsert": True}


class TestDjangoSinkUpsertSingleRecord(TestDjangoSink):
    duplicates = "update"
    options: ClassVar[dict[str, Any]] = {"batch_size": 1, "upsert": True}


class TestDjangoSinkWithoutTransaction(TestDjangoSink):
    """``transaction=False``: each statement commits on its own."""

    transactional = False
    options: ClassVar[dict[str, Any]] = {"batch_size": 7, "transaction": False}
