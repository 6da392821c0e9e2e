"""The ``adf`` command line: run a flow, report it, fail clearly."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from active_data_flow.cli import main


@pytest.fixture
def flows_file(tmp_path: Path) -> Path:
    (tmp_path / "in.jsonl").write_text("".join(f'{{"id": {i}}}\n' for i in range(25)))
    path = tmp_path / "cli_flows.py"
    path.write_text(textwrap.dedent(f"""
        from active_data_flow import DataFlow
        from active_data_flow.connectors.jsonl import JsonLinesSink, JsonLinesSource

        class Double(DataFlow):
            source = JsonLinesSource(path={str(tmp_path / 'in.jsonl')!r})
            sink = JsonLinesSink(path={str(tmp_path / 'out.jsonl')!r})

            def transform(self, message):
                return {{"id": message["id"], "twice": message["id"] * 2}}

        class Broken(Double):
            def transform(self, message):
                raise ValueError("cannot transform " + str(message["id"]))

        NOT_A_FLOW = 42
    """))
    return path


def test_run_prints_a_summary(flows_file: Path) -> None:
    result = CliRunner().invoke(main, ["run", f"{flows_file}:Double"])
    assert result.exit_code == 0, result.output
    assert "Run summary" in result.output
    assert "double" in result.output
    assert "25" in result.output
    out = (flows_file.parent / "out.jsonl").read_text().splitlines()
    assert json.loads(out[3]) == {"id": 3, "twice": 6}


def test_run_json_output_and_cursor_resume(flows_file: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["run", "--json", f"{flows_file}:Double"])
    cursor = json.loads(first.output)["cursor"]
    again = runner.invoke(main, ["run", "--json", "--cursor", json.dumps(cursor),
                                 f"{flows_file}:Double"])
    assert json.loads(again.output)["read"] == 0


def test_a_failed_run_exits_1_with_the_reason(flows_file: Path) -> None:
    result = CliRunner().invoke(main, ["run", "--no-progress", f"{flows_file}:Broken"])
    assert result.exit_code == 1
    assert "cannot transform 0" in result.output


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_module_xyz:Flow", "cannot import module 'no_such_module_xyz'"),
        (":Flow", "expected MODULE:FlowClass"),
        ("{file}:Missing", "has no attribute 'Missing'"),
        ("{file}:NOT_A_FLOW", "NOT_A_FLOW is not a DataFlow subclass (it is an int object"),
        ("/nowhere/flows.py:X", "no such file"),
    ],
)
def test_a_bad_target_is_a_one_line_error(flows_file: Path, target: str, message: str) -> None:
    result = CliRunner().invoke(main, ["run", target.format(file=flows_file)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_cursor_json_is_a_usage_error(flows_file: Path) -> None:
    result = CliRunner().invoke(main, ["run", "--cursor", "{oops", f"{flows_file}:Double"])
    assert result.exit_code == 2
    assert "not valid JSON" in result.output


def test_connectors_lists_the_registered_types() -> None:
    result = CliRunner().invoke(main, ["connectors"])
    assert result.exit_code == 0
    assert "jsonl" in result.output
    assert "inline" in result.output


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "run" in result.output
