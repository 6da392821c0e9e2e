"""Splitting sources into partitions: disjoint parts that together read everything once."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from active_data_flow import Source
from active_data_flow.connector import Partition
from active_data_flow.connectors.csv import CsvSource
from active_data_flow.connectors.jsonl import JsonLinesSource
from active_data_flow.connectors.memory import MemorySource
from active_data_flow.errors import ConfigurationError


def read_partitions(parts: list[Partition]) -> list[dict[str, Any]]:
    return [dict(m) for p in parts for m in p.source.each(p.cursor)]


def write_jsonl(path: Path, n: int) -> None:
    path.write_text("".join(f'{{"id": {i}, "pad": "{"x" * (i % 13)}"}}\n' for i in range(n)))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 60), parts=st.integers(1, 12), resume_at=st.integers(0, 60))
def test_jsonl_partitions_cover_every_line_once(
    tmp_path_factory: pytest.TempPathFactory, n: int, parts: int, resume_at: int
) -> None:
    path = tmp_path_factory.mktemp("split") / "in.jsonl"
    write_jsonl(path, n)
    source = JsonLinesSource(path=path)
    everything = [dict(m) for m in source.each()]
    assert read_partitions(source.split(parts)) == everything
    cursor = None
    for m in source.each():
        if m["id"] == resume_at:
            cursor = m.position
    expected = [dict(m) for m in source.each(cursor)]
    pieces = source.split(parts, cursor)
    assert len(pieces) <= parts
    assert read_partitions(pieces) == expected


def test_a_partition_resumes_on_its_own_and_specs_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    write_jsonl(path, 100)
    parts = JsonLinesSource(path=path).split(4)
    second = Source.from_dict(parts[1].to_dict()["source"])
    rows = list(second.each())
    resumed = [dict(m) for m in second.each(rows[9].position)]
    assert resumed == [dict(m) for m in rows[10:]]


def test_the_last_partition_reads_lines_appended_after_the_split(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    write_jsonl(path, 10)
    parts = JsonLinesSource(path=path).split(3)
    with path.open("a") as f:
        f.write('{"id": 10}\n')
    assert [r["id"] for r in read_partitions(parts)] == list(range(11))


def csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


cells = st.text(alphabet=st.sampled_from(list('ab ,"\n')), max_size=6)


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.tuples(cells, cells), max_size=30), parts=st.integers(1, 8))
def test_csv_partitions_respect_quoted_newlines(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str]], parts: int
) -> None:
    path = tmp_path_factory.mktemp("split") / "in.csv"
    path.write_text(csv_text([["a", "b"], *[list(r) for r in rows]]))
    source = CsvSource(path=path)
    everything = [dict(m) for m in source.each()]
    assert read_partitions(source.split(parts)) == everything


def test_csv_partitions_without_quotes_cut_at_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,v\n" + "".join(f"{i},{i * i}\n" for i in range(1000)))
    parts = CsvSource(path=path).split(4)
    assert len(parts) == 4
    sizes = [len(list(p.source.each())) for p in parts]
    assert sum(sizes) == 1000
    assert min(sizes) > 200


def test_sources_that_cannot_split_return_one_partition() -> None:
    source = MemorySource(records=[{"a": 1}])
    (only,) = source.split(5, cursor=0)
    assert only.cursor == 0
    assert only.source.config == source.config


@pytest.mark.parametrize("parts", [0, -1, 1.5, True])
def test_parts_must_be_a_positive_integer(parts: Any) -> None:
    with pytest.raises(ConfigurationError, match="parts"):
        MemorySource().split(parts)
