"""JSON Lines source and sink: one JSON object per line, streamed.

The source's position is ``{"line": n, "offset": b}`` (see :mod:`._files`): resuming seeks
straight to the byte after the last checkpointed record. The sink appends (or overwrites),
and every flush is fsynced before the flow's cursor moves.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from active_data_flow.columnar import ArrowBatch, batches_of, pyarrow
from active_data_flow.connector import Partition, Sink, Source, check_parts
from active_data_flow.connectors._files import (
    DurableFile,
    FileSinkConfig,
    FileSourceConfig,
    LineReader,
    dumps,
    line_error,
    open_source,
    record_chunks,
    seek_cursor,
    split_file,
)
from active_data_flow.errors import RecordRejected
from active_data_flow.message import Message, Row, as_record, record_key
from active_data_flow.registry import register_connector

__all__ = ["JsonLinesSink", "JsonLinesSource"]


@register_connector("jsonl")
class JsonLinesSource(Source):
    """Read a JSON Lines file; each non-blank line must be a JSON object.

    Options:
        path: the file.
        encoding: its encoding (default UTF-8).

    Raises (while reading):
        SourceError: the file is missing, a line is not valid JSON or not an object (the
            error names the file and line), or the cursor lies beyond the end of the file.
    """

    untrusted_ok = True  # untrusted specs name files inside the allowed folders only

    Config = FileSourceConfig
    config: FileSourceConfig

    def each(self, cursor: Any = None) -> Iterator[Message]:
        path, what = self.config.path, "jsonl source"
        encoding = self.config.encoding
        with open_source(path, what) as file:
            reader = LineReader(file, end=self.config.end_offset)
            reader.skip_to(self.config.start_offset)
            seek_cursor(file, reader, cursor, what, path)
            for raw in reader:
                if not raw.strip():
                    continue
                try:
                    data = json.loads(raw.decode(encoding))
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise line_error(what, path, reader.line, f"invalid JSON: {exc}") from exc
                if type(data) is not dict:
                    raise line_error(
                        what, path, reader.line,
                        f"expected a JSON object, got {type(data).__name__}",
                    )
                message = Row(data)
                message.position = {"line": reader.line, "offset": reader.offset}
                yield message

    def read_batches(self, cursor: Any = None, size: int = 10_000) -> Iterator[ArrowBatch]:
        """The records after ``cursor`` as Arrow batches parsed by Arrow's JSON reader (in
        C, column types inferred per batch), with the same positions as :meth:`each`. A
        batch Arrow cannot read (a line that is not a JSON object, say) is read again on
        the row path, whose error names the line."""
        pa, pjson = pyarrow(), pyarrow("json")

        path, what = self.config.path, "jsonl source"
        options = pjson.ReadOptions(block_size=1 << 24)
        encoding = self.config.encoding.lower().replace("_", "-")
        with open_source(path, what) as file:
            reader = LineReader(file)
            reader.skip_to(self.config.start_offset)
            seek_cursor(file, reader, cursor, what, path)
            for chunk in record_chunks(reader, size, self.config.end_offset):
                data = chunk.data
                if encoding not in ("utf-8", "utf8"):
                    data = data.decode(self.config.encoding).encode()
                try:
                    table = pjson.read_json(pa.BufferReader(data), read_options=options)
                except (pa.ArrowInvalid, UnicodeDecodeError):
                    yield from batches_of(self.each(chunk.start), size)
                    return
                yield ArrowBatch(table, chunk.positions[-1], chunk.positions.__getitem__)

    def split(self, parts: int, cursor: Any = None) -> list[Partition]:
        """Cut the file into byte ranges; a line belongs to the range it begins in.

        JSON Lines records never contain a raw newline, so any cut is a clean one. Line
        numbers in the partitions' positions count from the partition's start.
        """
        return split_file(self, check_parts(parts), cursor, first=self.config.start_offset)


@register_connector("jsonl")
class JsonLinesSink(Sink):
    """Write records as JSON Lines.

    Options:
        path: the file (created with its folders when missing).
        mode: ``"append"`` (default) or ``"overwrite"`` (truncate when the run first writes).
        fsync: fsync on every flush (default true).
        encoding: the text encoding (default UTF-8).

    Dates, decimals, UUIDs, enums and pydantic models are written in their JSON form; a
    record that still cannot be serialised is rejected (``RecordRejected``).
    """

    untrusted_ok = True  # untrusted specs name files inside the allowed folders only

    Config = FileSinkConfig
    config: FileSinkConfig

    def _setup(self) -> None:
        self._file = DurableFile(self.config, "jsonl sink")
        self._lines: list[str] = []

    def write_batch(self, records: Iterable[Message | Mapping[str, Any]]) -> None:
        lines = self._lines
        for record in records:
            try:
                lines.append(dumps(as_record(record)))
            except (TypeError, ValueError) as exc:
                self.reject(RecordRejected(
                    f"jsonl sink: record cannot be written as JSON: {exc}", record=record,
                    key=record_key(record),
                ))

    def write(self, record: Message | Mapping[str, Any]) -> None:
        self.write_batch((record,))

    def flush(self) -> None:
        if self._lines:
            data = ("\n".join(self._lines) + "\n").encode(self.config.encoding)
            self._lines = []
            self._file.append(data)

    def discard(self) -> None:
        self._lines = []

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._file.close()

