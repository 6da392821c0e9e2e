"""Models: resolving the ``model`` option safely, and what the connectors need to know of one.

In application code ``model`` is a mapped class or an import string (``"pkg.mod:Model"`` or
``"pkg.mod.Model"``). Specs that arrive from outside the application (the flow store, the
web API: built inside :func:`active_data_flow.registry.untrusted_specs`) may only name
models the application registered with :func:`register_models`, by class name, registered
name or import string; nothing is imported for them.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapper, RelationshipProperty, registry

from active_data_flow.errors import ConfigurationError, did_you_mean

__all__ = ["ModelInfo", "import_string", "model_database", "register_models", "resolve_model"]

_lock = threading.RLock()
_classes: dict[type, str | None] = {}  # explicitly registered class -> its database
_registries: dict[registry, str | None] = {}  # declarative registries -> their database
_aliases: dict[str, type] = {}


def register_models(*models: Any, database: str | None = None, **named: type) -> None:
    """Allow models to be named by specs from the flow store or the web API.

    Args:
        *models: declarative bases (every model mapped by the base, now or later, is
            allowed), ``sqlalchemy.orm.registry`` objects, or mapped classes.
        database: the registered database these models live in, used by connectors that
            set no ``database`` of their own.
        **named: models to allow under another name, e.g. ``people=User``.

    Raises:
        ConfigurationError: something given is not a base, registry or mapped class.

    Example:
        >>> register_models(Base)                      # doctest: +SKIP
        >>> register_models(Order, database="shop")    # doctest: +SKIP
    """
    with _lock:
        for item in (*models, *named.values()):
            reg = _registry_of(item)
            if reg is not None:
                _registries[reg] = database
            elif _mapper_of(item) is not None:
                _classes[item] = database
            else:
                raise ConfigurationError(
                    f"register_models() takes declarative bases, registries or mapped classes, "
                    f"got {item!r}", option="model",
                )
        for alias, cls in named.items():
            _aliases[alias] = cls


def unregister_models() -> None:
    """Forget every registered model (for tests)."""
    with _lock:
        _classes.clear()
        _registries.clear()
        _aliases.clear()


def _registry_of(item: Any) -> registry | None:
    if isinstance(item, registry):
        return item
    reg = getattr(item, "registry", None)
    if isinstance(item, type) and isinstance(reg, registry) and _mapper_of(item) is None:
        return reg
    return None


def _mapper_of(item: Any) -> Mapper[Any] | None:
    if not isinstance(item, type):
        return None
    mapper: Any = sa.inspect(item, raiseerr=False)
    return mapper if isinstance(mapper, Mapper) else None


def import_string(cls: type) -> str:
    """``"pkg.mod:Qual.Name"``: how a spec names a model class."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _allowed() -> Iterator[type]:
    with _lock:
        yield from _classes
        for reg in _registries:
            for mapper in reg.mappers:
                yield mapper.class_


def _find_registered(name: str) -> type | None:
    with _lock:
        if name in _aliases:
            return _aliases[name]
    by_name: list[type] = []
    for cls in _allowed():
        full = f"{cls.__module__}.{cls.__qualname__}"
        if name in (import_string(cls), full):
            return cls
        if name == cls.__name__:
            by_name.append(cls)
    unique = list(dict.fromkeys(by_name))
    if len(unique) > 1:
        raise ConfigurationError(
            f"model {name!r} is ambiguous among the registered models: "
            f"{', '.join(import_string(c) for c in unique)}; use the import string",
            option="model",
        )
    return unique[0] if unique else None


def model_database(cls: type) -> str | None:
    """The database ``cls`` was registered with, if any."""
    with _lock:
        if cls in _classes and _classes[cls] is not None:
            return _classes[cls]
        mapper = _mapper_of(cls)
        if mapper is not None:
            return _registries.get(mapper.registry)
    return None


def resolve_model(value: Any, *, trusted: bool) -> type:
    """The mapped class a ``model`` option names.

    Raises:
        ValueError: the name cannot be resolved; the message says what was tried.
    """
    if isinstance(value, type):
        if _mapper_of(value) is None:
            raise ValueError(f"{value.__module__}.{value.__qualname__} is not a mapped "
                             "SQLAlchemy model (declare it on a DeclarativeBase)")
        return value
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a mapped class or an import string, got {value!r}")
    name = value.strip()
    try:
        found = _find_registered(name)
    except ConfigurationError as exc:
        raise ValueError(str(exc)) from None
    if found is not None:
        return found
    if not trusted:
        known = ", ".join(sorted(import_string(c) for c in set(_allowed()))) or "none"
        raise ValueError(
            f"{name!r} is not a registered model; specs from the flow store or the web API may "
            f"only name models registered with register_models() (registered: {known})"
        )
    obj = _import(name)
    if _mapper_of(obj) is None:
        raise ValueError(f"{name!r} resolves to {obj!r}, which is not a mapped SQLAlchemy model")
    return obj  # type: ignore[no-any-return]  # a mapped class, checked just above


def _import(name: str) -> Any:
    if ":" in name:
        module, _, attrs = name.partition(":")
        candidates = [(module, attrs)]
    else:
        parts = name.split(".")
        if len(parts) < 2:
            raise ValueError(
                f"{name!r} is not a registered model, and not an import string "
                "('pkg.module:Model' or 'pkg.module.Model')"
            )
        candidates = [
            (".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)
        ]
    tried: list[str] = []
    for module_name, attrs in candidates:
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A missing dependency *inside* an existing module is that module's bug: say so.
            missing = exc.name or ""
            if not (module_name == missing or module_name.startswith(missing + ".")):
                raise ValueError(f"importing module {module_name!r} failed: {exc}") from None
            tried.append(f"module {module_name!r} (not found)")
            continue
        except Exception as exc:
            raise ValueError(f"importing module {module_name!r} failed: "
                             f"{type(exc).__name__}: {exc}") from None
        try:
            for attr in attrs.split("."):
                owner = obj
                obj = getattr(obj, attr)
        except AttributeError:
            hint = did_you_mean(attr, [n for n in dir(owner) if not n.startswith("_")])
            tried.append(f"{attrs!r} in module {module_name!r} (no such attribute{hint})")
            continue
        return obj
    raise ValueError(f"cannot resolve model {name!r}: tried {'; '.join(tried)}")


# -- what the connectors need to know of a model --------------------------------------
@dataclass(frozen=True)
class ModelInfo:
    """A mapped class's table, columns (by attribute key) and keys."""

    cls: type
    mapper: Mapper[Any]
    table: sa.Table
    columns: dict[str, sa.Column[Any]]
    primary_key: tuple[str, ...]
    unique_keys: tuple[frozenset[str], ...]

    @classmethod
    def of(cls, model: type, what: str) -> ModelInfo:
        """Inspect ``model``.

        Raises:
            ConfigurationError: the model is not mapped to a plain table.
        """
        mapper: Mapper[Any] = sa.inspect(model)
        table = mapper.local_table
        if not isinstance(table, sa.Table):
            raise ConfigurationError(
                f"{what}: model {model.__qualname__} is mapped to {table!r}, not a table",
                option="model",
            )
        if mapper.inherits is not None:
            raise ConfigurationError(
                f"{what}: model {model.__qualname__} inherits from the mapped class "
                f"{mapper.inherits.class_.__qualname__}; mapper inheritance is not supported by "
                "the SQLAlchemy connectors: name a model mapped to its table without it",
                option="model",
            )
        columns: dict[str, sa.Column[Any]] = {}
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if isinstance(column, sa.Column) and column.table is table:
                columns[prop.key] = column
        by_column = {id(col): key for key, col in columns.items()}
        primary_key = tuple(by_column[id(c)] for c in mapper.primary_key if id(c) in by_column)
        return cls(model, mapper, table, columns, primary_key,
                   _unique_keys(table, by_column, primary_key))

    @property
    def name(self) -> str:
        """The model's class name, for messages."""
        return self.cls.__qualname__

    def check_columns(self, names: list[str], option: str, what: str) -> None:
        """Raise ``ConfigurationError`` naming ``option`` if a name is not a column key."""
        unknown = [n for n in names if n not in self.columns]
        if unknown:
            hint = did_you_mean(unknown[0], self.columns) if len(unknown) == 1 else ""
            raise ConfigurationError(
                f"{what}: option {option!r}: {', '.join(map(repr, unknown))} "
                f"{'is not a column' if len(unknown) == 1 else 'are not columns'} of "
                f"{self.name}" + (hint or f" (columns: {', '.join(self.columns)})"),
                option=option,
            )

    def is_unique(self, names: list[str] | tuple[str, ...]) -> bool:
        """Whether the columns ``names`` include a unique key (so they identify one row)."""
        chosen = set(names)
        return any(key <= chosen for key in self.unique_keys)

    def relationship(self, path: str, what: str) -> list[RelationshipProperty[Any]]:
        """The chain of relationships a dotted ``includes`` path walks."""
        mapper = self.mapper
        chain: list[RelationshipProperty[Any]] = []
        for step in path.split("."):
            rel = mapper.relationships.get(step)
            if rel is None:
                known = ", ".join(mapper.relationships.keys()) or "none"
                raise ConfigurationError(
                    f"{what}: option 'includes': {path!r}: {mapper.class_.__qualname__} has no "
                    f"relationship {step!r} (relationships: {known})",
                    option="includes",
                )
            chain.append(rel)
            mapper = rel.mapper
        return chain


def _unique_keys(
    table: sa.Table, by_column: dict[int, str], primary_key: tuple[str, ...]
) -> tuple[frozenset[str], ...]:
    keys: list[frozenset[str]] = [frozenset(primary_key)] if primary_key else []

    def add(columns: Any) -> None:
        names = [by_column.get(id(c)) for c in columns]
        if names and all(names):
            keys.append(frozenset(n for n in names if n))

    for column in table.columns:
        if column.unique:
            add([column])
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            add(constraint.columns)
    for index in table.indexes:
        if index.unique:
            add(index.columns)
    return tuple(dict.fromkeys(keys))
