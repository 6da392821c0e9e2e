"""The application's project folder: the one holding ``adf.toml``, and what it makes
importable.

Flows in the folder ``adf init`` creates import the application's own package
(``from myapp.models import Order``). For that to work whatever the command or host, the
project folder, found by walking up from the working directory to the first ``adf.toml``
(or named by ``ADF_CONFIG``), is put on ``sys.path``, along with the folders its
``pythonpath`` setting lists (relative to the file), e.g. for a ``src/`` layout::

    pythonpath = ["src"]

The ``adf`` command does this at start; the catalog does it before it loads ``ADF_FLOWS``
(so a web host such as uvicorn gets it too).
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from active_data_flow.errors import ConfigurationError

__all__ = ["CONFIG_FILE", "find_config", "importable", "make_importable", "python_paths",
           "read_config"]

CONFIG_FILE = "adf.toml"


def find_config(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The settings file: ``ADF_CONFIG`` if set, else the first ``adf.toml`` in ``start``
    (default: the working directory) or a folder above it; ``None`` when there is none."""
    explicit = os.environ.get("ADF_CONFIG")
    if explicit:
        return Path(explicit).absolute()
    folder = Path(start if start is not None else Path.cwd()).absolute()
    for candidate in (folder, *folder.parents):
        file = candidate / CONFIG_FILE
        if file.is_file():
            return file
    return None


def read_config(file: Path) -> dict[str, Any]:
    """The settings in ``file``.

    Raises:
        ConfigurationError: the file is missing or not valid TOML (``option`` is the file).
    """
    try:
        return tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"configuration file not found: {file}",
                                 option=str(file)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigurationError(f"{file}: not valid TOML: {exc}", option=str(file)) from None


def python_paths(file: Path, settings: dict[str, Any]) -> list[Path]:
    """The folders ``file`` makes importable: its own folder, then its ``pythonpath``
    entries (a list of folders, or one string with commas), relative to it.

    Raises:
        ConfigurationError: ``pythonpath`` is neither a string nor a list of strings.
    """
    root = file.parent.absolute()
    value = settings.get("pythonpath", [])
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"{file}: setting 'pythonpath' must be a list of folders, "
                                 f"e.g. pythonpath = [\"src\"]", option="pythonpath")
    return [root, *(root / v.strip() for v in value if v.strip())]


def make_importable(file: Path | None = None) -> list[Path]:
    """Put the project folder of ``file`` (default: :func:`find_config`) and its
    ``pythonpath`` on ``sys.path``; return the folders (none without a settings file).

    Raises:
        ConfigurationError: the settings file is unreadable or ``pythonpath`` is malformed.
    """
    file = file if file is not None else find_config()
    if file is None or not file.is_file():
        return []
    folders = python_paths(file, read_config(file))
    for folder in reversed(folders):  # the project folder ends up first
        importable(folder)
    return folders


def importable(folder: str | os.PathLike[str]) -> None:
    """Put ``folder`` on ``sys.path`` (once), so the modules in it import by name.

    The one place the package edits ``sys.path``.
    """
    text = str(folder)
    if text not in sys.path:
        sys.path.insert(0, text)
