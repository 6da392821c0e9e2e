"""The one logging setup of the ``adf`` command (cli/_logs.py)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import click
import pytest

from active_data_flow.cli._logs import JsonFormatter, TextFormatter, long_running, setup_logging


@pytest.fixture(autouse=True)
def _restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("active_data_flow.x", logging.WARNING, __file__, 1, message, args,
                             None)
    made.__dict__.update(extra)
    return made


def test_text_lines_start_with_a_utc_timestamp() -> None:
    line = TextFormatter().format(record("run %d ended", 3))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING active_data_flow\.x: "
                        r"run 3 ended", line), line


def test_json_lines_carry_the_flow_the_run_and_the_action() -> None:
    entry = json.loads(JsonFormatter().format(
        record("run %d of %s ended", 3, "orders", flow="orders", run_id=3, action="run_end")))
    assert entry.pop("ts").endswith("Z")
    assert entry == {"level": "WARNING", "logger": "active_data_flow.x",
                     "message": "run 3 of orders ended", "flow": "orders", "run_id": 3,
                     "action": "run_end"}


def test_a_traceback_stays_inside_one_json_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        made = record("failed")
        made.exc_info = sys.exc_info()
    line = JsonFormatter().format(made)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_the_level_comes_from_the_environment_then_verbosity(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADF_LOG_LEVEL", raising=False)
    monkeypatch.delenv("ADF_LOG_FORMAT", raising=False)
    setup_logging(0)
    assert logging.getLogger().level == logging.WARNING
    long_running()  # worker, serve: info unless chosen
    assert logging.getLogger().level == logging.INFO
    setup_logging(2)
    long_running()
    assert logging.getLogger().level == logging.DEBUG
    monkeypatch.setenv("ADF_LOG_LEVEL", "error")
    setup_logging(2)
    long_running()
    assert logging.getLogger().level == logging.ERROR


def test_one_handler_however_often_it_is_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADF_LOG_FORMAT", "json")
    setup_logging(0)
    setup_logging(0, "text")
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_Handler"]
    assert len(ours) == 1
    assert isinstance(ours[0].formatter, TextFormatter)  # the option wins over the env


@pytest.mark.parametrize(("variable", "value", "named"), [
    ("ADF_LOG_FORMAT", "yaml", "ADF_LOG_FORMAT"), ("ADF_LOG_LEVEL", "loud", "ADF_LOG_LEVEL")])
def test_a_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
                                named: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(click.BadParameter) as caught:
        setup_logging(0)
    assert value.upper() in caught.value.format_message().upper()
    assert named in str(caught.value.param_hint)


def test_commands_that_print_outcomes_do_not_log_them_twice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from active_data_flow.cli._logs import RUNS_LOGGER, outcomes_printed

    monkeypatch.delenv("ADF_LOG_LEVEL", raising=False)
    runs = logging.getLogger(RUNS_LOGGER)
    setup_logging(0)
    outcomes_printed()
    assert not runs.isEnabledFor(logging.WARNING)
    setup_logging(1)  # -v: the user asked for the log lines
    outcomes_printed()
    assert runs.isEnabledFor(logging.INFO)
    setup_logging(0)  # each command starts from the default
    assert runs.level == logging.NOTSET
