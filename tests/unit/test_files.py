"""JSON Lines and CSV connectors: streaming, cursors, and clear errors on bad files."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from pathlib import Path
from typing import Any

import pytest

from active_data_flow import DataFlow, FlowRunError
from active_data_flow.connectors.csv import CsvSink, CsvSource
from active_data_flow.connectors.jsonl import JsonLinesSink, JsonLinesSource
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.errors import ConfigurationError, RecordRejected, SourceError


def read(source: Any, cursor: Any = None) -> list[tuple[dict[str, Any], Any]]:
    return [(dict(m), m.position) for m in source.each(cursor)]


# -- JSON Lines source -------------------------------------------------------------------------
def test_jsonl_positions_are_line_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": "\xc3\xa9"}\n')
    rows = read(JsonLinesSource(path=path))
    assert rows == [({"a": 1}, {"line": 1, "offset": 9}), ({"a": "é"}, {"line": 3, "offset": 22})]
    assert read(JsonLinesSource(path=path), rows[0][1]) == rows[1:]


def test_jsonl_reads_a_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}')
    assert [r for r, _ in read(JsonLinesSource(path=path))] == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"a": 1}\n{"a": \n', "line 2: invalid JSON"),
        ('{"a": 1}\n[1, 2]\n', "line 2: expected a JSON object, got list"),
        ('{"a": 1}\n"text"\n', "line 2: expected a JSON object, got str"),
    ],
)
def test_jsonl_bad_lines_name_file_and_line(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(SourceError, match=problem) as err:
        read(JsonLinesSource(path=path))
    assert str(path) in str(err.value)


def test_jsonl_bad_encoding_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(SourceError, match="line 2: invalid JSON"):
        read(JsonLinesSource(path=path))


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    for source in (JsonLinesSource(path=tmp_path / "nope.jsonl"),
                   CsvSource(path=tmp_path / "nope.csv")):
        with pytest.raises(SourceError, match=r"file not found: .*nope"):
            read(source)


def test_a_cursor_past_the_end_of_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n')
    with pytest.raises(SourceError, match="beyond the end"):
        read(JsonLinesSource(path=path), {"line": 5, "offset": 500})


@pytest.mark.parametrize("cursor", [5, {"line": 1}, {"line": -1, "offset": 0}, "x"])
def test_a_malformed_file_cursor_is_a_configuration_error(tmp_path: Path, cursor: Any) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": 1}\n')
    with pytest.raises(ConfigurationError, match="cursor"):
        read(JsonLinesSource(path=path), cursor)


# -- JSON Lines sink -------------------------------------------------------------------------
def test_jsonl_sink_writes_on_flush_and_serialises_common_types(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "out.jsonl"
    sink = JsonLinesSink(path=path)
    key = uuid.UUID(int=1)
    sink.write({"when": dt.date(2024, 2, 29), "price": decimal.Decimal("1.10"), "id": key})
    assert not path.exists()  # buffered until flush
    sink.flush()
    assert path.read_text() == (
        '{"when":"2024-02-29","price":"1.10","id":"00000000-0000-0000-0000-000000000001"}\n'
    )
    sink.close()


def test_jsonl_sink_discard_drops_unflushed_records(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonLinesSink(path=path)
    sink.write({"a": 1})
    sink.flush()
    sink.write({"a": 2})
    sink.discard()
    sink.close()
    assert path.read_text() == '{"a":1}\n'


def test_jsonl_sink_rejects_unserialisable_records(tmp_path: Path) -> None:
    sink = JsonLinesSink(path=tmp_path / "out.jsonl")
    with pytest.raises(RecordRejected, match="JSON") as err:
        sink.write({"id": 9, "obj": object()})
    assert err.value.key == 9


def test_jsonl_sink_overwrite_truncates_once_per_instance(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"old":1}\n')
    sink = JsonLinesSink(path=path, mode="overwrite")
    sink.write({"a": 1})
    sink.flush()
    sink.write({"a": 2})
    sink.close()
    assert path.read_text() == '{"a":1}\n{"a":2}\n'


def test_append_repairs_a_line_torn_by_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"a":1}\n{"a":2}\n{"a":')
    with JsonLinesSink(path=path) as sink:
        sink.write({"a": 3})
    assert path.read_text() == '{"a":1}\n{"a":2}\n{"a":3}\n'
    assert "incomplete line" in caplog.text


# -- CSV ---------------------------------------------------------------------------------------
def test_csv_reads_header_quotes_multiline_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes('\ufeffid,note\n1,"a, b"\n2,"two\nlines"\n3,\n'.encode())
    rows = read(CsvSource(path=path))
    assert [r for r, _ in rows] == [
        {"id": "1", "note": "a, b"}, {"id": "2", "note": "two\nlines"}, {"id": "3", "note": ""},
    ]
    assert rows[1][1]["line"] == 4  # the record ends on the file's fourth line
    assert read(CsvSource(path=path), rows[1][1]) == rows[2:]


def test_csv_fields_option_for_headerless_files(tmp_path: Path) -> None:
    path = tmp_path / "in.tsv"
    path.write_text("1\tx\n2\ty\n")
    source = CsvSource(path=path, fields=["id", "v"], delimiter="\t")
    assert [r for r, _ in read(source)] == [{"id": "1", "v": "x"}, {"id": "2", "v": "y"}]


def test_csv_broken_row_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,name\n1,a\n2,b,extra\n")
    with pytest.raises(SourceError, match=r"in\.csv line 3: expected 2 fields \(id, name\), got 3"):
        read(CsvSource(path=path))


def test_csv_lenient_mode_pads_and_truncates(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,name\n1\n2,b,extra\n")
    rows = [r for r, _ in read(CsvSource(path=path, strict=False))]
    assert rows == [{"id": "1", "name": None}, {"id": "2", "name": "b"}]


def test_csv_unterminated_quote_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('id,name\n1,"open\n')
    with pytest.raises(SourceError, match="malformed CSV"):
        read(CsvSource(path=path))


def test_csv_duplicate_header_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,id\n1,2\n")
    with pytest.raises(SourceError, match="duplicate column"):
        read(CsvSource(path=path))


def test_csv_sink_writes_header_once_and_keeps_column_order(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    with CsvSink(path=path) as sink:
        sink.write_batch([{"id": 1, "name": "a,b"}, {"name": None, "id": 2}])
    with CsvSink(path=path) as sink:  # appending reuses the file's header
        sink.write({"name": "c", "id": 3})
    assert path.read_text() == 'id,name\n1,"a,b"\n2,\n3,c\n'
    assert [r for r, _ in read(CsvSource(path=path))][-1] == {"id": "3", "name": "c"}


def test_csv_sink_rejects_records_with_unknown_fields(tmp_path: Path) -> None:
    sink = CsvSink(path=tmp_path / "out.csv", fields=["id"])
    with pytest.raises(RecordRejected, match=r"\['extra'\]"):
        sink.write({"id": 1, "extra": 2})


def test_a_broken_csv_row_fails_the_run_and_keeps_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id\n" + "".join(f"{i}\n" for i in range(5)) + "5,oops\n6\n")
    out = MemorySink()

    class Load(DataFlow):
        source = CsvSource(path=path)
        sink = out
        batch_size = 2

    with pytest.raises(FlowRunError, match="line 7: expected 1 fields") as err:
        Load().run()
    assert [r["id"] for r in out.records] == ["0", "1", "2", "3"]
    assert err.value.result is not None
    assert err.value.result.cursor == {"line": 5, "offset": 11}


def test_csv_round_trip_through_a_flow(tmp_path: Path) -> None:
    records = [{"id": str(i), "text": f"line {i}\nwith, comma \"quoted\""} for i in range(50)]
    path = tmp_path / "out.csv"

    class Export(DataFlow):
        source = MemorySource(records=records)
        sink = CsvSink(path=path)

    Export().run()
    assert [r for r, _ in read(CsvSource(path=path))] == records
