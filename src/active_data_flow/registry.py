"""Type-name registries for connectors and runtimes, fed by entry points.

A stored spec names its class by a short type name (``{"type": "jsonl", ...}``), never by an
import path. Names resolve through two registries:

* classes registered in this process with :func:`register_connector` /
  :func:`register_runtime` (both also work as class decorators);
* the entry-point groups ``active_data_flow.connectors`` and ``active_data_flow.runtimes``,
  which the built-in integrations and third-party plugins use. An entry point's object is
  a module (importing it registers its classes) or a class. Entry points are loaded lazily,
  only when their name is first looked up, and once.

A connector type name may stand for a source, a sink or both (``jsonl`` is both), so connector
lookups name the role.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar, cast, overload

from active_data_flow.errors import (
    AlreadyRegistered,
    ConfigurationError,
    ConnectorNotFound,
    RuntimeNotFound,
)

if TYPE_CHECKING:
    from active_data_flow.connector import Connector
    from active_data_flow.runtime import Runtime

__all__ = [
    "CONNECTOR_GROUP",
    "RUNTIME_GROUP",
    "Role",
    "allow_file_roots",
    "allow_untrusted_connectors",
    "available_connectors",
    "available_runtimes",
    "check_file_path",
    "connector_class",
    "file_roots",
    "register_connector",
    "register_runtime",
    "runtime_class",
    "specs_trusted",
    "untrusted_allowed",
    "untrusted_specs",
]

log = logging.getLogger(__name__)

CONNECTOR_GROUP = "active_data_flow.connectors"
RUNTIME_GROUP = "active_data_flow.runtimes"
COMMAND_GROUP = "active_data_flow.commands"

Role = Literal["source", "sink"]

_connectors: dict[tuple[Role, str], type[Connector]] = {}
_runtimes: dict[str, type[Runtime]] = {}
_loaded: set[tuple[str, str]] = set()
_lock = threading.RLock()

_trusted: ContextVar[bool] = ContextVar("active_data_flow_specs_trusted", default=True)


@contextmanager
def untrusted_specs() -> Iterator[None]:
    """Build connectors from specs that came from outside the application's code.

    Inside this block, connectors must not import arbitrary code named by their options:
    the SQLAlchemy connectors, for instance, accept only models the application registered.
    The flow store and the web API wrap every spec they build in it.
    """
    token = _trusted.set(False)
    try:
        yield
    finally:
        _trusted.reset(token)


def specs_trusted() -> bool:
    """False inside :func:`untrusted_specs`: options may only name registered things."""
    return _trusted.get()


_file_roots: list[Path] = []
_untrusted_allowed: set[str] = set()


def allow_untrusted_connectors(*type_names: str) -> None:
    """Let specs from outside the application use connector types not marked safe for them
    (``untrusted_ok``), such as ``memory`` in a demo or a test suite. Also read from
    ``ADF_UNTRUSTED_CONNECTORS`` (comma-separated type names)."""
    with _lock:
        _untrusted_allowed.update(type_names)


def untrusted_allowed(type_name: str) -> bool:
    """Whether the application allowed ``type_name`` in untrusted specs although the
    connector is not marked ``untrusted_ok`` (see :func:`allow_untrusted_connectors`)."""
    env = os.environ.get("ADF_UNTRUSTED_CONNECTORS", "")
    return type_name in _untrusted_allowed or type_name in {
        n.strip() for n in env.split(",") if n.strip()}


def allow_file_roots(*roots: str | os.PathLike[str]) -> None:
    """Let specs from outside the application read and write files under ``roots``.

    A flow created through the web API names its files itself, so file connectors built
    inside :func:`untrusted_specs` accept only paths that resolve (symbolic links and
    ``..`` followed) inside an allowed root. Roots come from this function and from
    ``ADF_FILE_ROOTS`` (separated by commas or the OS path separator); when neither names
    any, the only root is the folder ``data`` in the working directory.
    """
    with _lock:
        _file_roots.extend(Path(r).resolve() for r in roots)


def file_roots() -> list[Path]:
    """The folders untrusted specs may name files in (see :func:`allow_file_roots`)."""
    env = os.environ.get("ADF_FILE_ROOTS", "").replace(os.pathsep, ",")
    roots = [*_file_roots, *(Path(r.strip()).resolve() for r in env.split(",") if r.strip())]
    return roots or [(Path.cwd() / "data").resolve()]


def check_file_path(path: Path, what: str) -> Path:
    """``path`` itself when specs are trusted or it lies inside an allowed root.

    Raises:
        ConfigurationError: an untrusted spec names a file outside every allowed root.
    """
    if specs_trusted():
        return path
    resolved = path.resolve() if path.is_absolute() else (Path.cwd() / path).resolve()
    roots = file_roots()
    if any(resolved.is_relative_to(root) for root in roots):
        return path
    raise ConfigurationError(
        f"{what}: path {str(path)!r} is outside the folders flows from the store or the web "
        f"may use ({', '.join(str(r) for r in roots)}); allow more with ADF_FILE_ROOTS",
        option="path",
    )


C = TypeVar("C", bound="type[Connector]")
R = TypeVar("R", bound="type[Runtime]")


@overload
def register_connector(cls: C, name: str | None = None) -> C: ...
@overload
def register_connector(cls: str | None = None) -> Callable[[C], C]: ...


def register_connector(cls: C | str | None = None, name: str | None = None) -> C | Callable[[C], C]:
    """Register a Source or Sink subclass under a type name.

    Use as a function (``register_connector(MySink, "mine")``) or a decorator
    (``@register_connector("mine")`` or bare ``@register_connector``, which uses the class's
    ``type_name``). Returns the class.

    Raises:
        AlreadyRegistered: another class holds that name for the same role.
    """
    if cls is None or isinstance(cls, str):
        decorator_name = cls

        def decorate(klass: C) -> C:
            return register_connector(klass, decorator_name)

        return decorate
    type_name = _type_name(cls, name)
    role = cls.role
    with _lock:
        existing = _connectors.get((role, type_name))
        if existing is not None and existing is not cls:
            raise AlreadyRegistered(
                f"{role} type {type_name!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        _connectors[(role, type_name)] = cls
    return cls


@overload
def register_runtime(cls: R, name: str | None = None) -> R: ...
@overload
def register_runtime(cls: str | None = None) -> Callable[[R], R]: ...


def register_runtime(cls: R | str | None = None, name: str | None = None) -> R | Callable[[R], R]:
    """Register a Runtime subclass under a type name; like :func:`register_connector`."""
    if cls is None or isinstance(cls, str):
        decorator_name = cls

        def decorate(klass: R) -> R:
            return register_runtime(klass, decorator_name)

        return decorate
    type_name = _type_name(cls, name)
    with _lock:
        existing = _runtimes.get(type_name)
        if existing is not None and existing is not cls:
            raise AlreadyRegistered(
                f"runtime type {type_name!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        _runtimes[type_name] = cls
    return cls


def _type_name(cls: type[Connector] | type[Runtime], name: str | None) -> str:
    type_name = name or cls.__dict__.get("type_name")
    if not type_name or not isinstance(type_name, str):
        raise ConfigurationError(
            f"{cls.__qualname__} has no type name: pass one or set `type_name`", option="type_name"
        )
    if name:  # the registered name is the class's name from now on (for to_dict)
        cls.type_name = name
    return type_name


def connector_class(type_name: str, role: Role) -> type[Connector]:
    """The class registered for ``type_name`` in ``role`` (``"source"`` or ``"sink"``).

    Raises:
        ConnectorNotFound: nothing is registered under that name, listing what is.
    """
    if not isinstance(type_name, str) or not type_name:
        raise ConnectorNotFound(f"connector type must be a non-empty string, got {type_name!r}")
    with _lock:
        found = _connectors.get((role, type_name))
        if found is None:
            _load_entry_point(CONNECTOR_GROUP, type_name)
            found = _connectors.get((role, type_name))
    if found is None:
        known = ", ".join(available_connectors(role)) or "none"
        other: Role = "sink" if role == "source" else "source"
        hint = f" (it is a {other} type)" if (other, type_name) in _connectors else ""
        raise ConnectorNotFound(
            f"unknown {role} type {type_name!r}{hint}; known {role} types: {known}", option="type"
        )
    return found


def runtime_class(type_name: str) -> type[Runtime]:
    """The runtime class registered for ``type_name``.

    Raises:
        RuntimeNotFound: nothing is registered under that name, listing what is.
    """
    if not isinstance(type_name, str) or not type_name:
        raise RuntimeNotFound(f"runtime type must be a non-empty string, got {type_name!r}")
    with _lock:
        found = _runtimes.get(type_name)
        if found is None:
            _load_entry_point(RUNTIME_GROUP, type_name)
            found = _runtimes.get(type_name)
    if found is None:
        known = ", ".join(available_runtimes()) or "none"
        raise RuntimeNotFound(
            f"unknown runtime type {type_name!r}; known runtime types: {known}", option="type"
        )
    return found


def available_connectors(role: Role | None = None) -> list[str]:
    """Type names of the usable connectors (for ``role``, when given).

    Loads every advertised entry point; one whose package fails to import is left out.
    """
    _load_all(CONNECTOR_GROUP)
    return sorted({n for (r, n) in _connectors if role is None or r == role})


def available_runtimes() -> list[str]:
    """Type names of the usable runtimes (entry points that fail to import are left out)."""
    _load_all(RUNTIME_GROUP)
    return sorted(_runtimes)


def _load_all(group: str) -> None:
    for ep in _entry_points(group):
        try:
            with _lock:
                _load_entry_point(group, ep.name)
        except ConfigurationError as exc:
            log.debug("entry point %s unavailable: %s", ep.name, exc)


def _entry_points(group: str) -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=group))


def _load_entry_point(group: str, name: str) -> None:
    """Import the entry point ``name`` of ``group`` once; it registers what it provides."""
    if (group, name) in _loaded:
        return
    _loaded.add((group, name))
    for ep in metadata.entry_points(group=group, name=name):
        try:
            obj = ep.load()
        except ImportError as exc:
            dist = ep.dist.name if ep.dist else "its package"
            raise ConfigurationError(
                f"{group.rsplit('.', 1)[-1][:-1]} type {name!r} is provided by {dist} "
                f"({ep.value}) but cannot be imported: {exc}. "
                f"Is its extra installed? e.g. pip install 'active-data-flow[{name}]'",
                option="type",
            ) from exc
        _register_loaded(group, name, obj)


def _register_loaded(group: str, name: str, obj: object) -> None:
    # A module registered its classes on import; a class is registered under the entry
    # point's name. Told apart by duck typing, so this module imports neither base class.
    if not isinstance(obj, type):
        return
    if group == CONNECTOR_GROUP and getattr(obj, "role", None) in ("source", "sink"):
        register_connector(cast("type[Connector]", obj), name)
    elif group == RUNTIME_GROUP and hasattr(obj, "runner") and hasattr(obj, "Config"):
        register_runtime(cast("type[Runtime]", obj), name)
    else:
        log.warning("entry point %s in %s is not a connector or runtime", name, group)
