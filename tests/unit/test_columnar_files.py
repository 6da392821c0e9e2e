"""The columnar path of the file connectors: Parquet, and Arrow-native JSON Lines / CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from active_data_flow import DataFlow, FlowRunError
from active_data_flow.connectors.csv import CsvSource
from active_data_flow.connectors.jsonl import JsonLinesSource
from active_data_flow.connectors.memory import MemorySink
from active_data_flow.connectors.parquet import ParquetSink, ParquetSource
from active_data_flow.errors import ConfigurationError
from active_data_flow.runtimes.inline import Inline


def batches(source: Any, cursor: Any = None, size: int = 3) -> list[tuple[list[Any], Any]]:
    return [(b.table.to_pylist(), b.position) for b in source.read_batches(cursor, size)]


def rows_of(source: Any, cursor: Any = None) -> list[tuple[dict[str, Any], Any]]:
    return [(dict(m), m.position) for m in source.each(cursor)]


def columnar(source: Any, sink: Any, transform: Any = lambda b: b, size: int = 3,
             **attrs: Any) -> DataFlow:
    return type("Columnar", (DataFlow,), {
        "source": source, "sink": sink, "runtime": Inline(batch_size=size),
        "transform_batch": lambda self, batch: transform(batch), **attrs})()


# -- JSON Lines ---------------------------------------------------------------------------
def test_jsonl_batches_are_parsed_by_arrow_with_the_row_paths_positions(
        tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(f'{{"id": {i}, "name": "n{i}"}}\n' + ("\n" if i == 2 else "")
                            for i in range(7)))
    source = JsonLinesSource(path=path)
    rows = rows_of(source)
    got = batches(source)
    assert [len(t) for t, _ in got] == [3, 3, 1]
    assert [r for t, _ in got for r in t] == [r for r, _ in rows]
    assert [p for _, p in got] == [rows[2][1], rows[5][1], rows[6][1]]
    # Resuming from a batch's position reads what follows it.
    assert batches(source, got[0][1]) == got[1:]
    batch = next(iter(source.read_batches(None, 3)))
    assert batch.position_at is not None
    assert [batch.position_at(i) for i in range(3)] == [p for _, p in rows[:3]]


def test_a_jsonl_batch_arrow_cannot_read_falls_back_to_the_rows_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n[3]\n')
    with pytest.raises(Exception, match="line 3: expected a JSON object"):
        list(JsonLinesSource(path=path).read_batches(None, 10))


# -- CSV ------------------------------------------------------------------------------------
def test_csv_batches_are_strings_like_the_row_path_with_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text('id,text\n1,plain\n2,"two\nlines"\n3,""\n4,"say ""hi"""\n5,x\n')
    source = CsvSource(path=path)
    rows = rows_of(source)
    got = batches(source, size=2)
    assert [r for t, _ in got for r in t] == [r for r, _ in rows]
    assert rows[1][0] == {"id": "2", "text": "two\nlines"}
    assert [p for _, p in got] == [rows[1][1], rows[3][1], rows[4][1]]
    assert batches(source, got[0][1], size=2) == got[1:]


def test_a_csv_row_of_the_wrong_width_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3\n")
    with pytest.raises(Exception, match="line 3: expected 2 fields"):
        list(CsvSource(path=path).read_batches(None, 10))


# -- Parquet --------------------------------------------------------------------------------
def test_a_columnar_flow_writes_parquet_files_one_per_flush_and_reads_them_back(
        tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(f'{{"id": {i}, "amount": {i * 10}}}\n' for i in range(8)))
    out = tmp_path / "out"
    flow = columnar(JsonLinesSource(path=src), ParquetSink(path=out),
                    lambda b: b.set_column(1, "amount", pc.multiply(b.column("amount"), 2)))
    result = flow.run()
    assert (result.read, result.written, result.batches) == (8, 8, 3)
    assert sorted(p.name for p in out.iterdir()) == [
        "part-000001.parquet", "part-000002.parquet", "part-000003.parquet"]
    table = pq.read_table(out)
    assert table.column("amount").to_pylist() == [i * 20 for i in range(8)]
    # A second run appends new files; overwrite starts again.
    columnar(JsonLinesSource(path=src), ParquetSink(path=out), size=100).run()
    assert len(list(out.glob("*.parquet"))) == 4
    columnar(JsonLinesSource(path=src), ParquetSink(path=out, mode="overwrite"),
             size=100).run()
    assert [p.name for p in out.glob("*.parquet")] == ["part-000001.parquet"]


def test_parquet_source_resumes_from_file_and_row_on_both_paths(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    for n, start in ((1, 0), (2, 5)):
        table = pa.table({"id": list(range(start, start + 5))})
        pq.write_table(table, folder / f"part-00000{n}.parquet", row_group_size=2)
    source = ParquetSource(path=folder)
    rows = rows_of(source)
    assert [r["id"] for r, _ in rows] == list(range(10))
    assert rows[6][1] == {"file": "part-000002.parquet", "row": 2}
    assert [r["id"] for r, _ in rows_of(source, rows[2][1])] == list(range(3, 10))
    got = batches(source, rows[2][1], size=4)
    assert [r["id"] for t, _ in got for r in t] == list(range(3, 10))
    assert source.count() == 10
    sink = MemorySink()
    result = type("Rows", (DataFlow,), {"source": ParquetSource(path=folder), "sink": sink,
                                        "runtime": Inline(batch_size=4)})().run()
    assert (result.read, result.cursor) == (10, {"file": "part-000002.parquet", "row": 5})
    with pytest.raises(ConfigurationError, match="parquet source cursor"):
        list(source.each({"line": 3}))


def test_records_from_a_row_flow_go_to_parquet_too(tmp_path: Path) -> None:
    from active_data_flow.connectors.memory import MemorySource

    out = tmp_path / "rows"
    flow = type("RowsToParquet", (DataFlow,), {
        "source": MemorySource(records=[{"id": i, "name": f"n{i}"} for i in range(5)]),
        "sink": ParquetSink(path=out), "runtime": Inline(batch_size=2)})()
    assert flow.run().written == 5
    assert pq.read_table(out).to_pylist() == [{"id": i, "name": f"n{i}"} for i in range(5)]


def test_a_failing_flush_discards_its_file(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(f'{{"id": {i}}}\n' for i in range(4)))

    def boom(batch: pa.Table) -> pa.Table:
        if 3 in batch.column("id").to_pylist():
            raise ValueError("boom")
        return batch

    out = tmp_path / "out"
    with pytest.raises(FlowRunError, match="boom"):
        columnar(JsonLinesSource(path=src), ParquetSink(path=out), boom, size=2).run()
    assert pq.read_table(out).column("id").to_pylist() == [0, 1]
