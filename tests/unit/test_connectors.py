"""Connector options, specs and the registry."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from active_data_flow import Sink, Source, register_connector
from active_data_flow.connector import SinkConfig, SourceConfig
from active_data_flow.connectors.csv import CsvSink, CsvSource
from active_data_flow.connectors.jsonl import JsonLinesSink, JsonLinesSource
from active_data_flow.connectors.memory import MemorySink, MemorySource
from active_data_flow.errors import AlreadyRegistered, ConfigurationError, ConnectorNotFound
from active_data_flow.registry import available_connectors, connector_class


def test_a_missing_option_is_named() -> None:
    with pytest.raises(ConfigurationError, match="option 'path' is required") as err:
        JsonLinesSource()
    assert err.value.option == "path"


def test_an_unknown_option_is_named_with_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown option 'pzz' \(options: path") as err:
        JsonLinesSink(pzz="x.jsonl")
    assert err.value.option == "pzz"


def test_a_misspelt_option_is_named_with_the_option_meant() -> None:
    with pytest.raises(ConfigurationError) as err:
        JsonLinesSink(pth="x.jsonl")
    assert str(err.value) == "jsonl sink: unknown option 'pth' (did you mean 'path'?)"
    assert err.value.option == "pth"


def test_a_wrongly_typed_option_is_named() -> None:
    with pytest.raises(ConfigurationError, match="option 'fsync'") as err:
        JsonLinesSink(path="x", fsync="sometimes")
    assert err.value.option == "fsync"
    with pytest.raises(ConfigurationError, match="option 'mode'"):
        CsvSink(path="x", mode="rewrite")
    with pytest.raises(ConfigurationError, match="option 'records'"):
        MemorySource(records="not a list")


def test_from_dict_resolves_type_names_without_imports() -> None:
    source = Source.from_dict({"type": "jsonl", "config": {"path": "in.jsonl"}})
    assert isinstance(source, JsonLinesSource)
    sink = Sink.from_dict({"type": "csv", "config": {"path": "out.csv"}})
    assert isinstance(sink, CsvSink)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "nope"}, "unknown source type 'nope'; known source types: .*jsonl"),
        ({"config": {}}, "no 'type'"),
        ({"type": "jsonl", "config": []}, "'config' must be a mapping"),
        ({"type": "jsonl", "config": {}, "extra": 1}, "unknown key"),
        ({"type": "jsonl", "config": {"path": 3j}}, "option 'path'"),
        ("jsonl", "must be a mapping"),
        ({"type": ""}, "non-empty string"),
    ],
)
def test_malformed_specs_are_configuration_errors(spec: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Source.from_dict(spec)


def test_unknown_type_is_a_connector_not_found() -> None:
    with pytest.raises(ConnectorNotFound):
        connector_class("no-such-connector", "sink")


def test_registering_twice_under_one_name_is_refused() -> None:
    class One(Sink):
        pass

    class Two(Sink):
        pass

    register_connector(One, "test-dup")
    register_connector(One, "test-dup")  # the same class again is fine
    with pytest.raises(AlreadyRegistered, match="test-dup"):
        register_connector(Two, "test-dup")


def test_decorator_registration_and_listing() -> None:
    @register_connector("test-upper")
    class Upper(Source):
        class Config(SourceConfig):
            word: str

        def each(self, cursor: Any = None) -> Any:
            yield from ()

    assert connector_class("test-upper", "source") is Upper
    assert Upper(word="a").to_dict() == {"type": "test-upper", "config": {"word": "a"}}
    assert "test-upper" in available_connectors("source")
    assert "test-upper" not in available_connectors("sink")


def test_unregistered_connectors_have_no_spec() -> None:
    class Loose(Sink):
        class Config(SinkConfig):
            pass

    with pytest.raises(ConfigurationError, match="not registered"):
        Loose().to_dict()


def test_sinks_and_sources_are_context_managers(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with JsonLinesSink(path=path) as sink:
        sink.write({"a": 1})
    assert path.read_text() == '{"a":1}\n'  # close() flushed
    with JsonLinesSource(path=path) as source:
        assert [m.data for m in source] == [{"a": 1}]


# -- round trips ---------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
records = st.lists(st.dictionaries(st.text(min_size=1), json_values, max_size=4), max_size=5)
paths = st.from_regex(r"[a-z]{1,8}/[a-z]{1,8}\.(jsonl|csv)", fullmatch=True)


def _round_trip(connector: Source | Sink) -> None:
    spec = connector.to_dict()
    assert json.loads(json.dumps(spec)) == spec  # JSON-safe
    base = Source if isinstance(connector, Source) else Sink
    rebuilt = base.from_dict(spec)
    assert type(rebuilt) is type(connector)
    assert rebuilt.config == connector.config
    assert rebuilt.to_dict() == spec


@given(records)
def test_memory_source_round_trips(rows: list[dict[str, Any]]) -> None:
    _round_trip(MemorySource(records=rows))


@given(st.text(min_size=1, max_size=50))
def test_memory_sink_round_trips(name: str) -> None:
    _round_trip(MemorySink(name=name))


@given(paths, st.sampled_from(["utf-8", "latin-1"]))
def test_file_sources_round_trip(path: str, encoding: str) -> None:
    _round_trip(JsonLinesSource(path=path, encoding=encoding))
    _round_trip(CsvSource(path=path, encoding=encoding, delimiter=";", strict=False))
    _round_trip(CsvSource(path=path, fields=["a", "b"]))


@given(paths, st.sampled_from(["append", "overwrite"]), st.booleans())
def test_file_sinks_round_trip(path: str, mode: str, fsync: bool) -> None:
    _round_trip(JsonLinesSink(path=path, mode=mode, fsync=fsync))
    _round_trip(CsvSink(path=path, mode=mode, fsync=fsync, fields=["a"], header=False))


def test_untrusted_specs_is_a_scoped_flag() -> None:
    from active_data_flow.registry import specs_trusted, untrusted_specs

    assert specs_trusted()
    with untrusted_specs():
        assert not specs_trusted()
    assert specs_trusted()


def test_untrusted_specs_may_name_files_only_inside_allowed_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from active_data_flow.registry import untrusted_specs

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADF_FILE_ROOTS", raising=False)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "escape").symlink_to(tmp_path / "elsewhere")
    with untrusted_specs():
        assert Sink.from_dict({"type": "jsonl", "config": {"path": "data/out.jsonl"}})
        for path in ("/etc/passwd", "out.jsonl", "data/../flows.py", "data/escape/x.csv"):
            for kind, base in (("jsonl", Sink), ("csv", Source)):
                with pytest.raises(ConfigurationError, match="outside the folders") as err:
                    base.from_dict({"type": kind, "config": {"path": path}})
                assert err.value.option == "path"
        monkeypatch.setenv("ADF_FILE_ROOTS", str(tmp_path / "elsewhere"))
        assert Source.from_dict({"type": "csv", "config": {"path": "data/escape/x.csv"}})
    assert JsonLinesSink(path="/anywhere/in/trusted/code.jsonl")  # application code is trusted


def test_a_source_whose_each_takes_no_cursor_reads_from_the_start_and_saves_no_cursor(
) -> None:
    from active_data_flow import DataFlow, Untyped

    class Seed(Source):
        def each(self):  # type: ignore[no-untyped-def, override]  # the seed's contract
            yield {"n": 1}
            yield Untyped({"n": 2}, position=99)  # a position it cannot resume from

    assert Seed.resumable is False
    assert [dict(m) for m in Seed().read()] == [{"n": 1}, {"n": 2}]
    assert [m.position for m in Seed().read()] == [None, None]
    with pytest.raises(ConfigurationError, match="cannot resume"):
        Seed().read(cursor=1)

    register_connector(Seed, name=f"seed_{uuid.uuid4().hex}")  # a flow's source has a type

    class SeedFlow(DataFlow):
        source = Seed()
        sink = MemorySink(name="seed_flow_test")

    for _ in range(2):
        result = SeedFlow().run()
        assert (result.read, result.written, result.cursor) == (2, 2, None)


def test_the_csv_sink_writes_dates_and_times_in_iso_8601_like_json_lines(tmp_path: Path) -> None:
    from datetime import UTC, date, datetime, time

    record = {"at": datetime(2026, 1, 2, 3, 4, 5, 600), "utc": datetime(2026, 1, 2, tzinfo=UTC),
              "day": date(2026, 1, 2), "t": time(3, 4), "tags": ["a", "b"], "none": None}
    with CsvSink(path=tmp_path / "out.csv") as csv_sink:
        csv_sink.write(record)
    with JsonLinesSink(path=tmp_path / "out.jsonl") as jsonl_sink:
        jsonl_sink.write(record)
    csv_row = (tmp_path / "out.csv").read_text().splitlines()[1]
    as_json = json.loads((tmp_path / "out.jsonl").read_text())
    assert csv_row == ('2026-01-02T03:04:05.000600,2026-01-02T00:00:00+00:00,2026-01-02,'
                       '03:04:00,"[""a"", ""b""]",')
    assert [as_json[k] for k in ("at", "utc", "day", "t")] == csv_row.split(",")[:4]
