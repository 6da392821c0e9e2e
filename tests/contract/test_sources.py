"""The source contract (``active_data_flow.testing.SourceContract``) on every built-in source:
memory, JSON Lines, CSV, and SQLAlchemy on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from active_data_flow.connector import Source
from active_data_flow.connectors.csv import CsvSource
from active_data_flow.connectors.jsonl import JsonLinesSource
from active_data_flow.connectors.memory import MemorySource
from active_data_flow.connectors.sqlalchemy import SqlAlchemySource
from active_data_flow.runtimes.heartbeat import FlowStore
from active_data_flow.runtimes.heartbeat.engine.inbox import HttpInboxSource, hash_token
from active_data_flow.testing import SourceContract
from tests.contract.sql_tables import ContractRecord, SqlTable, sql_database, sql_table

__all__ = ["sql_database", "sql_table"]  # the SQL classes' fixtures, imported to be found

Record = dict[str, Any]


class TestMemorySource(SourceContract):
    def make_source(self, records: list[Record], tmp_path: Path) -> Source:
        return MemorySource(records=records)


class TestJsonLinesSource(SourceContract):
    splits = True
    # A file source refuses an offset past the end of its file: it was truncated or replaced.
    cursor_beyond_end = "error"

    def make_source(self, records: list[Record], tmp_path: Path) -> Source:
        path = tmp_path / "in.jsonl"
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        path.write_bytes(lines.encode())
        return JsonLinesSource(path=path)


class TestCsvSource(SourceContract):
    splits = True
    cursor_beyond_end = "error"
    fields = ("id", "name")

    def make_source(self, records: list[Record], tmp_path: Path) -> Source:
        path = tmp_path / "in.csv"
        with path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)  # RFC 4180: CRLF line ends, fields quoted as needed
            writer.writerow(self.fields)
            writer.writerows([r.get(f) for f in self.fields] for r in records)
        return CsvSource(path=path)

    def expected(self, records: list[Record]) -> list[Record]:
        # CSV has only strings, and an empty field for NULL.
        return [{f: "" if r.get(f) is None else str(r[f]) for f in self.fields}
                for r in records]


class TestCsvSourceWithOptions(TestCsvSource):
    """Headerless, semicolon-separated, LF line ends, every field quoted."""

    def make_source(self, records: list[Record], tmp_path: Path) -> Source:
        path = tmp_path / "in.csv"
        with path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file, delimiter=";", lineterminator="\n",
                                quoting=csv.QUOTE_ALL)
            writer.writerows([r.get(f) for f in self.fields] for r in records)
        return CsvSource(path=path, fields=list(self.fields), delimiter=";")


class TestSqlAlchemySource(SourceContract):
    """Pages of 5 rows, so reads, resumes and partitions cross page boundaries."""

    splits = True
    table: SqlTable

    @pytest.fixture(autouse=True)
    def _table(self, sql_table: SqlTable) -> None:
        self.table = sql_table

    def make_source(self, records: list[Record], tmp_path: Path) -> Source:
        self.table.fill(records)
        return SqlAlchemySource(model=ContractRecord, database=self.table.url, batch_size=5)


class TestHttpInboxSource(SourceContract):
    """The inbox source over a SQLite flow store (a fresh one per make_source: ids restart)."""

    def make_source(self, records: list[Record], tmp_path: Path) -> Source:
        url = f"sqlite:///{tmp_path / f'inbox-{uuid.uuid4().hex[:8]}.sqlite3'}"
        token = hash_token("contract")
        name = "inbox"
        with FlowStore(url, auto_upgrade=True) as store:
            store.create_flow({"name": name, "source": {"type": "http_inbox", "config": {
                "token_sha256": token}}, "sink": {"type": "dead_letters"}})
            if records:
                store.inbox.push(name, [(None, r) for r in records])
        return HttpInboxSource(token_sha256=token, inbox=name, database=url)
