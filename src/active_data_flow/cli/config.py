"""Project settings for the ``adf`` command: ``adf.toml``, overridden by the environment.

``adf init`` writes an ``adf.toml`` in the project folder::

    database_url = "sqlite:///active_data_flow.db"   # the flow store (ADF_DATABASE_URL)
    flows = "data_flows"                               # code-defined flows (ADF_FLOWS)
    lease_seconds = 10                                 # claims' lease (ADF_LEASE_SECONDS)
    log_format = "json"                                # "text" or "json" (ADF_LOG_FORMAT)

    [celery]                                           # the Celery runtime's broker
    broker_url = "redis://localhost:6379/0"            # (ADF_CELERY_BROKER_URL)

The command reads it from the working directory (or ``ADF_CONFIG``) and exports each
setting as its environment variable unless that variable is already set, so the environment
always wins and application code reading ``ADF_*`` sees the same values.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import click

__all__ = ["CONFIG_FILE", "SETTINGS", "TABLES", "load_project_config"]

CONFIG_FILE = "adf.toml"

#: setting in adf.toml -> environment variable
SETTINGS = {
    "database_url": "ADF_DATABASE_URL",
    "flows": "ADF_FLOWS",
    "heartbeat_token": "ADF_HEARTBEAT_TOKEN",
    "lease_seconds": "ADF_LEASE_SECONDS",
    "log_format": "ADF_LOG_FORMAT",
}

#: tables of adf.toml -> {setting -> environment variable}
TABLES = {
    "celery": {"broker_url": "ADF_CELERY_BROKER_URL"},
}

#: settings people look for in a table, and why they are not there
NOT_SETTINGS = {
    ("celery", "result_backend"): "the Celery runtime keeps no task results (runs and "
                                  "their outcome are recorded in the flow store): remove it",
}

#: Settings that are numbers (the others are strings, or lists of them).
NUMBERS = {"lease_seconds"}


def load_project_config(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Export the settings of ``adf.toml`` (or ``path``) as ``ADF_*`` environment defaults.

    Returns the file read, or ``None`` when there is none.

    Raises:
        click.ClickException: the file is not valid TOML or has an unknown setting.
    """
    explicit = path or os.environ.get("ADF_CONFIG")
    file = Path(explicit) if explicit else Path.cwd() / CONFIG_FILE
    if not file.is_file():
        if explicit:
            raise click.ClickException(f"configuration file not found: {file}")
        return None
    try:
        settings = tomllib.loads(file.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{file}: not valid TOML: {exc}") from None
    for key, value in settings.items():
        if key in TABLES:
            _export_table(file, key, value)
            continue
        if key not in SETTINGS:
            raise click.ClickException(
                f"{file}: unknown setting {key!r} (settings: {', '.join(SETTINGS)}; "
                f"tables: {', '.join(f'[{t}]' for t in TABLES)})")
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if key in NUMBERS and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            kind = "a number" if key in NUMBERS else "a string"
            raise click.ClickException(f"{file}: setting {key!r} must be {kind}")
        if key == "flows" and not os.path.isabs(value):
            value = str(file.parent / value)  # relative to the file, not the caller
        os.environ.setdefault(SETTINGS[key], value)
    return file


def _export_table(file: Path, table: str, values: object) -> None:
    """Export the settings of a table of adf.toml (``[celery]``) as environment defaults."""
    known = TABLES[table]
    if not isinstance(values, dict):
        raise click.ClickException(f"{file}: {table!r} must be a table ([{table}])")
    for key, value in values.items():
        why = NOT_SETTINGS.get((table, key))
        if why:
            raise click.ClickException(f"{file}: [{table}] {key}: {why}")
        if key not in known:
            raise click.ClickException(
                f"{file}: unknown setting {key!r} in [{table}] (settings: {', '.join(known)})")
        if not isinstance(value, str):
            raise click.ClickException(f"{file}: setting [{table}] {key} must be a string")
        os.environ.setdefault(known[key], value)
