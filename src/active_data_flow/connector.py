"""Source and Sink: the base classes of every connector.

A connector subclass declares its options as a nested pydantic model named ``Config``; the
constructor takes keyword options only and validates them there, so a missing, mistyped or
unknown option is a :class:`~active_data_flow.errors.ConfigurationError` naming the option,
raised where the connector is defined rather than in the middle of a run::

    @register_connector("jsonl")
    class JsonLinesSource(Source):
        class Config(SourceConfig):
            path: Path

        def each(self, cursor=None):
            ...

``to_dict()`` gives a JSON-safe spec ``{"type": ..., "config": {...}}`` and
``Source.from_dict(spec)`` / ``Sink.from_dict(spec)`` rebuild the connector through the
registry, so flows stored in a database or received over HTTP name connectors by type.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

import pydantic
from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from active_data_flow.columnar import ArrowBatch, batches_of
from active_data_flow.errors import ConfigurationError, RecordRejected, did_you_mean
from active_data_flow.message import Message, Untyped
from active_data_flow.registry import connector_class, specs_trusted, untrusted_allowed

__all__ = [
    "Connector",
    "ConnectorConfig",
    "Partition",
    "Sink",
    "SinkConfig",
    "Source",
    "SourceConfig",
    "check_parts",
    "config_error",
    "option_error",
]


class ConnectorConfig(BaseModel):
    """Base of connector option models: unknown options are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class SourceConfig(ConnectorConfig):
    """Options every source accepts."""


class SinkConfig(ConnectorConfig):
    """Options every sink accepts."""


@dataclass(frozen=True, slots=True)
class Partition:
    """One independent part of a split source: the source and the cursor to start after."""

    source: Source
    cursor: Any = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe spec: ``{"source": {...}, "cursor": ...}``."""
        return {"source": self.source.to_dict(), "cursor": self.cursor}


class Configurable:
    """Options validated by a pydantic ``Config``, and a JSON spec under a registered name.

    The shared base of connectors and runtimes: ``Cls(**options)`` validates (a bad option
    is a :class:`ConfigurationError` naming it), ``to_dict()`` gives ``{"type", "config"}``.
    """

    type_name: ClassVar[str] = ""
    Config: ClassVar[type[BaseModel]]
    config: Any
    _kind: ClassVar[str] = "connector"  # for messages: "source", "sink", "runtime"
    _register_with: ClassVar[str] = "@register_connector(...)"

    def __init__(self, **options: Any) -> None:
        try:
            self.config = self.Config(**options)
        except pydantic.ValidationError as exc:
            raise config_error(exc, self._label(), self.Config) from None

    @classmethod
    def _label(cls) -> str:
        """How messages name this class: ``"jsonl sink"``, ``"heartbeat runtime"``."""
        return f"{cls.type_name or cls.__qualname__} {cls._kind}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe spec ``{"type": ..., "config": {...}}`` that ``from_dict`` rebuilds."""
        if not self.type_name:
            raise ConfigurationError(
                f"{type(self).__qualname__} is not registered, so it has no spec type name; "
                f"decorate it with {self._register_with}",
                option="type",
            )
        return {
            "type": self.type_name,
            "config": self.config.model_dump(mode="json", exclude_defaults=True),
        }

    def __repr__(self) -> str:
        opts = ", ".join(
            f"{k}={v!r}" for k, v in self.config.model_dump(exclude_defaults=True).items()
        )
        return f"{type(self).__name__}({opts})"


class Connector(Configurable):
    """Shared behaviour of sources and sinks: options, specs, context management."""

    role: ClassVar[Literal["source", "sink"]]
    Config: ClassVar[type[ConnectorConfig]] = ConnectorConfig

    #: Whether specs from outside the application's code (the flow store, the web API)
    #: may use this connector. Mark a connector safe only when no option can reach beyond
    #: what the application allowed (files outside the allowed folders, unregistered
    #: models or databases) and a run keeps nothing in the server's memory. Default:
    #: not safe; an application may still allow a type (``allow_untrusted_connectors``).
    untrusted_ok: ClassVar[bool] = False

    config: ConnectorConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "role" in cls.__dict__:
            cls._kind = cls.role

    # -- specs ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Self:
        """Build the connector a spec describes, resolving its type through the registry.

        Raises:
            ConfigurationError: the spec is malformed, its type unknown, or an option bad.
        """
        type_name, config = _split_spec(spec, cls.role)
        klass = connector_class(type_name, cls.role)
        if not issubclass(klass, cls):
            raise ConfigurationError(
                f"{cls.role} type {type_name!r} is a {klass.__qualname__}, "
                f"not a {cls.__qualname__}",
                option="type",
            )
        if not (klass.untrusted_ok or specs_trusted() or untrusted_allowed(type_name)):
            raise ConfigurationError(
                f"{cls.role} type {type_name!r} may not be used by flows from the store or "
                "the web (it is not marked safe for them); the application may allow it "
                "with allow_untrusted_connectors() or ADF_UNTRUSTED_CONNECTORS",
                option="type",
            )
        return klass(**config)

    def clone(self) -> Self:
        """A fresh instance with the same options (flows build one per run)."""
        new = type(self).__new__(type(self))
        new.config = self.config
        new._setup()
        return new

    def _setup(self) -> None:
        """Hook for subclasses: prepare per-instance state after options are set."""

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Release resources. Safe to call more than once."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Source(Connector):
    """Base class of sources: something that yields messages.

    Subclasses declare ``Config`` and implement :meth:`each`. A source that can resume
    defines ``each(self, cursor=None)``, sets ``message.position`` on what it yields and
    accepts that position back as ``cursor``; a source whose ``each(self)`` takes no cursor
    is read from the start on every run (not resumable). A source that can cut itself into
    independent parts (for parallel, partitioned runs) implements :meth:`split`.
    """

    role = "source"
    Config: ClassVar[type[ConnectorConfig]] = SourceConfig

    #: Whether :meth:`each` takes a cursor (decided from its signature, per class).
    resumable: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "each" in cls.__dict__:
            cls.resumable = _takes_cursor(cls.__dict__["each"])

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._setup()

    def each(self, cursor: Any = None) -> Iterator[Message]:
        """Yield the source's messages, starting strictly after ``cursor`` when given."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement each()")

    def read(self, cursor: Any = None) -> Iterator[Message]:
        """The messages after ``cursor``: what runners call, for resumable sources and for
        those whose ``each()`` takes no cursor alike.

        Raises:
            ConfigurationError: a cursor was given to a source that cannot resume.
        """
        if self.resumable:
            return iter(self.each(cursor))
        if cursor is not None:
            raise ConfigurationError(
                f"{self._label()} cannot resume from cursor {cursor!r}: its each() takes no "
                "cursor, so it is read from the start on every run (reset the flow's cursor, "
                "or give each() a `cursor=None` parameter and honour it)",
                option="cursor",
            )
        return _from_the_start(self.each())

    def __iter__(self) -> Iterator[Message]:
        return self.read()

    def read_batches(self, cursor: Any = None, size: int = 10_000) -> Iterator[ArrowBatch]:
        """The messages after ``cursor`` as Arrow batches of up to ``size`` rows (the
        columnar path, extra ``[arrow]``). The default groups :meth:`read`'s messages;
        sources with a columnar route of their own (SQL tables, Parquet) override it.
        """
        return batches_of(self.read(cursor), size)

    def count(self) -> int | None:
        """How many messages a full read yields, when known cheaply (for progress bars)."""
        return None

    def committed(self, position: Any) -> None:
        """Called by the runner once the batch ending at ``position`` is durable in every
        sink and its cursor saved. A source whose broker wants acknowledgements (a Redis
        consumer group) acknowledges here, never earlier; one that keeps processed data
        (an inbox) may release it. Default: nothing."""

    def split(self, parts: int, cursor: Any = None) -> list[Partition]:
        """Cut what is left to read after ``cursor`` into at most ``parts`` partitions.

        Each partition is a source reading a disjoint range, plus the cursor to start it
        with; together they yield exactly what ``each(cursor)`` would. A partition is run
        and checkpointed on its own (its positions resume it alone). Sources that cannot
        split return one partition: a clone and the given cursor. Fewer partitions than
        asked is fine (little data, or few distinct keys).

        Raises:
            ConfigurationError: ``parts`` is not a positive integer.
        """
        check_parts(parts)
        return [Partition(self.clone(), cursor)]


def _from_the_start(messages: Iterable[Any]) -> Iterator[Message]:
    """The messages of a source that cannot resume: positions cleared (nothing could resume
    from them, so no cursor is saved), plain mappings made messages."""
    for message in messages:
        if isinstance(message, Message):
            message.position = None
            yield message
        else:
            yield Untyped(message)


def _takes_cursor(each: Any) -> bool:
    """Whether an ``each`` method accepts a cursor besides ``self``."""
    try:
        parameters = list(inspect.signature(each).parameters.values())[1:]
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY, p.VAR_POSITIONAL)
               for p in parameters)


class Sink(Connector):
    """Base class of sinks: something that durably stores records.

    Subclasses declare ``Config`` and implement :meth:`write_batch` (or :meth:`write`) and
    :meth:`flush`. Records are mappings or :class:`~active_data_flow.message.Message`\\ s.
    ``flush()`` is the durability point: when it returns, everything written before is
    stored; a flow checkpoints its cursor only after that.
    """

    role = "sink"
    Config: ClassVar[type[ConnectorConfig]] = SinkConfig

    #: Set by a flow whose ``on_error`` is ``skip`` or ``dead_letter``: a sink that can
    #: isolate one bad record passes its :class:`RecordRejected` here instead of raising.
    on_reject: Callable[[RecordRejected], None] | None = None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._setup()

    def reject(self, error: RecordRejected) -> None:
        """Report one refused record: to ``on_reject`` when set, else raise ``error``."""
        if self.on_reject is None:
            raise error
        self.on_reject(error)

    def write(self, record: Message | Mapping[str, Any]) -> None:
        """Write one record (it may be buffered until :meth:`flush`)."""
        self.write_batch((record,))

    def write_batch(self, records: Iterable[Message | Mapping[str, Any]]) -> None:
        """Write several records (they may be buffered until :meth:`flush`)."""
        if type(self).write is Sink.write:
            raise NotImplementedError(f"{type(self).__qualname__} must implement write_batch()")
        for record in records:
            self.write(record)

    def write_table(self, table: Any) -> None:
        """Write an Arrow table's rows (the columnar path; they may be buffered until
        :meth:`flush`). The default writes them as dicts through :meth:`write_batch`;
        sinks with a columnar route of their own (SQL tables, Parquet) override it."""
        self.write_batch(table.to_pylist())

    def flush(self) -> None:
        """Store everything written so far durably."""

    def flush_with(self, hook: Callable[[Any], bool]) -> bool:
        """Flush, letting ``hook`` write in the same transaction, before it commits.

        A sink backed by a transactional store calls ``hook(handle)`` (for SQL sinks: the
        SQLAlchemy ``Connection`` holding the batch's transaction) just before committing,
        and returns what the hook returned. That is how a runtime commits a flow's cursor
        atomically with the batch it covers when both live in one database. If the hook
        raises, nothing of the batch is committed.

        The default (sinks without transactions) flushes and returns ``False`` without
        calling the hook; the runner then saves the cursor after the flush.
        """
        self.flush()
        return False

    def discard(self) -> None:
        """Drop records written but not yet flushed (a failed run calls this before close)."""

    def close(self) -> None:
        """Flush what is left and release resources."""
        self.flush()


def check_parts(parts: Any) -> int:
    """Validate a partition count."""
    if not isinstance(parts, int) or isinstance(parts, bool) or parts < 1:
        raise ConfigurationError(f"parts must be a positive integer, got {parts!r}",
                                 option="parts")
    return parts


def _split_spec(spec: Mapping[str, Any], what: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(spec, Mapping):
        raise ConfigurationError(
            f"a {what} spec must be a mapping like {{'type': ..., 'config': {{...}}}}, "
            f"got {type(spec).__name__}",
            option=what,
        )
    unknown = set(spec) - {"type", "config"}
    if unknown:
        raise ConfigurationError(
            f"{what} spec has unknown key(s) {sorted(unknown)}; expected 'type' and 'config'",
            option=sorted(unknown)[0],
        )
    if "type" not in spec:
        raise ConfigurationError(f"{what} spec has no 'type'", option="type")
    config = spec.get("config")
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ConfigurationError(
            f"{what} spec 'config' must be a mapping, got {type(config).__name__}", option="config"
        )
    return spec["type"], dict(config)


def config_error(
    exc: pydantic.ValidationError, owner: str, model: type[BaseModel] | None = None
) -> ConfigurationError:
    """Translate a pydantic validation error on options into a ConfigurationError."""
    errors = exc.errors(include_url=False)
    fields = list(model.model_fields) if model is not None else []
    # A misspelt option also shows up as a missing one: name the misspelling only.
    meant = {did_you_mean(_option_of(e), fields) for e in errors
             if e["type"] == "extra_forbidden"}
    parts: list[str] = []
    for err in errors:
        option = _option_of(err)
        if err["type"] == "option_error":  # raised by a model validator, naming its option
            parts.append(str(err["msg"]))
        elif err["type"] == "extra_forbidden":
            hint = did_you_mean(option, fields)
            known = f" (options: {', '.join(fields)})" if fields and not hint else ""
            parts.append(f"unknown option {option!r}{hint or known}")
        elif err["type"] == "missing" and f" (did you mean {option!r}?)" in meant:
            continue
        elif err["type"] == "missing":
            parts.append(f"option {option!r} is required")
        elif err["type"] == "value_error" and "error" in err.get("ctx", {}):
            parts.append(f"option {option!r}: {err['ctx']['error']}")
        else:
            parts.append(f"option {option!r}: {err['msg']} (got {err.get('input')!r:.80})")
    ordered = sorted(errors, key=lambda e: e["type"] != "extra_forbidden")
    first = _option_of(ordered[0]) if ordered else None
    return ConfigurationError(f"{owner}: " + "; ".join(parts), option=first)


def option_error(option: str, message: str) -> PydanticCustomError:
    """An error for a pydantic validator to raise that names the option at fault (a
    cross-field check has no location of its own); :func:`config_error` reports it."""
    return PydanticCustomError("option_error", message, {"option": option})


def _option_of(err: Any) -> str:
    option = (err.get("ctx") or {}).get("option")
    if isinstance(option, str):
        return option
    return ".".join(str(p) for p in err["loc"]) or "?"
