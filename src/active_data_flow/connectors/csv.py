"""CSV source and sink, streamed.

The source yields one :class:`~active_data_flow.message.Untyped` message per row, keyed by
the header (or the ``fields`` option), with string values; quoted fields may span lines. Its
position is ``{"line": n, "offset": b}`` like the JSON Lines source. A row whose field count
differs from the header's is an error naming the file and line (unless ``strict`` is off).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, time
from typing import IO, Any

from pydantic import Field

from active_data_flow.columnar import ArrowBatch, batches_of, pyarrow
from active_data_flow.connector import Partition, Sink, Source, check_parts
from active_data_flow.connectors._files import (
    DurableFile,
    FileSinkConfig,
    FileSourceConfig,
    LineReader,
    json_default,
    line_error,
    open_source,
    record_chunks,
    seek_cursor,
    split_file,
)
from active_data_flow.errors import RecordRejected, SinkError
from active_data_flow.message import Message, Row, as_record, record_key
from active_data_flow.registry import register_connector

__all__ = ["CsvSink", "CsvSource"]


class _Dialect(FileSourceConfig):
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quotechar: str = Field(default='"', min_length=1, max_length=1)


@register_connector("csv")
class CsvSource(Source):
    """Read a CSV file row by row.

    Options:
        path: the file.
        fields: column names when the file has no header row (default: read the header).
        delimiter, quotechar: the CSV dialect (default ``,`` and ``"``).
        strict: a row with more or fewer fields than the header is an error (default
            true); when false, missing fields are ``None`` and extra ones are dropped.
        encoding: the text encoding (default UTF-8; a byte-order mark is ignored).
    """

    untrusted_ok = True  # untrusted specs name files inside the allowed folders only

    class Config(_Dialect):
        fields: list[str] | None = None
        strict: bool = True

    config: Config

    def each(self, cursor: Any = None) -> Iterator[Message]:
        cfg, what = self.config, "csv source"
        with open_source(cfg.path, what) as file:
            lines = LineReader(file)
            rows = csv.reader(self._decoded(lines), delimiter=cfg.delimiter,
                              quotechar=cfg.quotechar, strict=True)
            header = cfg.fields or self._header(rows, lines)
            lines.skip_to(cfg.start_offset)
            seek_cursor(file, lines, cursor, what, cfg.path)
            width = len(header)
            end = cfg.end_offset
            while True:
                # A partition owns the records that *begin* before its end; a quoted field
                # may carry the last one past it.
                if end is not None and lines.offset >= end:
                    return
                try:
                    row = next(rows)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise line_error(what, cfg.path, lines.line, f"malformed CSV: {exc}") from exc
                if not row:
                    continue
                values: list[str | None] = row  # type: ignore[assignment]
                if len(row) != width:
                    if cfg.strict:
                        raise line_error(
                            what, cfg.path, lines.line,
                            f"expected {width} fields ({', '.join(header)}), got {len(row)}",
                        )
                    values = [*row[:width], *([None] * (width - len(row)))]
                message = Row(zip(header, values, strict=True))
                message.position = lines.position
                yield message

    def read_batches(self, cursor: Any = None, size: int = 10_000) -> Iterator[ArrowBatch]:
        """The rows after ``cursor`` as Arrow batches parsed by Arrow's CSV reader (in C;
        every column a string, as on the row path), with the same positions as
        :meth:`each`. A batch Arrow cannot read as the row path would (a row of the wrong
        width, say) is read again on the row path, whose error names the line; with
        ``strict`` off the whole read takes the row path (it pads short rows)."""
        cfg, what = self.config, "csv source"
        if not cfg.strict:
            yield from batches_of(self.each(cursor), size)
            return
        pa, pcsv = pyarrow(), pyarrow("csv")

        with open_source(cfg.path, what) as file:
            lines = LineReader(file)
            header = cfg.fields or self._header(
                csv.reader(self._decoded(lines), delimiter=cfg.delimiter,
                           quotechar=cfg.quotechar, strict=True), lines)
            if not header:
                return
            lines.skip_to(cfg.start_offset)
            seek_cursor(file, lines, cursor, what, cfg.path)
            read = pcsv.ReadOptions(column_names=header, encoding=cfg.encoding,
                                    block_size=1 << 24)
            parse = pcsv.ParseOptions(delimiter=cfg.delimiter, quote_char=cfg.quotechar,
                                      newlines_in_values=True)
            convert = pcsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=False, quoted_strings_can_be_null=False)
            quote = cfg.quotechar.encode(cfg.encoding)
            for chunk in record_chunks(lines, size, cfg.end_offset, quote):
                try:
                    table = pcsv.read_csv(pa.BufferReader(chunk.data), read_options=read,
                                          parse_options=parse, convert_options=convert)
                except (pa.ArrowInvalid, UnicodeDecodeError):
                    table = None
                if table is None or table.num_rows != len(chunk.positions):
                    yield from batches_of(self.each(chunk.start), size)
                    return
                yield ArrowBatch(table, chunk.positions[-1], chunk.positions.__getitem__)

    def split(self, parts: int, cursor: Any = None) -> list[Partition]:
        """Cut the file into byte ranges at record boundaries (after the header).

        When the file contains the quote character, a quoted field may span lines, so the
        cuts are aligned by parsing the file once; otherwise every line start is a record
        start and no parsing is needed.
        """
        check_parts(parts)
        first = max(self.config.start_offset, self._header_end())
        return split_file(self, parts, cursor, first=first, align=self._align)

    def _header_end(self) -> int:
        if self.config.fields:
            return 0
        with open_source(self.config.path, "csv source") as file:
            lines = LineReader(file)
            self._header(csv.reader(self._decoded(lines), delimiter=self.config.delimiter,
                                    quotechar=self.config.quotechar), lines)
            return lines.offset

    def _align(self, file: IO[bytes], start: int, cuts: list[int]) -> list[int]:
        if not _contains(file, start, self.config.quotechar.encode(self.config.encoding)):
            return cuts  # every line start is a record start
        file.seek(start)
        lines = LineReader(file, offset=start)
        rows = csv.reader(self._decoded(lines), delimiter=self.config.delimiter,
                          quotechar=self.config.quotechar)
        aligned: list[int] = []
        pending = iter(sorted(cuts))
        cut = next(pending, None)
        for _ in rows:
            while cut is not None and lines.offset >= cut:
                aligned.append(lines.offset)
                cut = next(pending, None)
            if cut is None:
                break
        return aligned

    def _decoded(self, lines: LineReader) -> Iterator[str]:
        encoding = self.config.encoding
        for raw in lines:
            try:
                yield raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise line_error(
                    "csv source", self.config.path, lines.line,
                    f"cannot decode as {encoding}: {exc}",
                ) from exc

    def _header(self, rows: Iterator[list[str]], lines: LineReader) -> list[str]:
        try:
            header = next(rows)
        except StopIteration:
            return []
        except csv.Error as exc:
            raise line_error("csv source", self.config.path, lines.line,
                             f"malformed header: {exc}") from exc
        if header:
            header[0] = header[0].removeprefix("\ufeff")
        if len(set(header)) != len(header):
            raise line_error("csv source", self.config.path, lines.line,
                             f"duplicate column names in header {header}")
        return header


@register_connector("csv")
class CsvSink(Sink):
    """Write records as CSV rows.

    Options:
        path: the file (created with its folders when missing).
        fields: the columns, in order. Default: the existing file's header, else the first
            record's keys. A record with a key outside them is rejected (``RecordRejected``).
        header: write a header row into a new or empty file (default true).
        mode: ``"append"`` (default) or ``"overwrite"``.
        delimiter, quotechar, fsync, encoding: as for the source.

    ``None`` is written as an empty field.
    """

    untrusted_ok = True  # untrusted specs name files inside the allowed folders only

    class Config(FileSinkConfig):
        fields: list[str] | None = None
        header: bool = True
        delimiter: str = Field(default=",", min_length=1, max_length=1)
        quotechar: str = Field(default='"', min_length=1, max_length=1)

    config: Config

    def _setup(self) -> None:
        self._file = DurableFile(self.config, "csv sink")
        self._fields: list[str] | None = list(self.config.fields) if self.config.fields else None
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, delimiter=self.config.delimiter,
                                  quotechar=self.config.quotechar, lineterminator="\n")
        # csv quotes a field holding the delimiter, the quote or "\n", but not a lone "\r",
        # which every reader takes for a line break: such rows get every field quoted.
        self._quoting = csv.writer(self._buffer, delimiter=self.config.delimiter,
                                   quotechar=self.config.quotechar, lineterminator="\n",
                                   quoting=csv.QUOTE_ALL)
        self._pending = 0
        self._header_due: bool | None = None

    def write_batch(self, records: Iterable[Message | Mapping[str, Any]]) -> None:
        for record in records:
            data = as_record(record)
            fields = self._fields_for(data)
            extra = data.keys() - set(fields)
            if extra:
                self.reject(RecordRejected(
                    f"csv sink: record has field(s) {sorted(extra)} outside the columns "
                    f"{fields}", record=record, key=record_key(record),
                ))
                continue
            row = [_cell(data.get(f)) for f in fields]
            if any(type(c) is str and "\r" in c for c in row):
                self._quoting.writerow(row)
            else:
                self._writer.writerow(row)
            self._pending += 1

    def write(self, record: Message | Mapping[str, Any]) -> None:
        self.write_batch((record,))

    def _fields_for(self, first: Mapping[str, Any]) -> list[str]:
        if self._fields is None:
            self._fields = self._existing_header() or list(first.keys())
        return self._fields

    def _existing_header(self) -> list[str] | None:
        if self.config.mode == "overwrite" or self._file.size() == 0:
            return None
        with self.config.path.open(encoding=self.config.encoding, newline="") as file:
            header = next(csv.reader(file, delimiter=self.config.delimiter,
                                     quotechar=self.config.quotechar), None)
        self._header_due = False
        return header

    def flush(self) -> None:
        if not self._pending:
            return
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        self._pending = 0
        if self._header_due is None:
            self._header_due = self.config.header and self._file.size() == 0
        if self._header_due:
            head = io.StringIO()
            csv.writer(head, delimiter=self.config.delimiter, quotechar=self.config.quotechar,
                       lineterminator="\n").writerow(self._fields or [])
            text = head.getvalue() + text
            self._header_due = False
        try:
            data = text.encode(self.config.encoding)
        except UnicodeEncodeError as exc:
            raise SinkError(f"csv sink: cannot encode a row as {self.config.encoding}: {exc}") \
                from exc
        self._file.append(data)

    def discard(self) -> None:
        self._buffer.seek(0)
        self._buffer.truncate()
        self._pending = 0

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._file.close()


def _contains(file: IO[bytes], start: int, needle: bytes) -> bool:
    file.seek(start)
    while chunk := file.read(1 << 20):
        if needle in chunk:
            return True
    return False


def _cell(value: Any) -> Any:
    """A CSV cell: empty for None; dates and times in ISO 8601 (``2026-01-02T03:04:05``, as
    the JSON Lines sink writes them), nested values as JSON; anything else as ``str()``."""
    if value is None:
        return ""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=json_default, ensure_ascii=False)
    return value
