"""Project settings for the ``adf`` command: ``adf.toml``, overridden by the environment.

``adf init`` writes an ``adf.toml`` in the project folder::

    database_url = "sqlite:///active_data_flow.db"   # the flow store (ADF_DATABASE_URL)
    flows = "data_flows"                               # code-defined flows (ADF_FLOWS)
    lease_seconds = 10                                 # claims' lease (ADF_LEASE_SECONDS)
    store_connect_timeout = 10                         # (ADF_STORE_CONNECT_TIMEOUT)
    pythonpath = ["src"]                               # more importable folders
    log_format = "json"                                # "text" or "json" (ADF_LOG_FORMAT)

    [celery]                                           # the Celery runtime's broker
    broker_url = "redis://localhost:6379/0"            # (ADF_CELERY_BROKER_URL)

The command finds it in the working directory or the nearest folder above (or takes
``--config`` / ``ADF_CONFIG``), makes the project folder (and ``pythonpath``) importable, and
exports each other setting as its environment variable unless that variable is already set,
so the environment always wins and application code reading ``ADF_*`` sees the same values.
"""

from __future__ import annotations

import os
from pathlib import Path

from active_data_flow.errors import ConfigurationError, did_you_mean
from active_data_flow.project import CONFIG_FILE, find_config, make_importable, read_config

__all__ = ["CONFIG_FILE", "SETTINGS", "TABLES", "load_project_config"]

#: setting in adf.toml -> environment variable
SETTINGS = {
    "database_url": "ADF_DATABASE_URL",
    "flows": "ADF_FLOWS",
    "heartbeat_token": "ADF_HEARTBEAT_TOKEN",
    "lease_seconds": "ADF_LEASE_SECONDS",
    "store_connect_timeout": "ADF_STORE_CONNECT_TIMEOUT",
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
NUMBERS = {"lease_seconds", "store_connect_timeout"}

#: Settings read from the file itself, not exported (see :mod:`active_data_flow.project`).
FILE_ONLY = {"pythonpath"}


def load_project_config(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Read ``adf.toml`` (or ``path``): make the project folder and its ``pythonpath``
    importable, and export the other settings as ``ADF_*`` environment defaults.

    Returns the file read, or ``None`` when there is none.

    Raises:
        ConfigurationError: the file is missing (when named), not valid TOML, or has an
            unknown or malformed setting.
    """
    file = Path(path).absolute() if path else find_config()
    if file is None:
        return None
    settings = read_config(file)
    for key, value in settings.items():
        if key in FILE_ONLY:
            continue
        if key in TABLES:
            _export_table(file, key, value)
            continue
        if key not in SETTINGS:
            known = sorted({*SETTINGS, *FILE_ONLY})
            raise ConfigurationError(
                f"{file}: unknown setting {key!r}{did_you_mean(key, known)} "
                f"(settings: {', '.join(known)}; tables: "
                f"{', '.join(f'[{t}]' for t in TABLES)})", option=key)
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if key in NUMBERS and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            kind = "a number" if key in NUMBERS else "a string"
            raise ConfigurationError(f"{file}: setting {key!r} must be {kind}", option=key)
        if key == "flows":
            value = ",".join(_relative_to(file, v.strip()) for v in value.split(","))
        os.environ.setdefault(SETTINGS[key], value)
    make_importable(file)
    return file


def _export_table(file: Path, table: str, values: object) -> None:
    """Export the settings of a table of adf.toml (``[celery]``) as environment defaults."""
    known = TABLES[table]
    if not isinstance(values, dict):
        raise ConfigurationError(f"{file}: {table!r} must be a table ([{table}])", option=table)
    for key, value in values.items():
        option = f"[{table}] {key}"
        why = NOT_SETTINGS.get((table, key))
        if why:
            raise ConfigurationError(f"{file}: {option}: {why}", option=option)
        if key not in known:
            raise ConfigurationError(
                f"{file}: unknown setting {key!r} in [{table}]{did_you_mean(key, list(known))} "
                f"(settings: {', '.join(known)})", option=option)
        if not isinstance(value, str):
            raise ConfigurationError(f"{file}: setting {option} must be a string",
                                     option=option)
        os.environ.setdefault(known[key], value)


def _relative_to(file: Path, entry: str) -> str:
    """A folder or file entry relative to the settings file, not the caller; a module
    name (``myapp.flows``) as it is."""
    if not entry or os.path.isabs(entry):
        return entry
    if "/" in entry or os.sep in entry or entry.endswith(".py") or (file.parent / entry).exists():
        return str(file.parent / entry)
    return entry
