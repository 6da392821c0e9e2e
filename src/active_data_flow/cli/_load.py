"""Import a flow class from ``module:Class`` or ``path/to/file.py:Class``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import click

from active_data_flow.flow import DataFlow

__all__ = ["BadTarget", "import_flow"]


class BadTarget(click.ClickException):
    """The flow reference cannot be imported; the message says why, on one line."""

    exit_code = 2


def import_flow(target: str) -> type[DataFlow]:
    """The DataFlow subclass that ``target`` (``module:Class`` or ``file.py:Class``) names."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise BadTarget(f"expected MODULE:FlowClass or path/to/file.py:FlowClass, got {target!r}")
    module = _import(module_name)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise BadTarget(f"module {module_name!r} has no attribute {attr!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, DataFlow)):
        raise BadTarget(f"{target!r} is a {type(obj).__name__}, not a DataFlow subclass")
    return obj


def _import(name: str) -> object:
    if name.endswith(".py") or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise BadTarget(f"no such file: {name}")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise BadTarget(f"cannot load {name} as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        sys.path.insert(0, str(path.parent.resolve()))
        try:
            spec.loader.exec_module(module)
        except ImportError as exc:
            raise BadTarget(f"importing {name} failed: {exc}") from None
        return module
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the working directory is importable
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise BadTarget(f"cannot import module {name!r}: {exc}") from None
    except ImportError as exc:
        raise BadTarget(f"importing {name!r} failed: {exc}") from None
