"""DataFlow: the declaration of a read-transform-write pipeline, and its RunResult.

A DataFlow is a description; a :class:`~active_data_flow.runtime.Runner` interprets it. The
connectors set on the class are templates: every run builds fresh instances from their
options, so one flow class can run many times, in many processes, from a stored spec.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from active_data_flow.connector import Sink, Source
from active_data_flow.errors import ConfigurationError, FlowRunError
from active_data_flow.message import Message

if TYPE_CHECKING:
    from active_data_flow.runtime import Runtime

__all__ = ["FLOW_NAME_PATTERN", "DataFlow", "OnError", "RunResult", "TransformResult",
           "snake_case"]

#: Flow names: letters, digits, ``_``, ``.`` and ``-``, starting with a letter, digit or ``_``
#: (so never ``.`` or ``..``: names appear in URLs and file names).
FLOW_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$"

OnError = Literal["fail", "skip", "dead_letter"]
ON_ERROR_POLICIES: tuple[str, ...] = ("fail", "skip", "dead_letter")

#: What ``transform`` may return: a record to write, ``None`` to drop, or several records.
TransformResult = Message | Mapping[str, Any] | Iterable[Message | Mapping[str, Any]] | None

ConnectorSpec = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run of a flow did.

    Attributes:
        flow: the flow's name.
        read: messages read from the source.
        written: records handed to the sinks and flushed (counted once, however many sinks).
        skipped: messages the transform dropped by returning ``None``.
        failed: messages whose transform raised and were skipped or dead-lettered.
        duration_s: wall time of the run, in seconds.
        cursor: the last checkpointed position; pass it as ``run(cursor=...)`` to resume.
        batches: batches committed.
        interrupted: the run stopped early on request (graceful shutdown); resume it later.
    """

    flow: str
    read: int = 0
    written: int = 0
    skipped: int = 0
    failed: int = 0
    duration_s: float = 0.0
    cursor: Any = None
    batches: int = 0
    interrupted: bool = False

    @property
    def rate(self) -> float:
        """Messages read per second."""
        return self.read / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-safe dict (the cursor is JSON-safe by contract)."""
        return asdict(self)


def snake_case(name: str) -> str:
    """``CopyUsersFlow`` -> ``copy_users_flow``; ``HTTPExport`` -> ``http_export``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


class DataFlow:
    """Base class of data flows.

    Subclasses set class attributes and usually override :meth:`transform`::

        class ExportUsers(DataFlow):
            source = JsonLinesSource(path="users.jsonl")
            sink = CsvSink(path="users.csv")
            on_error = "skip"

            def transform(self, message):
                if message["active"]:
                    return {"id": message["id"], "email": message["email"].lower()}
                return None  # dropped

        result = ExportUsers().run()

    Attributes:
        source: a :class:`Source` (or its spec dict).
        sink: one :class:`Sink` (or spec); or ``sinks``, a list of them. Not both.
        runtime: where and when the flow runs (default: inline, now).
        name: the flow's name (default: the class name in snake_case).
        on_error: what a transform error does: ``"fail"`` the run (default), ``"skip"`` the
            message (counted and logged), or ``"dead_letter"`` (written to
            ``dead_letter_sink`` with the error).
        dead_letter_sink: where dead letters go (required with ``on_error="dead_letter"``).
        batch_size: messages per batch and checkpoint (default: the runtime's).
        triggers: names of flows to trigger when a run succeeds (used by stored runtimes).
    """

    source: ClassVar[Source | ConnectorSpec | None] = None
    sink: ClassVar[Sink | ConnectorSpec | None] = None
    sinks: ClassVar[Sequence[Sink | ConnectorSpec] | None] = None
    runtime: ClassVar[Runtime | ConnectorSpec | None] = None
    name: ClassVar[str] = "data_flow"
    on_error: ClassVar[OnError] = "fail"
    dead_letter_sink: ClassVar[Sink | ConnectorSpec | None] = None
    batch_size: ClassVar[int | None] = None
    triggers: ClassVar[Sequence[str]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = snake_case(cls.__name__)

    def __init__(self) -> None:
        self._check_definition()

    # -- the transform -------------------------------------------------------------------
    def transform(self, message: Message) -> TransformResult:
        """Turn one message into what to write: a mapping or Message, ``None`` to drop it,
        or an iterable of them to fan out. The default writes the message unchanged."""
        return message

    # -- hooks ---------------------------------------------------------------------------
    def after_success(self, result: RunResult) -> None:
        """Called after a run succeeds. Errors raised here are logged, not propagated."""

    def after_failure(self, error: FlowRunError) -> None:
        """Called after a run fails, before the error propagates. Errors here are logged."""

    # -- running -------------------------------------------------------------------------
    def run(
        self,
        *,
        cursor: Any = None,
        checkpoint: Callable[[Any], None] | None = None,
        on_progress: Callable[[RunResult], None] | None = None,
        stop: threading.Event | None = None,
    ) -> RunResult:
        """Run the flow now, in this process, and return what it did.

        Args:
            cursor: resume strictly after this position (a previous ``RunResult.cursor``).
            checkpoint: called with the new cursor after each batch is durably written.
            on_progress: called with the running totals after each batch.
            stop: when set, the run stops after the current batch (``interrupted=True``).

        Raises:
            FlowRunError: the run failed; ``error.result.cursor`` is where to resume.
        """
        from active_data_flow.runtime import Runner

        return Runner(self.get_runtime()).run(
            self, cursor=cursor, checkpoint=checkpoint, on_progress=on_progress, stop=stop
        )

    # -- building components (fresh per run) ---------------------------------------------
    def build_source(self) -> Source:
        """A fresh source for one run."""
        return _build(Source, type(self).source, "source", self.name)

    def build_sinks(self) -> list[Sink]:
        """Fresh sinks for one run, in declaration order."""
        return [_build(Sink, spec, "sinks", self.name) for spec in self._sink_specs()]

    def build_dead_letter_sink(self) -> Sink | None:
        """A fresh dead-letter sink, or ``None`` when the flow has none."""
        spec = type(self).dead_letter_sink
        return None if spec is None else _build(Sink, spec, "dead_letter_sink", self.name)

    def get_runtime(self) -> Runtime:
        """The flow's runtime (inline when none is set)."""
        from active_data_flow.runtime import Runtime
        from active_data_flow.runtimes.inline import Inline

        spec = type(self).runtime
        if spec is None:
            return Inline()
        if isinstance(spec, Runtime):
            return spec
        if isinstance(spec, Mapping):
            return Runtime.from_dict(spec)
        raise ConfigurationError(
            f"flow {self.name!r}: `runtime` must be a Runtime or a spec dict, "
            f"got {type(spec).__name__}",
            option="runtime",
        )

    def effective_batch_size(self) -> int:
        """Messages per batch: the flow's ``batch_size`` or its runtime's."""
        size = type(self).batch_size
        return size if size is not None else self.get_runtime().batch_size

    # -- specs ---------------------------------------------------------------------------
    @classmethod
    def to_spec(cls) -> dict[str, Any]:
        """The flow's components as JSON-safe specs (what the flow store records)."""
        flow = cls()
        runtime = flow.get_runtime()
        spec: dict[str, Any] = {
            "name": cls.name,
            "source": _spec_of(cls.source),
            "sinks": [_spec_of(s) for s in flow._sink_specs()],
            "runtime": runtime.to_dict(),
            "on_error": cls.on_error,
        }
        if cls.dead_letter_sink is not None:
            spec["dead_letter_sink"] = _spec_of(cls.dead_letter_sink)
        if cls.batch_size is not None:
            spec["batch_size"] = cls.batch_size
        if cls.triggers:
            spec["triggers"] = list(cls.triggers)
        return spec

    # -- validation ----------------------------------------------------------------------
    def _sink_specs(self) -> list[Sink | ConnectorSpec]:
        cls = type(self)
        if cls.sinks is not None:
            return list(cls.sinks)
        return [] if cls.sink is None else [cls.sink]

    def _check_definition(self) -> None:
        cls, name = type(self), self.name
        if not isinstance(name, str) or not re.fullmatch(FLOW_NAME_PATTERN, name):
            raise ConfigurationError(
                f"flow name {name!r} must be 1-200 letters, digits, '_', '.' or '-', "
                "starting with a letter, digit or '_'",
                option="name",
            )
        if cls.source is None:
            raise ConfigurationError(f"flow {name!r} has no `source`", option="source")
        if cls.sink is not None and cls.sinks is not None:
            raise ConfigurationError(
                f"flow {name!r} sets both `sink` and `sinks`; set one", option="sinks"
            )
        if not self._sink_specs():
            raise ConfigurationError(
                f"flow {name!r} has no sink: set `sink` or `sinks`", option="sink"
            )
        if isinstance(cls.sinks, (str, bytes, Mapping)) or (
            cls.sinks is not None and not isinstance(cls.sinks, Sequence)
        ):
            raise ConfigurationError(
                f"flow {name!r}: `sinks` must be a list of sinks", option="sinks"
            )
        if cls.on_error not in ON_ERROR_POLICIES:
            raise ConfigurationError(
                f"flow {name!r}: on_error must be one of {', '.join(ON_ERROR_POLICIES)}, "
                f"got {cls.on_error!r}",
                option="on_error",
            )
        if cls.on_error == "dead_letter" and cls.dead_letter_sink is None:
            raise ConfigurationError(
                f"flow {name!r} has on_error='dead_letter' but no `dead_letter_sink`",
                option="dead_letter_sink",
            )
        if cls.batch_size is not None and (
            not isinstance(cls.batch_size, int) or isinstance(cls.batch_size, bool)
            or cls.batch_size < 1
        ):
            raise ConfigurationError(
                f"flow {name!r}: batch_size must be a positive integer, got {cls.batch_size!r}",
                option="batch_size",
            )
        # Building once validates specs given as dicts (type names, options) up front.
        self.build_source().close()
        for sink in self.build_sinks():
            sink.discard()
            sink.close()
        self.get_runtime()


_C = TypeVar("_C", Source, Sink)


def _build(base: type[_C], spec: Any, attribute: str, flow: str) -> _C:
    if isinstance(spec, base):
        return spec.clone()
    if isinstance(spec, Mapping):
        return base.from_dict(spec)
    raise ConfigurationError(
        f"flow {flow!r}: `{attribute}` must be a {base.__name__} or a spec dict, "
        f"got {type(spec).__name__}",
        option=attribute,
    )


def _spec_of(component: Any) -> dict[str, Any]:
    return dict(component) if isinstance(component, Mapping) else component.to_dict()
