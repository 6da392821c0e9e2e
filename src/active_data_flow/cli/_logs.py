"""Logging for every ``adf`` command: one setup, timestamps on every line, text or JSON.

``adf [-v|-vv] [--log-format text|json] COMMAND``: the level is ``ADF_LOG_LEVEL`` when set,
else ``-v`` (info) / ``-vv`` (debug), else warnings only, except for the long-running
commands (``worker``, ``serve``, ``celery worker``), which log what they do at info level
(:func:`long_running`). The format is ``--log-format``, else ``ADF_LOG_FORMAT`` (or
``log_format`` in ``adf.toml``), else ``text``::

    2026-12-01T20:31:02.114Z INFO active_data_flow.cli.worker: beat: claimed 1, ...

``json`` writes one object per line with ``ts``, ``level``, ``logger``, ``message``, and
``flow``, ``run_id`` and ``action`` when known (``exc`` holds a traceback)::

    {"ts": "2026-12-01T20:31:02.114Z", "level": "INFO", "logger": "...",
     "message": "run 3 of orders succeeded: ...", "flow": "orders", "run_id": 3}

Every line goes through the package's one masking filter (secrets masked, control
characters escaped), so a JSON line is always one line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

import click

from active_data_flow.masking import MaskingFilter

__all__ = [
    "FORMATS",
    "JsonFormatter",
    "TextFormatter",
    "long_running",
    "outcomes_printed",
    "setup_logging",
]

#: The values of ``--log-format`` / ``ADF_LOG_FORMAT``.
FORMATS = ("text", "json")

_LEVELS = {"CRITICAL", "ERROR", "WARNING", "WARN", "INFO", "DEBUG", "NOTSET"}


def _timestamp(record: logging.LogRecord) -> str:
    """ISO 8601 in UTC with milliseconds: ``2026-12-01T20:31:02.114Z``."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _run_of(record: logging.LogRecord) -> tuple[Any, Any]:
    """The flow and run id a log record is about: its ``extra`` fields, else the stored run
    the logging thread executes (when the heartbeat engine is loaded at all: importing it
    only to log would slow ``adf run`` down)."""
    flow, run_id = getattr(record, "flow", None), getattr(record, "run_id", None)
    if flow is None or run_id is None:
        executor = sys.modules.get("active_data_flow.runtimes.heartbeat.engine.executor")
        current_run = getattr(executor, "current_run", None)  # None while it is imported
        current = current_run() if current_run is not None else None
        if current is not None:
            flow = flow if flow is not None else current.flow
            run_id = run_id if run_id is not None else current.run_id
    return flow, run_id


class TextFormatter(logging.Formatter):
    """``<UTC timestamp> <LEVEL> <logger>: <message>``, plus the traceback if any."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname,
                                 "logger": record.name, "message": record.getMessage()}
        flow, run_id = _run_of(record)
        if flow is not None:
            entry["flow"] = flow
        if run_id is not None:
            entry["run_id"] = run_id
        action = getattr(record, "action", None)
        if action is not None:
            entry["action"] = action
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`setup_logging` installs (and replaces when called again)."""


_state: dict[str, Any] = {"explicit": False}


def setup_logging(verbose: int = 0, log_format: str | None = None) -> None:
    """Configure the root logger for a command (see the module docstring).

    Raises:
        click.BadParameter: ``ADF_LOG_FORMAT`` or ``ADF_LOG_LEVEL`` is not a known value.
    """
    fmt = (log_format or os.environ.get("ADF_LOG_FORMAT") or "text").strip().lower()
    if fmt not in FORMATS:
        raise click.BadParameter(f"{fmt!r} is not one of {', '.join(FORMATS)}",
                                 param_hint="--log-format / ADF_LOG_FORMAT / log_format")
    level_name = (os.environ.get("ADF_LOG_LEVEL") or "").strip().upper()
    if level_name and level_name not in _LEVELS:
        raise click.BadParameter(
            f"{level_name!r} is not a log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)",
            param_hint="ADF_LOG_LEVEL")
    default = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    _state["explicit"] = bool(level_name) or verbose > 0
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(MaskingFilter())
    root.addHandler(handler)
    root.setLevel(level_name or default)
    logging.getLogger(RUNS_LOGGER).setLevel(logging.NOTSET)
    # Alembic announces each of its plugins at info level on every start: debug detail.
    debug = root.getEffectiveLevel() <= logging.DEBUG
    logging.getLogger("alembic.runtime.plugins").setLevel(
        logging.NOTSET if debug else logging.WARNING)


def long_running() -> None:
    """For commands that run until stopped: log at info level unless the user chose a level
    (``-v``, ``ADF_LOG_LEVEL``), so runs started and finished are visible."""
    if not _state["explicit"]:
        logging.getLogger().setLevel(logging.INFO)


#: The logger of the executor's one line per run started and ended.
RUNS_LOGGER = "active_data_flow.runtimes.heartbeat.engine.executor"


def outcomes_printed() -> None:
    """For commands that print each run's outcome themselves (``adf run FLOW``,
    ``adf heartbeat``): the executor's line about a failed run would say it twice, so it is
    left out unless the user chose a level (``-v``, ``ADF_LOG_LEVEL``)."""
    if not _state["explicit"]:
        logging.getLogger(RUNS_LOGGER).setLevel(logging.ERROR)
