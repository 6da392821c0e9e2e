"""The catalog of code-defined flows: the one place flow code is found, loaded and reloaded
(the ``adf`` command line, the heartbeat engine, Celery workers and the web engine all find
flow classes here).

Code-defined flows are :class:`~active_data_flow.DataFlow` subclasses in the application's
modules (the seed's ``app/data_flows`` folder). A process learns them by loading a module, a
package, a folder or a file (:func:`load_flows`), by decorating them (:func:`register_flow`),
or, when it has loaded nothing, from ``ADF_FLOWS`` (module names or folders, separated by
commas), else ``./app/data_flows`` or ``./data_flows`` if present. At run time a stored code
flow is found **by its name** among the loaded flows, never by an import path kept in the
store.

Flow code changes while workers run: :meth:`FlowCatalog.get` reloads a module whose file
changed (and picks up new files in the folders it loaded), so a running ``adf worker``,
``adf serve`` or Celery worker runs the new code without a restart (the engine refuses to run
a stored spec against code that describes the flow differently).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import pkgutil
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import cast

from active_data_flow.errors import ConfigurationError
from active_data_flow.flow import DataFlow
from active_data_flow.project import importable, make_importable

__all__ = [
    "DEFAULT_FOLDERS",
    "FlowCatalog",
    "FlowTarget",
    "LoadResult",
    "catalog",
    "import_flow_class",
    "load_flows",
    "register_flow",
]

log = logging.getLogger(__name__)

#: What :func:`load_flows` accepts: a module name, a folder or file path, a module object,
#: or DataFlow classes.
FlowTarget = str | os.PathLike[str] | ModuleType | type[DataFlow] | Iterable[type[DataFlow]]

DEFAULT_FOLDERS = ("app/data_flows", "data_flows")


@dataclass(slots=True)
class LoadResult:
    """What loading flows found.

    Attributes:
        flows: flow name -> class, for every flow found.
        errors: module, file or flow -> why it could not be loaded.
    """

    flows: dict[str, type[DataFlow]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Module:
    """A module the catalog imported, to reload when its file changes."""

    module: ModuleType
    path: Path | None
    mtime: float | None
    flows: set[str] = field(default_factory=set)


class FlowCatalog:
    """The code-defined flows this process knows, by name (thread-safe).

    Loading happens under the catalog's lock: a thread that asks for a flow while another
    imports the application's modules waits for the import, it never sees a half-loaded
    catalog.
    """

    def __init__(self) -> None:
        self._flows: dict[str, type[DataFlow]] = {}
        self._errors: dict[str, str] = {}
        self._modules: dict[str, _Module] = {}
        self._folders: set[Path] = set()
        self._defaults_tried = False
        self._lock = threading.RLock()

    # -- registering and loading ---------------------------------------------------------
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

    def load(self, *targets: FlowTarget, quiet: bool = False) -> LoadResult:
        """Import flows from modules, packages, folders, files or classes, and register them.

        A module that fails to import is reported in ``errors`` (and remembered, so that the
        records of the flows it defined can say why they are missing); the others still load.
        Each failure is also logged as a warning, unless ``quiet`` (the caller reports
        ``errors`` itself, as ``adf sync`` does).
        """
        result = LoadResult()
        with self._lock:
            for target in targets:
                for where, module, found in self._discover(target, result.errors, quiet):
                    self._add(where, module, found, result)
            self._errors.update(result.errors)
        return result

    def _add(self, where: str, module: ModuleType | None, found: list[type[DataFlow]],
             result: LoadResult) -> None:
        names = set()
        for flow_class in found:
            try:
                self.register(flow_class)
            except ConfigurationError as exc:
                result.errors[flow_class.name] = str(exc)
                continue
            result.flows[flow_class.name] = flow_class
            names.add(flow_class.name)
        self._errors.pop(where, None)
        if module is not None:
            self._track(module, names)

    def load_defaults(self, *, quiet: bool = False) -> LoadResult:
        """Load ``ADF_FLOWS`` (or a default folder) once; later calls do nothing. The
        project folder is made importable first (see :mod:`active_data_flow.project`)."""
        with self._lock:
            if self._defaults_tried:
                return LoadResult()
            self._defaults_tried = True
            problem = None
            try:
                make_importable()  # the project folder (adf.toml's) and its pythonpath
            except ConfigurationError as exc:
                problem = str(exc)
            targets = default_targets()
            result = self.load(*targets, quiet=quiet) if targets else LoadResult()
            if problem is not None:
                result.errors["adf.toml"] = self._errors["adf.toml"] = problem
            return result

    # -- looking up ------------------------------------------------------------------------
    def get(self, name: str) -> type[DataFlow] | None:
        """The flow class named ``name``, from code as it is now on disk.

        Loads ``ADF_FLOWS`` first if nothing was loaded; reloads modules whose files changed
        (one ``stat`` per loaded module) and, when ``name`` is unknown, looks for new files in
        the folders loaded so far.
        """
        with self._lock:
            self.load_defaults()
            self.refresh()
            found = self._flows.get(name)
            if found is None:
                self.refresh(new_files=True)
                found = self._flows.get(name)
            return found

    def refresh(self, *, new_files: bool = False) -> list[str]:
        """Reload the modules whose files changed (and, with ``new_files``, load the new
        files of the folders loaded so far); return the names of the flows that changed or
        appeared."""
        with self._lock:
            changed: list[str] = []
            for name, entry in list(self._modules.items()):
                if entry.path is not None and _mtime(entry.path) != entry.mtime:
                    changed.extend(self._reload(name, entry))
            for folder in list(self._folders) if new_files else ():
                for file in _flow_files(folder):
                    if not any(m.path == file.resolve() for m in self._modules.values()):
                        changed.extend(self.load(file).flows)
            return changed

    def _reload(self, name: str, entry: _Module) -> list[str]:
        result = LoadResult()
        for gone in entry.flows:
            self._flows.pop(gone, None)
        try:
            module = _reload_module(entry)
        except Exception as exc:  # the new code is broken: say so on the flows it defined
            self._errors[name] = _describe(exc, name)
            entry.mtime = _mtime(entry.path) if entry.path else None
            log.warning("cannot reload flows from %s: %s", name, self._errors[name],
                        extra={"action": "flow_reload_failed"})
            return []
        log.info("reloaded flows from %s (its file changed)", name,
                 extra={"action": "flow_reloaded"})
        self._add(name, module, _flows_in(module), result)
        self._errors.update(result.errors)
        return list(result.flows)

    def _track(self, module: ModuleType, names: set[str]) -> None:
        path = _module_file(module)
        entry = self._modules.get(module.__name__)
        if entry is None or entry.module is not module:
            entry = self._modules[module.__name__] = _Module(
                module, path, _mtime(path) if path else None)
        entry.flows |= names
        entry.mtime = _mtime(path) if path else None

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
        """Forget every flow, module and error (for tests)."""
        with self._lock:
            self._flows.clear()
            self._errors.clear()
            self._modules.clear()
            self._folders.clear()
            self._defaults_tried = False

    # -- discovery -----------------------------------------------------------------------
    def _discover(
        self, target: FlowTarget, errors: dict[str, str], quiet: bool = False
    ) -> Iterator[tuple[str, ModuleType | None, list[type[DataFlow]]]]:
        """Yield (where, module, flow classes defined there) for what ``target`` covers."""
        if isinstance(target, type):
            yield _qualname(target), None, [target]
        elif isinstance(target, ModuleType):
            yield from _from_module(target, errors, quiet)
        elif isinstance(target, (str, os.PathLike)):
            text = os.fspath(target)
            if text.endswith(".py") or os.sep in text or "/" in text or Path(text).is_dir():
                path = Path(text)
                if path.is_dir():
                    self._folders.add(path.resolve())
                yield from _from_path(path, errors, quiet)
            else:
                module = _import(text, text, errors, quiet=quiet)
                if module is not None:
                    yield from _from_module(module, errors, quiet)
        else:
            for item in cast("Iterable[type[DataFlow]]", target):
                yield from self._discover(item, errors, quiet)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe(exc: BaseException, module: str | None = None) -> str:
    """Why module ``module`` failed to load, on one line: where in the file (the line, and
    the flow class whose body raised) and the error (a configuration error's own message,
    which names the option; else ``Type: message``)."""
    text = str(exc) if isinstance(exc, ConfigurationError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    if isinstance(exc, SyntaxError):
        return f"{text} (line {exc.lineno})" if exc.lineno else text
    if isinstance(exc, ModuleNotFoundError) and exc.name and module and not (
            module == exc.name or module.startswith(exc.name + ".")):
        text += " (is it installed, or its folder listed in adf.toml's pythonpath?)"
    where = _raised_at(exc, module) if module else None
    return f"{where}: {text}" if where else text


def _raised_at(exc: BaseException, module: str) -> str | None:
    """``line 6, flow Orders``: the innermost line of ``module`` the error passed through,
    and the class whose body was executing there (a class body's code has no fast locals)."""
    line: int | None = None
    owner: str | None = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_globals.get("__name__") == module:
            code = frame.f_code
            line = tb.tb_lineno
            in_class = code.co_name != "<module>" and not code.co_flags & inspect.CO_NEWLOCALS
            owner = code.co_name if in_class else None
        tb = tb.tb_next
    if line is None:
        return None
    return f"line {line}, flow {owner}" if owner else f"line {line}"


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _module_file(module: ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def _flow_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def default_targets() -> list[str]:
    """``ADF_FLOWS`` split on commas, else the first default folder that exists."""
    env = os.environ.get("ADF_FLOWS", "").strip()
    if env:
        return [t.strip() for t in env.replace(os.pathsep, ",").split(",") if t.strip()]
    return [f for f in DEFAULT_FOLDERS if Path(f).is_dir()][:1]


def _from_module(
    module: ModuleType, errors: dict[str, str], quiet: bool = False
) -> Iterator[tuple[str, ModuleType | None, list[type[DataFlow]]]]:
    yield module.__name__, module, _flows_in(module)
    if hasattr(module, "__path__"):  # a package: its submodules too
        for info in pkgutil.walk_packages(module.__path__, module.__name__ + "."):
            sub = _import(info.name, info.name, errors, quiet=quiet)
            if sub is not None:
                yield sub.__name__, sub, _flows_in(sub)


def _from_path(
    path: Path, errors: dict[str, str], quiet: bool = False
) -> Iterator[tuple[str, ModuleType | None, list[type[DataFlow]]]]:
    if not path.exists():
        errors[str(path)] = "no such file or folder"
        return
    files, folder = ([path], path.parent) if path.is_file() else (_flow_files(path), path)
    if (folder / "__init__.py").is_file():
        # A package folder: import it by its dotted name so relative imports work.
        importable(folder.resolve().parent)
        package = folder.resolve().name
        names = [(f"{package}.{file.stem}", file) for file in files]
    else:
        importable(folder.resolve())  # sibling modules can import each other by name
        names = [(_free_name(file), file) for file in files]
    for name, file in names:
        module = _import(name, str(file), errors, quiet=quiet, path=file)
        if module is not None:
            yield str(file), module, _flows_in(module)


def _free_name(file: Path) -> str:
    """The module name a flow file is imported under: its stem, unless another module holds
    that name already (a flow file called ``copy.py`` must not resolve to the standard
    library's ``copy``)."""
    taken = sys.modules.get(file.stem)
    if taken is None or _module_file(taken) == file.resolve():
        return file.stem
    return f"adf_flows_{file.stem}"


def _import(name: str, where: str, errors: dict[str, str], *, quiet: bool = False,
            path: Path | None = None) -> ModuleType | None:
    try:
        if path is None or name == path.stem:
            return importlib.import_module(name)
        return _import_file(name, path)
    except Exception as exc:  # SyntaxError, ImportError, or anything the module raises
        errors[where] = _describe(exc, name)
        if not quiet:
            log.warning("cannot load flows from %s: %s", where, errors[where],
                        extra={"action": "flow_load_failed"})
        return None


def _import_file(name: str, path: Path) -> ModuleType:
    found = sys.modules.get(name)
    if found is not None:
        return found
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _reload_module(entry: _Module) -> ModuleType:
    """Import a module again from its file (a flow file imported under a name of its own,
    see :func:`_free_name`, cannot be found by name: it is loaded from its path again)."""
    name = entry.module.__name__
    if entry.path is None or name == entry.path.stem or "." in name:
        return importlib.reload(entry.module)
    sys.modules.pop(name, None)
    return _import_file(name, entry.path)


def _flows_in(module: ModuleType) -> list[type[DataFlow]]:
    """DataFlow subclasses defined in ``module`` (not imported into it) that have a source."""
    return [value for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, DataFlow)
            and value is not DataFlow and value.__module__ == module.__name__
            and value.source is not None]


def import_flow_class(target: str) -> type[DataFlow]:
    """The DataFlow subclass ``target`` names: ``module:Class`` or ``path/file.py:Class``.

    Raises:
        ConfigurationError: the module or file cannot be imported, has no such attribute,
            or the attribute is not a DataFlow subclass (``option`` is ``"target"``).
    """
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(
            f"expected MODULE:FlowClass or path/to/file.py:FlowClass, got {target!r}",
            option="target")
    errors: dict[str, str] = {}
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        path = Path(module_name)
        if not path.is_file():
            raise ConfigurationError(f"no such file: {module_name}", option="target")
        importable(path.resolve().parent)  # sibling modules can import each other by name
        module = _import(_free_name(path), module_name, errors, quiet=True, path=path)
        what = f"could not load {module_name}"
    else:
        importable(Path.cwd())  # like `python -m`: the working directory is importable
        module = _import(module_name, module_name, errors, quiet=True)
        what = f"cannot import module {module_name!r}"
    if module is None:
        raise ConfigurationError(f"{what}: {next(iter(errors.values()), '?')}",
                                 option="target")
    obj = getattr(module, attr, None)
    if obj is None:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}",
                                 option="target")
    if not (isinstance(obj, type) and issubclass(obj, DataFlow)):
        raise ConfigurationError(
            f"{target} is not a DataFlow subclass ({_kind_of(obj)}; a flow class derives "
            "from active_data_flow.DataFlow)", option="target")
    return obj


def _kind_of(obj: object) -> str:
    """What ``obj`` is, in words: ``it is a class``, ``it is a function``, ``it is a str``."""
    if isinstance(obj, type):
        return "it is another class"
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        return "it is a function"
    if inspect.ismodule(obj):
        return "it is a module"
    name = type(obj).__name__
    return f"it is {'an' if name[:1].lower() in 'aeiou' else 'a'} {name} object"


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
