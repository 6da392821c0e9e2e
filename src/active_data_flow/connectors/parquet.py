"""Parquet source and sink (extra ``[arrow]``): columnar files, read and written by Arrow.

The source reads a Parquet file, or every ``*.parquet`` file of a folder in name order, in
record batches; a row's position is ``{"file": name, "row": n}`` (rows of that file read so
far), and a resumed read skips whole row groups before it. The sink writes each flush as
one new file of a folder (``part-000001.parquet``, ...), written under a temporary name,
fsynced and renamed: a file is either whole or absent, so a crash never leaves a torn
Parquet file, and the folder reads back as one dataset (pyarrow, polars, DuckDB).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from active_data_flow.columnar import ArrowBatch, concat, pyarrow, table_from_records
from active_data_flow.connector import Sink, SinkConfig, Source, SourceConfig
from active_data_flow.errors import ConfigurationError, SinkError, SourceError
from active_data_flow.message import Message, Row, as_record
from active_data_flow.registry import check_file_path, register_connector

__all__ = ["ParquetSink", "ParquetSource"]

_PART = re.compile(r"part-(\d+)\.parquet")


@register_connector("parquet")
class ParquetSource(Source):
    """Read a Parquet file, or the ``*.parquet`` files of a folder in name order.

    Options:
        path: the file or folder.
        columns: the columns to read (default all).
        batch_size: rows per record batch on the row path (the columnar path reads the
            flow's batch size).

    Raises (while reading):
        SourceError: the path is missing or a file is not Parquet (naming the file), or the
            cursor names a row beyond the end of its file.
    """

    untrusted_ok = True  # untrusted specs name files inside the allowed folders only

    class Config(SourceConfig):
        path: Path
        columns: list[str] | None = None
        batch_size: int = Field(default=10_000, ge=1, le=1_000_000)

        @field_validator("path")
        @classmethod
        def _allowed(cls, path: Path) -> Path:
            return check_file_path(path, "parquet source")

    config: Config

    def each(self, cursor: Any = None) -> Iterator[Message]:
        """Yield the rows after ``cursor``, each positioned ``{"file": ..., "row": n}``."""
        for batch in self.read_batches(cursor, self.config.batch_size):
            at = batch.position_at
            assert at is not None
            for i, record in enumerate(batch.table.to_pylist()):
                message = Row(record)
                message.position = at(i)
                yield message

    def read_batches(self, cursor: Any = None, size: int = 10_000) -> Iterator[ArrowBatch]:
        """The rows after ``cursor`` in record batches of up to ``size`` rows."""
        pa = pyarrow()
        import pyarrow.parquet as pq

        files = self._files()
        after_file, after_row = _cursor(cursor)
        for path in files:
            name = path.name
            if after_file is not None and name < after_file:
                continue
            skip = after_row if name == after_file else 0
            try:
                parquet = pq.ParquetFile(path)
            except (OSError, pa.ArrowInvalid) as exc:
                raise SourceError(f"parquet source: cannot read {path}: {exc}") from exc
            with parquet:
                total = parquet.metadata.num_rows
                if skip > total:
                    raise SourceError(
                        f"parquet source: cursor row {skip} is beyond the end of {path} "
                        f"({total} rows); the file was replaced, so reset the flow's cursor")
                groups, first = _groups_after(parquet, skip)
                row = first
                batches = parquet.iter_batches(batch_size=size, row_groups=groups,
                                               columns=self.config.columns) if groups else ()
                for record_batch in batches:
                    if row < skip:  # inside the row group the cursor points into
                        cut = min(skip - row, record_batch.num_rows)
                        record_batch = record_batch.slice(cut)
                        row += cut
                    if not record_batch.num_rows:
                        continue
                    start = row
                    row += record_batch.num_rows
                    table = pa.Table.from_batches([record_batch])
                    yield ArrowBatch(table, {"file": name, "row": row},
                                     _position_in(name, start))

    def count(self) -> int | None:
        """Rows in all files (from their footers)."""
        import pyarrow.parquet as pq

        return int(sum(pq.ParquetFile(p).metadata.num_rows for p in self._files()))

    def _files(self) -> list[Path]:
        path = self.config.path
        if path.is_dir():
            return sorted(path.glob("*.parquet"))
        if not path.exists():
            raise SourceError(f"parquet source: file not found: {path}")
        return [path]


def _position_in(name: str, start: int) -> Any:
    return lambda i: {"file": name, "row": start + i + 1}


def _groups_after(parquet: Any, skip: int) -> tuple[list[int], int]:
    """The row groups holding rows after the first ``skip``, and the row they start at."""
    groups: list[int] = []
    row = first = 0
    for i in range(parquet.metadata.num_row_groups):
        rows = parquet.metadata.row_group(i).num_rows
        if row + rows <= skip:
            row += rows
            first = row
            continue
        groups.append(i)
        row += rows
    return groups, first


def _cursor(cursor: Any) -> tuple[str | None, int]:
    if cursor is None:
        return None, 0
    if (isinstance(cursor, dict) and isinstance(cursor.get("file"), str)
            and isinstance(cursor.get("row"), int) and cursor["row"] >= 0):
        return cursor["file"], cursor["row"]
    raise ConfigurationError(
        f"parquet source cursor must look like {{'file': 'part-000001.parquet', 'row': 10}}, "
        f"got {cursor!r}", option="cursor")


@register_connector("parquet")
class ParquetSink(Sink):
    """Write records as Parquet files in a folder: one file per flush.

    Options:
        path: the folder (created when missing).
        mode: ``"append"`` (default) adds files after the existing ``part-N.parquet``;
            ``"overwrite"`` removes those when the run first writes.
        compression: the codec (default ``zstd``; ``snappy``, ``gzip``, ``none``...).
        fsync: make each file durable before the flow's cursor moves (default true).

    Tables from a ``transform_batch`` flow are written as they are; records (dicts) are
    converted with Arrow's type inference. A batch Arrow cannot convert (a field with
    values of different types) fails the flush with a SinkError naming the folder.
    """

    untrusted_ok = True  # untrusted specs name folders inside the allowed roots only

    class Config(SinkConfig):
        path: Path
        mode: Literal["append", "overwrite"] = "append"
        compression: str = "zstd"
        fsync: bool = True

        @field_validator("path")
        @classmethod
        def _allowed(cls, path: Path) -> Path:
            return check_file_path(path, "parquet sink")

    config: Config

    def _setup(self) -> None:
        self._tables: list[Any] = []
        self._records: list[dict[str, Any]] = []
        self._next: int | None = None

    def write_batch(self, records: Iterable[Message | Mapping[str, Any]]) -> None:
        self._records.extend(as_record(r) for r in records)

    def write(self, record: Message | Mapping[str, Any]) -> None:
        self._records.append(as_record(record))

    def write_table(self, table: Any) -> None:
        self._pending_records()
        if table.num_rows:
            self._tables.append(table)

    def _pending_records(self) -> None:
        if self._records:
            records, self._records = self._records, []
            try:
                self._tables.append(table_from_records(records))
            except Exception as exc:
                raise SinkError(f"parquet sink: records cannot be converted to Arrow for "
                                f"{self.config.path}: {exc}") from exc

    def flush(self) -> None:
        """Write what is buffered as one new file, durably."""
        self._pending_records()
        if not self._tables:
            return
        tables, self._tables = self._tables, []
        try:
            table = concat(tables)
        except Exception as exc:
            raise SinkError(f"parquet sink: batches of different columns cannot share a file "
                            f"in {self.config.path}: {exc}") from exc
        self._write(table)

    def _write(self, table: Any) -> None:
        import pyarrow.parquet as pq

        folder = self.config.path
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if self._next is None:
                existing = sorted(int(m.group(1)) for p in folder.iterdir()
                                  if (m := _PART.fullmatch(p.name)))
                if self.config.mode == "overwrite":
                    for number in existing:
                        (folder / f"part-{number:06d}.parquet").unlink()
                    existing = []
                self._next = (existing[-1] + 1) if existing else 1
            final = folder / f"part-{self._next:06d}.parquet"
            temporary = folder / f".{final.name}.tmp"
            pq.write_table(table, temporary, compression=self.config.compression)
            if self.config.fsync:
                _fsync(temporary)
            os.replace(temporary, final)
            if self.config.fsync:
                _fsync(folder)
        except OSError as exc:
            raise SinkError(f"parquet sink: writing {folder} failed: {exc.strerror or exc}"
                            ) from exc
        self._next += 1

    def discard(self) -> None:
        self._tables = []
        self._records = []


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
