"""What the file connectors share: byte-offset cursors, streaming reads, durable appends.

Cursors of file sources are ``{"line": n, "offset": b}``: ``b`` is the byte offset just after
the record, so resuming is a seek, and ``n`` the number of physical lines before it (for
people). Reads go through a binary file, one line at a time: memory stays flat whatever the
file's size.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import IO, Any, Literal
from uuid import UUID

from pydantic import Field, field_validator

from active_data_flow.connector import Partition, SinkConfig, Source, SourceConfig
from active_data_flow.errors import ConfigurationError, SinkError, SourceError
from active_data_flow.registry import check_file_path

log = logging.getLogger(__name__)

__all__ = [
    "Chunk",
    "DurableFile",
    "FileSinkConfig",
    "FileSourceConfig",
    "LineReader",
    "file_cursor",
    "json_default",
]


class FileSourceConfig(SourceConfig):
    """Options of file sources.

    Attributes:
        path: the file to read.
        encoding: its text encoding.
        start_offset: read only records that begin at or after this byte (a partition).
        end_offset: read only records that begin before this byte (a partition).
    """

    path: Path
    encoding: str = "utf-8"
    start_offset: int = Field(default=0, ge=0)
    end_offset: int | None = Field(default=None, ge=0)

    @field_validator("path")
    @classmethod
    def _allowed(cls, path: Path) -> Path:
        return check_file_path(path, "file source")


class FileSinkConfig(SinkConfig):
    """Options of file sinks.

    Attributes:
        path: the file to write (created with its parent folders when missing).
        mode: ``"append"`` (default) adds to the file; ``"overwrite"`` truncates it when a
            run first writes to it.
        fsync: make every flush durable on disk before the cursor moves (default true).
        encoding: the text encoding.
    """

    path: Path
    mode: Literal["append", "overwrite"] = "append"
    fsync: bool = True
    encoding: str = "utf-8"

    @field_validator("path")
    @classmethod
    def _allowed(cls, path: Path) -> Path:
        return check_file_path(path, "file sink")


@dataclass
class LineReader:
    """Iterate over the raw lines of a binary file, tracking line number and byte offset.

    With ``end`` set, stops before the first line that begins at or after ``end``.
    """

    file: IO[bytes]
    line: int = 0
    offset: int = 0
    end: int | None = None

    def __iter__(self) -> Iterator[bytes]:
        for raw in self.file:
            if self.end is not None and self.offset >= self.end:
                return
            self.line += 1
            self.offset += len(raw)
            yield raw

    def skip_to(self, start: int) -> None:
        """Move to the first line that begins at or after byte ``start``.

        Partitions cut the file at arbitrary bytes; a line that straddles the cut belongs
        to the partition in which it begins (the classic split rule), so the reader moves
        past the end of the line containing byte ``start - 1``.
        """
        if start <= self.offset:
            return
        self.file.seek(start - 1)
        self.offset = start - 1 + len(self.file.readline())

    @property
    def position(self) -> dict[str, int]:
        """The cursor for "everything read so far"."""
        return {"line": self.line, "offset": self.offset}


def file_cursor(cursor: Any, what: str) -> tuple[int, int]:
    """Validate a file cursor and return ``(line, offset)``."""
    if cursor is None:
        return 0, 0
    if (
        isinstance(cursor, dict)
        and isinstance(cursor.get("line"), int)
        and isinstance(cursor.get("offset"), int)
        and cursor["line"] >= 0
        and cursor["offset"] >= 0
    ):
        return cursor["line"], cursor["offset"]
    raise ConfigurationError(
        f"{what} cursor must look like {{'line': 12, 'offset': 345}}, got {cursor!r}",
        option="cursor",
    )


def open_source(path: Path, what: str) -> IO[bytes]:
    """Open a source file for binary reading, with errors that name the file."""
    try:
        return path.open("rb")
    except FileNotFoundError as exc:
        raise SourceError(f"{what}: file not found: {path}") from exc
    except OSError as exc:
        raise SourceError(f"{what}: cannot open {path}: {exc.strerror or exc}") from exc


def seek_cursor(file: IO[bytes], reader: LineReader, cursor: Any, what: str, path: Path) -> None:
    """Position ``file`` after ``cursor``, refusing cursors beyond the end of the file."""
    line, offset = file_cursor(cursor, what)
    if cursor is None or offset <= reader.offset:
        return
    size = os.fstat(file.fileno()).st_size
    if offset > size:
        raise SourceError(
            f"{what}: cursor offset {offset} is beyond the end of {path} ({size} bytes); "
            "the file was truncated or replaced, so reset the flow's cursor"
        )
    file.seek(offset)
    reader.line, reader.offset = line, offset


class DurableFile:
    """An output file that is opened on first write and made durable on every flush.

    Opened in append mode, a file whose last line has no newline (a write torn by a crash)
    is first cut back to its last complete line, so a resumed run appends clean records.
    """

    def __init__(self, config: FileSinkConfig, what: str) -> None:
        self.config = config
        self.what = what
        self._file: IO[bytes] | None = None

    def open(self) -> IO[bytes]:
        """The open file (opening it the first time)."""
        if self._file is None:
            path = self.config.path
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                if self.config.mode == "overwrite":
                    self._file = path.open("wb")
                else:
                    self._file = path.open("ab")
                    _repair_torn_tail(self._file, path)
            except OSError as exc:
                raise SinkError(f"{self.what}: cannot open {path}: {exc.strerror or exc}") from exc
        return self._file

    def append(self, data: bytes) -> None:
        """Write ``data`` and make it durable (flush, and fsync unless disabled)."""
        file = self.open()
        try:
            file.write(data)
            file.flush()
            if self.config.fsync:
                os.fsync(file.fileno())
        except OSError as exc:
            raise SinkError(
                f"{self.what}: writing {self.config.path} failed: {exc.strerror or exc}"
            ) from exc

    def size(self) -> int:
        """The file's size in bytes (0 when it does not exist yet)."""
        if self._file is not None:
            return os.fstat(self._file.fileno()).st_size
        try:
            return 0 if self.config.mode == "overwrite" else self.config.path.stat().st_size
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        """Close the file if open."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _repair_torn_tail(file: IO[bytes], path: Path) -> None:
    size = os.fstat(file.fileno()).st_size
    if size == 0:
        return
    with path.open("rb") as reader:
        reader.seek(size - 1)
        if reader.read(1) == b"\n":
            return
        # Walk back to the last newline in chunks; the torn part is at most one record.
        end = size - 1
        keep = 0
        while end > 0:
            start = max(0, end - 65536)
            reader.seek(start)
            chunk = reader.read(end - start)
            cut = chunk.rfind(b"\n")
            if cut != -1:
                keep = start + cut + 1
                break
            end = start
    log.warning(
        "%s ended with an incomplete line (a write torn by a crash); cut it back from %d to %d "
        "bytes",
        path, size, keep,
        extra={"action": "file_tail_repaired"},
    )
    file.truncate(keep)


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback for the usual non-JSON types of records."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(record: Any) -> str:
    """One compact JSON line for ``record`` (without the newline)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=json_default)


def line_error(what: str, path: Path, line: int, problem: str) -> SourceError:
    """A source error that names the file and the line at fault."""
    return SourceError(f"{what}: {path} line {line}: {problem}")



@dataclass
class Chunk:
    """Raw records read together, for a columnar parser (Arrow's JSON or CSV reader).

    Attributes:
        data: the records' bytes, as in the file.
        positions: the position after each record.
        start: the position before the first record (a row-path read resumes there).
    """

    data: bytes
    positions: list[dict[str, int]]
    start: dict[str, int]


def record_chunks(
    lines: LineReader, size: int, end: int | None, quote: bytes | None = None
) -> Iterator[Chunk]:
    """Chunks of up to ``size`` records from ``lines``; a record is a non-blank line, or,
    with ``quote`` (CSV), lines up to an even count of quote characters (a quoted field
    may span lines). A record belongs to the chunk it begins in; none begins at or after
    ``end``."""
    raw_lines = iter(lines)
    while True:
        start = lines.position
        parts: list[bytes] = []
        positions: list[dict[str, int]] = []
        while len(positions) < size:
            if end is not None and lines.offset >= end:
                break
            raw = next(raw_lines, None)
            if raw is None:
                break
            if not raw.strip():
                continue
            parts.append(raw)
            if quote is not None:
                count = raw.count(quote)
                while count % 2:  # inside a quoted field: the record goes on
                    more = next(raw_lines, None)
                    if more is None:
                        break
                    parts.append(more)
                    count += more.count(quote)
            if not parts[-1].endswith(b"\n"):
                parts.append(b"\n")
            positions.append(lines.position)
        if not positions:
            return
        yield Chunk(b"".join(parts), positions, start)


def byte_ranges(first: int, size: int, parts: int) -> list[tuple[int, int | None]]:
    """Cut bytes ``[first, size)`` into at most ``parts`` ranges; the last one is open-ended
    (it also reads what is appended to the file after the split)."""
    length = max(0, size - first)
    parts = max(1, min(parts, length))
    step = length // parts if parts else length
    cuts = [first + i * step for i in range(parts)]
    return [(start, cuts[i + 1] if i + 1 < parts else None) for i, start in enumerate(cuts)]


def start_of(cursor: Any, what: str, default: int) -> int:
    """The byte a read after ``cursor`` starts at (``default`` without a cursor)."""
    return default if cursor is None else max(default, file_cursor(cursor, what)[1])


def split_file(
    source: Source,
    parts: int,
    cursor: Any,
    *,
    first: int,
    align: Callable[[IO[bytes], int, list[int]], list[int]] | None = None,
) -> list[Partition]:
    """Partitions of a file source by byte ranges, starting after ``cursor``.

    ``align(file, start, cuts)`` moves each cut to the next record boundary, for formats
    whose records may span lines (``start`` is a known boundary).
    """
    config = source.config
    assert isinstance(config, FileSourceConfig)
    what = f"{source.type_name} source"
    try:
        size = config.path.stat().st_size
    except OSError as exc:
        raise SourceError(f"{what}: cannot split {config.path}: {exc.strerror or exc}") from exc
    start = start_of(cursor, what, first)
    stop = size if config.end_offset is None else min(size, config.end_offset)
    ranges = byte_ranges(start, stop, parts)
    if align is not None and len(ranges) > 1:
        with config.path.open("rb") as file:
            cuts = sorted({start, *align(file, start, [lo for lo, _ in ranges[1:]])})
        cuts = [c for c in cuts if c < stop] or [start]
        ends: list[int | None] = [*cuts[1:], None]
        ranges = list(zip(cuts, ends, strict=True))
    if config.end_offset is not None:  # a partition split again keeps its own end
        ranges[-1] = (ranges[-1][0], config.end_offset)
    options = config.model_dump()
    return [
        Partition(type(source)(**{**options, "start_offset": lo, "end_offset": hi}))
        for lo, hi in ranges
    ]
