"""Which flows exist: code-defined flows the application loaded, and JSON specs.

Code-defined flows are :class:`~active_data_flow.DataFlow` subclasses in the application's
modules (the seed's ``app/data_flows`` folder). A process learns them by loading a module, a
package or a folder (:func:`load_flows`), by decorating them (:func:`register_flow`), or,
when it has loaded nothing, from the ``ADF_FLOWS`` environment variable (module names or
folders, separated by commas), else ``./app/data_flows`` or ``./data_flows`` if present.
At run time a stored code flow is found **by its name** among the loaded flows, never by an
import path kept in the store.

A flow created from a JSON spec (:func:`definition_from_spec`) names its connectors and
runtime by registered type; it has no Python transform (messages pass through unchanged)
unless its ``transform`` names a loaded code flow, whose ``transform`` and hooks it borrows.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import pkgutil
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, cast

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from active_data_flow.connector import config_error
from active_data_flow.errors import ConfigurationError
from active_data_flow.flow import FLOW_NAME_PATTERN, DataFlow, OnError
from active_data_flow.registry import untrusted_specs
from active_data_flow.runtimes.heartbeat.records import FlowCodeError, FlowRecord
from active_data_flow.runtimes.heartbeat.schedule import Schedule, schedule_of

__all__ = [
    "FlowCatalog",
    "FlowDefinition",
    "FlowSpec",
    "FlowTarget",
    "LoadResult",
    "build_flow",
    "catalog",
    "definition_from_class",
    "definition_from_spec",
    "load_flows",
    "register_flow",
]

log = logging.getLogger(__name__)

#: What :func:`load_flows` and :meth:`FlowStore.sync` accept: a module name, a folder or file
#: path, a module object, or DataFlow classes.
FlowTarget = str | os.PathLike[str] | ModuleType | type[DataFlow] | Iterable[type[DataFlow]]

DEFAULT_FOLDERS = ("app/data_flows", "data_flows")

_DEFAULT_RUNTIME: dict[str, Any] = {"type": "heartbeat", "config": {}}


# -- definitions -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FlowDefinition:
    """A flow reduced to what the store records (validated, JSON-safe)."""

    name: str
    origin: Literal["code", "spec"]
    source: dict[str, Any]
    sinks: list[dict[str, Any]]
    runtime: dict[str, Any]
    dead_letter_sink: dict[str, Any] | None = None
    on_error: str = "fail"
    batch_size: int | None = None
    triggers: list[str] = field(default_factory=list)
    transform: str | None = None

    @property
    def schedule(self) -> Schedule | None:
        """When the flow runs by itself (``None``: only when triggered)."""
        return schedule_of(self.runtime)

    def spec_hash(self) -> str:
        """A digest of everything stored, to tell an updated definition from an unchanged one."""
        text = json.dumps(asdict(self), sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


class FlowSpec(BaseModel):
    """The JSON form of a flow, as the web API and :meth:`FlowStore.create_flow` take it.

    ``sink`` (one) or ``sinks`` (a list); ``runtime`` defaults to an on-demand heartbeat
    runtime (``{"type": "heartbeat"}``; give ``config.interval`` to schedule it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=FLOW_NAME_PATTERN)
    source: dict[str, Any]
    sink: dict[str, Any] | None = None
    sinks: list[dict[str, Any]] | None = None
    runtime: dict[str, Any] | None = None
    on_error: OnError = "fail"
    dead_letter_sink: dict[str, Any] | None = None
    batch_size: int | None = Field(default=None, ge=1, le=1_000_000)
    triggers: list[str] = Field(default_factory=list)
    transform: str | None = None


def definition_from_spec(spec: Mapping[str, Any]) -> FlowDefinition:
    """Validate a JSON spec and reduce it to a definition.

    Every connector and the runtime are built once, inside
    :func:`~active_data_flow.registry.untrusted_specs`, so an unknown type or a bad option is
    caught here, before anything is stored.

    Raises:
        ConfigurationError: naming the field or option at fault.
    """
    if not isinstance(spec, Mapping):
        raise ConfigurationError(
            f"a flow spec must be a JSON object, got {type(spec).__name__}", option="spec"
        )
    try:
        parsed = FlowSpec(**spec)
    except pydantic.ValidationError as exc:
        name = spec.get("name")
        raise config_error(exc, f"flow {name!r}" if isinstance(name, str) else "flow spec",
                           FlowSpec) from None
    if parsed.sink is not None and parsed.sinks is not None:
        raise ConfigurationError(f"flow {parsed.name!r} sets both 'sink' and 'sinks'; set one",
                                 option="sinks")
    sinks = parsed.sinks if parsed.sinks is not None else (
        [parsed.sink] if parsed.sink is not None else [])
    definition = FlowDefinition(
        name=parsed.name, origin="spec", source=dict(parsed.source),
        sinks=[dict(s) for s in sinks], runtime=dict(parsed.runtime or _DEFAULT_RUNTIME),
        dead_letter_sink=parsed.dead_letter_sink, on_error=parsed.on_error,
        batch_size=parsed.batch_size, triggers=list(parsed.triggers), transform=parsed.transform,
    )
    base = _transform_base(definition)
    with untrusted_specs():
        _validated(lambda: _spec_flow_class(definition, base)(), definition.name)
    _validated(lambda: definition.schedule, definition.name)
    return _normalised(definition)


def definition_from_class(flow_class: type[DataFlow]) -> FlowDefinition:
    """Reduce a code-defined flow to a definition (its specs as ``DataFlow.to_spec()`` gives).

    Raises:
        ConfigurationError: the class is misdefined.
    """
    spec = _validated(flow_class.to_spec, flow_class.name)
    definition = FlowDefinition(
        name=spec["name"], origin="code", source=spec["source"], sinks=spec["sinks"],
        runtime=spec["runtime"], dead_letter_sink=spec.get("dead_letter_sink"),
        on_error=spec["on_error"], batch_size=spec.get("batch_size"),
        triggers=list(spec.get("triggers", ())),
    )
    _validated(lambda: definition.schedule, definition.name)
    return definition


def _normalised(definition: FlowDefinition) -> FlowDefinition:
    """The definition with its runtime spec as the runtime itself renders it."""
    from active_data_flow.runtime import Runtime

    with untrusted_specs():
        runtime = Runtime.from_dict(definition.runtime).to_dict()
    return FlowDefinition(**{**asdict(definition), "runtime": runtime})


def _validated(build: Any, name: str) -> Any:
    try:
        return build()
    except ConfigurationError as exc:
        message = str(exc)
        prefix = f"flow {name!r}"
        raise ConfigurationError(
            message if message.startswith(prefix) else f"{prefix}: {message}", option=exc.option
        ) from exc


def _transform_base(definition: FlowDefinition) -> type[DataFlow]:
    if definition.transform is None:
        return DataFlow
    found = catalog.get(definition.transform)
    if found is None:
        raise ConfigurationError(
            f"flow {definition.name!r}: 'transform' names {definition.transform!r}, which is "
            f"not a loaded code flow (loaded: {', '.join(catalog.names()) or 'none'})",
            option="transform",
        )
    return found


def _spec_flow_class(definition: FlowDefinition, base: type[DataFlow]) -> type[DataFlow]:
    attrs: dict[str, Any] = {
        "__module__": __name__,
        "__doc__": f"Flow {definition.name!r}, built from its stored spec.",
        "name": definition.name,
        "source": definition.source,
        "sink": None,
        "sinks": list(definition.sinks),
        "runtime": definition.runtime,
        "on_error": definition.on_error,
        "dead_letter_sink": definition.dead_letter_sink,
        "batch_size": definition.batch_size,
        "triggers": tuple(definition.triggers),
    }
    return type(f"StoredFlow[{definition.name}]", (base,), attrs)


def build_flow(record: FlowRecord) -> DataFlow:
    """The runnable flow for a stored record.

    A code flow is the loaded class of that name; a spec flow is built from its specs (inside
    ``untrusted_specs()``), on top of the code flow its ``transform`` names, if any.

    Raises:
        FlowCodeError: the code the flow needs is not loaded, or fails to build.
        ConfigurationError: a stored spec no longer validates (a connector plugin went away).
    """
    if record.origin == "code":
        flow_class = catalog.get(record.name)
        if flow_class is None:
            raise FlowCodeError(catalog.missing_message(record.name), option="name")
        try:
            return flow_class()
        except ConfigurationError:
            raise
        except Exception as exc:
            raise FlowCodeError(
                f"flow {record.name!r} cannot be built: {type(exc).__name__}: {exc}"
            ) from exc
    base: type[DataFlow] = DataFlow
    if record.transform is not None:
        found = catalog.get(record.transform)
        if found is None:
            raise FlowCodeError(catalog.missing_message(record.transform, record.name),
                                option="transform")
        base = found
    definition = FlowDefinition(
        name=record.name, origin="spec", source=record.source, sinks=record.sinks,
        runtime=record.runtime, dead_letter_sink=record.dead_letter_sink,
        on_error=record.on_error, batch_size=record.batch_size, triggers=record.triggers,
        transform=record.transform,
    )
    with untrusted_specs():
        return _spec_flow_class(definition, base)()


# -- the catalog of code-defined flows -------------------------------------------------
@dataclass(slots=True)
class LoadResult:
    """What loading flows found.

    Attributes:
        flows: flow name -> class, for every flow found.
        errors: module, file or flow -> why it could not be loaded.
    """

    flows: dict[str, type[DataFlow]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class FlowCatalog:
    """The code-defined flows this process knows, by name (thread-safe)."""

    def __init__(self) -> None:
        self._flows: dict[str, type[DataFlow]] = {}
        self._errors: dict[str, str] = {}
        self._defaults_tried = False
        self._lock = threading.RLock()

    def register(self, flow_class: type[DataFlow]) -> type[DataFlow]:
        """Add a flow class; a different class already holding the name is an error."""
        if not (isinstance(flow_class, type) and issubclass(flow_class, DataFlow)):
            raise ConfigurationError(f"{flow_class!r} is not a DataFlow subclass", option="flow")
        with self._lock:
            existing = self._flows.get(flow_class.name)
            if existing is not None and _qualname(existing) != _qualname(flow_class):
                raise ConfigurationError(
                    f"flow name {flow_class.name!r} is defined twice: by {_qualname(existing)} "
                    f"and by {_qualname(flow_class)}",
                    option="name",
                )
            self._flows[flow_class.name] = flow_class
        return flow_class

    def load(self, *targets: FlowTarget) -> LoadResult:
        """Import flows from modules, packages, folders, files or classes, and register them.

        A module that fails to import is reported in ``errors`` (and remembered, so that the
        records of the flows it defined can say why they are missing); the others still load.
        """
        result = LoadResult()
        for target in targets:
            for where, found in _discover(target, result.errors):
                for flow_class in found:
                    try:
                        self.register(flow_class)
                    except ConfigurationError as exc:
                        result.errors[flow_class.name] = str(exc)
                        continue
                    result.flows[flow_class.name] = flow_class
                with self._lock:
                    self._errors.pop(where, None)
        with self._lock:
            self._errors.update(result.errors)
        return result

    def load_defaults(self) -> LoadResult:
        """Load ``ADF_FLOWS`` (or a default folder) once; later calls do nothing."""
        with self._lock:
            if self._defaults_tried:
                return LoadResult()
            self._defaults_tried = True
        targets = default_targets()
        return self.load(*targets) if targets else LoadResult()

    def get(self, name: str) -> type[DataFlow] | None:
        """The flow class named ``name`` (loading ``ADF_FLOWS`` first if it is not known)."""
        with self._lock:
            found = self._flows.get(name)
        if found is None:
            self.load_defaults()
            with self._lock:
                found = self._flows.get(name)
        return found

    def names(self) -> list[str]:
        """Names of the loaded flows."""
        with self._lock:
            return sorted(self._flows)

    def classes(self) -> list[type[DataFlow]]:
        """The loaded flow classes, by name."""
        with self._lock:
            return [self._flows[n] for n in sorted(self._flows)]

    @property
    def errors(self) -> dict[str, str]:
        """Modules (or flows) that failed to load, with the reason."""
        with self._lock:
            return dict(self._errors)

    def missing_message(self, name: str, wanted_by: str | None = None) -> str:
        """Why flow ``name`` is not available, for its record and its failed run."""
        who = f"flow {wanted_by!r} uses the transform of code flow {name!r}, which" if (
            wanted_by) else f"flow {name!r} is defined in code, but it"
        errors = self.errors
        if errors:
            broken = "; ".join(f"{k}: {v}" for k, v in sorted(errors.items()))
            return f"{who} is not defined by any loaded module; failed to load: {broken}"
        where = os.environ.get("ADF_FLOWS") or ", ".join(DEFAULT_FOLDERS)
        return (f"{who} is not defined by any loaded module (looked in: {where}); "
                "was it renamed or deleted? Run `adf sync` to update the store")

    def clear(self) -> None:
        """Forget every flow and error (for tests)."""
        with self._lock:
            self._flows.clear()
            self._errors.clear()
            self._defaults_tried = False


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def default_targets() -> list[str]:
    """``ADF_FLOWS`` split on commas, else the first default folder that exists."""
    env = os.environ.get("ADF_FLOWS", "").strip()
    if env:
        return [t.strip() for t in env.replace(os.pathsep, ",").split(",") if t.strip()]
    return [f for f in DEFAULT_FOLDERS if Path(f).is_dir()][:1]


def _discover(
    target: FlowTarget, errors: dict[str, str]
) -> Iterable[tuple[str, list[type[DataFlow]]]]:
    """Yield (where, flow classes defined there) for every module ``target`` covers."""
    if isinstance(target, type):
        yield _qualname(target), [target]
        return
    if isinstance(target, ModuleType):
        yield from _from_module(target, errors)
        return
    if isinstance(target, (str, os.PathLike)):
        text = os.fspath(target)
        if text.endswith(".py") or os.sep in text or "/" in text or Path(text).is_dir():
            yield from _from_path(Path(text), errors)
        else:
            module = _import(text, text, errors)
            if module is not None:
                yield from _from_module(module, errors)
        return
    for item in cast("Iterable[type[DataFlow]]", target):
        yield from _discover(item, errors)


def _from_module(
    module: ModuleType, errors: dict[str, str]
) -> Iterable[tuple[str, list[type[DataFlow]]]]:
    yield module.__name__, _flows_in(module)
    if hasattr(module, "__path__"):  # a package: its submodules too
        for info in pkgutil.walk_packages(module.__path__, module.__name__ + "."):
            sub = _import(info.name, info.name, errors)
            if sub is not None:
                yield sub.__name__, _flows_in(sub)


def _from_path(
    path: Path, errors: dict[str, str]
) -> Iterable[tuple[str, list[type[DataFlow]]]]:
    if not path.exists():
        errors[str(path)] = "no such file or folder"
        return
    if path.is_file():
        files, folder = [path], path.parent
    else:
        files = sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        folder = path
    if (folder / "__init__.py").is_file():
        # A package folder: import it by its dotted name so relative imports work.
        root = folder.resolve().parent
        _on_path(root)
        package = folder.resolve().name
        for file in files:
            module = _import(f"{package}.{file.stem}", str(file), errors)
            if module is not None:
                yield str(file), _flows_in(module)
        return
    _on_path(folder.resolve())  # sibling modules can import each other by name
    for file in files:
        module = _import(file.stem, str(file), errors)
        if module is not None:
            yield str(file), _flows_in(module)


def _on_path(folder: Path) -> None:
    text = str(folder)
    if text not in sys.path:
        sys.path.insert(0, text)


def _import(name: str, where: str, errors: dict[str, str]) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except Exception as exc:  # SyntaxError, ImportError, or anything the module raises
        location = ""
        if isinstance(exc, SyntaxError) and exc.lineno:
            location = f" (line {exc.lineno})"
        errors[where] = f"{type(exc).__name__}: {exc}{location}"
        log.warning("cannot load flows from %s: %s: %s", where, type(exc).__name__, exc,
                    extra={"action": "flow_load_failed"})
        return None


def _flows_in(module: ModuleType) -> list[type[DataFlow]]:
    """DataFlow subclasses defined in ``module`` (not imported into it) that have a source."""
    found = []
    for value in vars(module).values():
        if (isinstance(value, type) and issubclass(value, DataFlow) and value is not DataFlow
                and value.__module__ == module.__name__ and value.source is not None):
            found.append(value)
    return found


#: The process-wide catalog of code-defined flows.
catalog = FlowCatalog()


def load_flows(*targets: FlowTarget) -> LoadResult:
    """Load code-defined flows into the process-wide catalog (see :class:`FlowCatalog`).

    Example:
        >>> load_flows("app/data_flows")          # doctest: +SKIP
        >>> load_flows("myapp.flows", MyOtherFlow)  # doctest: +SKIP
    """
    return catalog.load(*targets)


def register_flow(flow_class: type[DataFlow]) -> type[DataFlow]:
    """Class decorator: make a flow known to this process's heartbeats by its name."""
    return catalog.register(flow_class)
