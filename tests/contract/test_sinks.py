"""The sink contract (``active_data_flow.testing.SinkContract``) on every built-in sink:
memory (and the ``FaultySink`` fake), JSON Lines, CSV, and SQLAlchemy in batched,
single-record and upsert modes on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
import redis

from active_data_flow.connector import Sink
from active_data_flow.connectors.csv import CsvSink
from active_data_flow.connectors.jsonl import JsonLinesSink
from active_data_flow.connectors.memory import MemorySink
from active_data_flow.connectors.redis_stream import RedisStreamSink
from active_data_flow.connectors.sqlalchemy import SqlAlchemySink
from active_data_flow.testing import FaultySink, SinkContract
from tests.contract.sql_tables import ContractRecord, SqlTable, sql_database, sql_table

__all__ = ["sql_database", "sql_table"]  # the SQL classes' fixtures, imported to be found

Record = dict[str, Any]
Duplicates = Literal["keep", "update", "reject"]


class TestMemorySink(SinkContract):
    @pytest.fixture(autouse=True)
    def _forget(self, tmp_path: Path) -> Iterator[None]:
        yield
        MemorySink.records_of(self._name(tmp_path)).clear()

    def _name(self, tmp_path: Path) -> str:
        return f"contract:{tmp_path}"

    def make_sink(self, tmp_path: Path) -> Sink:
        return MemorySink(name=self._name(tmp_path))

    def read_back(self, sink: Sink) -> list[Record]:
        assert isinstance(sink, MemorySink)
        return list(MemorySink.records_of(sink.config.name))


class TestFaultySinkWithoutFaults(TestMemorySink):
    """The fake behaves like the memory sink while it injects no failure."""

    def make_sink(self, tmp_path: Path) -> Sink:
        return FaultySink(name=self._name(tmp_path))


class TestJsonLinesSink(SinkContract):
    def make_sink(self, tmp_path: Path) -> Sink:
        return JsonLinesSink(path=tmp_path / "out" / "records.jsonl")

    def read_back(self, sink: Sink) -> list[Record]:
        assert isinstance(sink, JsonLinesSink)
        path = sink.config.path
        if not path.exists():
            return []
        # Split on "\n" only: str.splitlines() would also cut at U+2028 inside a string.
        text = path.read_bytes().decode()
        assert text == "" or text.endswith("\n"), "the file ends mid-line"
        return [json.loads(line) for line in text.split("\n")[:-1]]


class TestCsvSink(SinkContract):
    """Columns from the first record; a column a file lacks reads as empty."""

    fields = ("id", "name")

    def make_sink(self, tmp_path: Path) -> Sink:
        return CsvSink(path=tmp_path / "out.csv")

    def read_back(self, sink: Sink) -> list[Record]:
        assert isinstance(sink, CsvSink)
        path = sink.config.path
        if not path.exists():
            return []
        with path.open(newline="", encoding="utf-8") as file:
            header, *rows = csv.reader(file, delimiter=sink.config.delimiter)
        assert set(header) <= set(self.fields), f"unexpected header {header}"
        return [{f: row.get(f, "") for f in self.fields}
                for row in (dict(zip(header, r, strict=True)) for r in rows)]

    def expected(self, records: list[Record]) -> list[Record]:
        # CSV stores strings, and NULL as an empty field.
        return [{f: "" if r.get(f) is None else str(r[f]) for f in self.fields}
                for r in records]


class TestCsvSinkWithOptions(TestCsvSink):
    """Declared columns, semicolons, no fsync."""

    def make_sink(self, tmp_path: Path) -> Sink:
        return CsvSink(path=tmp_path / "out.csv", fields=list(self.fields), delimiter=";",
                       fsync=False)


# A record without its primary key: SQLAlchemy warns while compiling the INSERT (or flushing
# the object), then the database refuses the row and the sink rejects the record, naming the
# column. The warning is SQLAlchemy's, not the sink's; `-W error` would turn it into the error.
@pytest.mark.filterwarnings(
    "ignore:Column 'contract_records.id' is marked as a member of the primary key"
    ":sqlalchemy.exc.SAWarning"
)
class TestSqlAlchemySink(SinkContract):
    """Batched inserts: 7 records a statement (COPY on PostgreSQL), one transaction a flush."""

    transactional = True
    duplicates: ClassVar[Duplicates] = "reject"  # the primary key
    missing_key = "error"
    options: ClassVar[dict[str, Any]] = {"batch_size": 7}
    table: SqlTable

    @pytest.fixture(autouse=True)
    def _table(self, sql_table: SqlTable) -> None:
        self.table = sql_table

    def make_sink(self, tmp_path: Path) -> Sink:
        return SqlAlchemySink(model=ContractRecord, database=self.table.url, **self.options)

    def read_back(self, sink: Sink) -> list[Record]:
        return self.table.rows()

    def expected(self, records: list[Record]) -> list[Record]:
        return [{"id": r.get("id"), "name": r.get("name")} for r in records]


class TestSqlAlchemySinkSingleRecord(TestSqlAlchemySink):
    """``batch_size=1``: one ORM object per record, each in its own savepoint."""

    options: ClassVar[dict[str, Any]] = {"batch_size": 1}


class TestSqlAlchemySinkUpsert(TestSqlAlchemySink):
    duplicates = "update"
    options: ClassVar[dict[str, Any]] = {"batch_size": 7, "upsert": True}


class TestSqlAlchemySinkUpsertSingleRecord(TestSqlAlchemySink):
    duplicates = "update"
    options: ClassVar[dict[str, Any]] = {"batch_size": 1, "upsert": True}


class TestSqlAlchemySinkWithoutTransaction(TestSqlAlchemySink):
    """``transaction=False``: each statement commits on its own, so ``flush_with`` cannot
    run its hook in the batch's transaction."""

    transactional = False
    options: ClassVar[dict[str, Any]] = {"batch_size": 7, "transaction": False}


class TestRedisStreamSink(SinkContract):
    """XADD to the real Redis, a stream of the test's own; read back with XRANGE."""

    @pytest.fixture(autouse=True)
    def _stream(self, redis_url: str) -> Iterator[None]:
        self.url = redis_url
        self.stream = f"adf-contract-{uuid.uuid4().hex[:12]}"
        yield
        client = redis.Redis.from_url(redis_url)
        client.delete(self.stream)
        client.close()

    def make_sink(self, tmp_path: Path) -> Sink:
        return RedisStreamSink(url=self.url, stream=self.stream)

    def read_back(self, sink: Sink) -> list[Record]:
        client = redis.Redis.from_url(self.url, decode_responses=True)
        try:
            return [json.loads(fields["data"]) for _, fields in client.xrange(self.stream)]
        finally:
            client.close()
