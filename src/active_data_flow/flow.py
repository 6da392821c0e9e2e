"""FlowSpec, the one description of a flow, and DataFlow, the class syntax that compiles to it.

A :class:`FlowSpec` says everything a runtime needs to run a flow except its Python code:
the source, the sinks, the runtime, the error policy, the schedule (inside the runtime), the
flows to trigger next. It is frozen, JSON-safe and validated; the flow store saves it, the web
API takes and returns it, and a partition of a run is ``spec.replace(source=part)``.

A :class:`DataFlow` subclass declares the same fields as class attributes and adds the code:
``transform`` and the hooks. ``MyFlow.flow_spec()`` compiles the class to its spec;
``MyFlow()`` is the flow with that spec, and ``MyFlow(spec)`` the same code over another spec
(a stored flow borrowing the transform, or one partition of a run).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_serializer,
    model_validator,
)

from active_data_flow.connector import Configurable, Sink, Source, config_error, option_error
from active_data_flow.errors import ConfigurationError, FlowRunError
from active_data_flow.message import Message
from active_data_flow.runner import Runner, RunResult
from active_data_flow.runtime import Runtime

__all__ = [
    "FLOW_NAME_PATTERN",
    "ComponentSpec",
    "DataFlow",
    "FlowName",
    "FlowSpec",
    "OnError",
    "TransformResult",
    "snake_case",
]

#: Flow names: letters, digits, ``_``, ``.`` and ``-``, starting with a letter, digit or ``_``
#: (so never ``.`` or ``..``: names appear in URLs and file names).
FLOW_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$"

FlowName = Annotated[str, Field(pattern=FLOW_NAME_PATTERN, description="A flow's unique name.")]
OnError = Literal["fail", "skip", "dead_letter"]

#: What ``transform`` may return: a record to write, ``None`` to drop, or several records.
TransformResult = Message | Mapping[str, Any] | Iterable[Message | Mapping[str, Any]] | None

_C = TypeVar("_C", Source, Sink)


def snake_case(name: str) -> str:
    """``CopyUsersFlow`` -> ``copy_users_flow``; ``HTTPExport`` -> ``http_export``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


class ComponentSpec(BaseModel):
    """A connector or runtime: its registered type name and its options.

    Built from a live connector (a DataFlow's class attribute), it keeps that instance as a
    template: runs clone it rather than rebuilding it from options, and its JSON form is
    rendered only when asked for (:meth:`to_dict`), so a memory source over a million records
    costs nothing to describe. Options with no JSON form (an unregistered Engine) still work
    in this process; such a spec cannot be stored, and :meth:`to_dict` says why.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(min_length=1, max_length=100, examples=["jsonl"],
                      description="Registered type name (see GET /api/connectors).")
    config: dict[str, Any] = Field(default_factory=dict, examples=[{"path": "in.jsonl"}],
                                   description="The type's options.")

    _template: Configurable | None = PrivateAttr(default=None)
    _rendered: dict[str, Any] | None = PrivateAttr(default=None)

    @field_validator("config", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @classmethod
    def of(cls, value: Any, what: str) -> ComponentSpec:
        """The spec of a connector or runtime instance, or of a ``{"type", "config"}`` dict.

        Raises:
            ConfigurationError: ``value`` is neither (``option`` is ``what``).
        """
        if isinstance(value, ComponentSpec):
            return value
        if isinstance(value, Configurable):
            spec = cls(type=value.type_name or type(value).__qualname__)
            spec._template = value
            return spec
        if isinstance(value, Mapping):
            try:
                return cls.model_validate(dict(value))
            except pydantic.ValidationError as exc:
                raise config_error(exc, f"`{what}` spec", cls) from None
        raise ConfigurationError(
            f"`{what}` must be a connector (or runtime) or a spec dict like "
            f"{{'type': ..., 'config': {{...}}}}, got {type(value).__name__}",
            option=what,
        )

    @property
    def template(self) -> Configurable | None:
        """The live instance this spec was made from, if any."""
        return self._template

    def build(self, base: builtins.type[_C]) -> _C:
        """A fresh connector for one run (a clone of the template, or built by type name)."""
        template = self._template
        if isinstance(template, base):
            return template.clone()
        return base.from_dict(self.to_dict())

    def build_runtime(self) -> Runtime:
        """The runtime this spec describes (runtimes are immutable: a template is shared)."""
        if isinstance(self._template, Runtime):
            return self._template
        return Runtime.from_dict(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """``{"type": ..., "config": {...}}``, JSON-safe.

        Raises:
            ConfigurationError: the component has options with no JSON form.
        """
        if self._template is None:
            return {"type": self.type, "config": dict(self.config)}
        if self._rendered is None:
            self._rendered = self._template.to_dict()
        return {"type": self._rendered["type"], "config": dict(self._rendered["config"])}

    @model_serializer(mode="wrap")
    def _serialize(self, handler: pydantic.SerializerFunctionWrapHandler) -> Any:
        return handler(self) if self._template is None else self.to_dict()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ComponentSpec):
            return NotImplemented
        if self._template is not None and self._template is other._template:
            return True
        try:
            return self.to_dict() == other.to_dict()
        except ConfigurationError:
            return False

    __hash__ = None  # type: ignore[assignment]

    def __repr_args__(self) -> Any:
        if self._template is None:
            return super().__repr_args__()
        return [("type", self.type), ("template", self._template)]


_COMPONENT_FIELDS = ("source", "sink", "sinks", "runtime", "dead_letter_sink")


class FlowSpec(BaseModel):
    """Everything about a flow but its code: the one shape every layer shares.

    ``sink`` (one) or ``sinks`` (several); ``runtime`` defaults to the inline runtime (a
    stored flow with an ``interval`` in its runtime's options runs on heartbeats; without,
    only when triggered). ``transform`` names a code-defined flow whose ``transform`` and
    hooks a flow created from JSON uses (default: messages pass through unchanged).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra={"examples": [{
        "name": "copy_users",
        "source": {"type": "jsonl", "config": {"path": "users.jsonl"}},
        "sink": {"type": "csv", "config": {"path": "users.csv"}},
        "runtime": {"type": "heartbeat", "config": {"interval": 300}},
    }]})

    name: FlowName
    source: ComponentSpec = Field(description="Where messages come from.")
    sink: ComponentSpec | None = Field(
        default=None, exclude=True,
        description="Where records go: one sink (`sinks` for several).")
    sinks: tuple[ComponentSpec, ...] = Field(
        min_length=1, max_length=20, description="Where records go, in order.")
    runtime: ComponentSpec = Field(
        default_factory=lambda: ComponentSpec(type="inline"),
        description="Where and when the flow runs; `config.interval` (seconds or a cron "
                    "expression) schedules it, `config.batch_size` sets its batches.")
    on_error: OnError = Field(
        default="fail", description="What a transform error does: fail the run, skip the "
                                    "message, or send it to `dead_letter_sink`.")
    dead_letter_sink: ComponentSpec | None = Field(
        default=None, description="Where messages that failed go (with on_error=dead_letter).")
    batch_size: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="Messages per batch and checkpoint (default: the runtime's).")
    triggers: tuple[FlowName, ...] = Field(
        default=(), max_length=50, description="Flows to trigger when a run succeeds.")
    transform: FlowName | None = Field(
        default=None, description="A code-defined flow whose transform this flow uses.")

    # -- validation ----------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _one_sink_or_several(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        sink, sinks = data.pop("sink", None), data.get("sinks")
        if sink is not None and sinks is not None:
            raise option_error("sinks", "sets both `sink` and `sinks`; set one")
        if sink is not None:
            data["sinks"] = [sink]
        elif sinks is None:
            raise option_error("sink", "has no sink: set `sink` or `sinks`")
        elif isinstance(sinks, (str, bytes, Mapping)) or not isinstance(sinks, Sequence):
            raise option_error("sinks", "`sinks` must be a list of sinks")
        return data

    @field_validator(*_COMPONENT_FIELDS, mode="before")
    @classmethod
    def _components(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        if isinstance(value, Configurable):
            return ComponentSpec.of(value, str(info.field_name))
        if isinstance(value, (list, tuple)):
            return [ComponentSpec.of(v, str(info.field_name)) if isinstance(v, Configurable)
                    else _component_or_mapping(v, str(info.field_name)) for v in value]
        return _component_or_mapping(value, str(info.field_name))

    @model_validator(mode="after")
    def _dead_letters_need_a_sink(self) -> Self:
        if self.on_error == "dead_letter" and self.dead_letter_sink is None:
            raise option_error("dead_letter_sink",
                               "has on_error='dead_letter' but no `dead_letter_sink`")
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any] | FlowSpec) -> FlowSpec:
        """Validate a spec's structure (names, types of fields, one sink or several).

        Raises:
            ConfigurationError: naming the field at fault.
        """
        if isinstance(data, FlowSpec):
            return data
        if not isinstance(data, Mapping):
            raise ConfigurationError(
                f"a flow spec must be a mapping (a JSON object), got {type(data).__name__}",
                option="spec")
        name = data.get("name")
        try:
            return cls.model_validate(dict(data))
        except pydantic.ValidationError as exc:
            raise config_error(exc, f"flow {name!r}" if isinstance(name, str) else "flow spec",
                               cls) from None

    def check(self) -> FlowSpec:
        """Build every component given as a spec dict once, so that an unknown type or a bad
        option fails here, not in a run; return the spec with its runtime as the runtime
        renders itself. Components made from live instances were validated when built.

        Inside :func:`~active_data_flow.registry.untrusted_specs` (specs from the store or
        the web), components may only name what the application registered.

        Raises:
            ConfigurationError: naming the option at fault.
        """
        try:
            if self.source.template is None:
                self.build_source().close()
            for spec in [*self.sinks, self.dead_letter_sink]:
                if spec is not None and spec.template is None:
                    sink: Sink = spec.build(Sink)
                    sink.discard()
                    sink.close()
            runtime = self.build_runtime()
        except ConfigurationError as exc:
            message = str(exc)
            prefix = f"flow {self.name!r}"
            raise ConfigurationError(
                message if message.startswith(prefix) else f"{prefix}: {message}",
                option=exc.option) from exc
        if self.runtime.template is not None:
            return self
        return self.replace(runtime=ComponentSpec.model_validate(runtime.to_dict()))

    # -- building (once per run) ---------------------------------------------------------
    def build_source(self) -> Source:
        """A fresh source for one run."""
        return self.source.build(Source)

    def build_sinks(self) -> list[Sink]:
        """Fresh sinks for one run, in declaration order."""
        return [spec.build(Sink) for spec in self.sinks]

    def build_dead_letter_sink(self) -> Sink | None:
        """A fresh dead-letter sink, or ``None`` when the flow has none."""
        return None if self.dead_letter_sink is None else self.dead_letter_sink.build(Sink)

    def build_runtime(self) -> Runtime:
        """The flow's runtime."""
        return self.runtime.build_runtime()

    # -- values --------------------------------------------------------------------------
    def replace(self, **changes: Any) -> FlowSpec:
        """A copy with ``changes`` (``spec.replace(source=part)`` is one partition's spec).

        Raises:
            ConfigurationError: a change does not validate.
        """
        current = {name: getattr(self, name) for name in type(self).model_fields}
        current.pop("sink")
        if "sink" in changes:
            current.pop("sinks")
        return type(self).parse({**current, **changes})

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-safe data (what the store saves and the API returns).

        Raises:
            ConfigurationError: a component has options with no JSON form.
        """
        return self.model_dump(mode="json")

    def components(self) -> list[ComponentSpec]:
        """Source, sinks, dead-letter sink and runtime."""
        found = [self.source, *self.sinks, self.runtime]
        if self.dead_letter_sink is not None:
            found.append(self.dead_letter_sink)
        return found

    def digest(self) -> str:
        """A hash of the stored form: equal digests, equal specs."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def _component_or_mapping(value: Any, field: str) -> Any:
    if value is None or isinstance(value, (ComponentSpec, Mapping)):
        return value
    raise ValueError(
        f"must be a connector (or runtime) or a spec dict like {{'type': ..., 'config': "
        f"{{...}}}}, got {type(value).__name__}")


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

    The class attributes are the fields of :class:`FlowSpec` (any field of it can be set
    here, under the same name): ``source``, ``sink`` or ``sinks``, ``runtime`` (default:
    inline, now), ``name`` (default: the class name in snake_case), ``on_error``
    (``"fail"``, ``"skip"`` or ``"dead_letter"``), ``dead_letter_sink``, ``batch_size``,
    ``triggers``. Connectors may be instances (templates, cloned for every run) or spec
    dicts.

    Args:
        spec: run this code over another spec (default: the class's own, see
            :meth:`flow_spec`).
    """

    source: ClassVar[Source | Mapping[str, Any] | None] = None
    sink: ClassVar[Sink | Mapping[str, Any] | None] = None
    sinks: ClassVar[Sequence[Sink | Mapping[str, Any]] | None] = None
    runtime: ClassVar[Runtime | Mapping[str, Any] | None] = None
    name: ClassVar[str] = "data_flow"
    on_error: ClassVar[OnError] = "fail"
    dead_letter_sink: ClassVar[Sink | Mapping[str, Any] | None] = None
    batch_size: ClassVar[int | None] = None
    triggers: ClassVar[Sequence[str]] = ()

    #: Whether the class overrides :meth:`transform` (else messages pass unchanged, fast).
    transforms: ClassVar[bool] = False
    #: Whether the class defines :meth:`transform_batch`: it runs on the columnar path.
    batches: ClassVar[bool] = False

    _compiled: ClassVar[tuple[tuple[int, ...], FlowSpec] | None] = None
    _compile_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = snake_case(cls.__name__)
        cls.transforms = cls.transform is not DataFlow.transform
        cls.batches = cls.transform_batch is not DataFlow.transform_batch
        if cls.transforms and cls.batches:
            raise ConfigurationError(
                f"flow class {cls.__qualname__} defines both transform() and "
                "transform_batch(); define one (transform_batch for the columnar path)",
                option="transform_batch",
            )
        cls._compiled = None

    def __init__(self, spec: FlowSpec | None = None) -> None:
        self.spec: FlowSpec = spec if spec is not None else type(self).flow_spec()

    @classmethod
    def flow_spec(cls) -> FlowSpec:
        """The :class:`FlowSpec` the class attributes describe, validated (connectors given
        as spec dicts are built once to check them). Compiled once per class (again if a
        class attribute is reassigned).

        Raises:
            ConfigurationError: the class is misdefined; ``option`` names the attribute.
        """
        fields = [f for f in FlowSpec.model_fields if f != "transform"]
        key = tuple(id(getattr(cls, f, None)) for f in fields)
        compiled: tuple[tuple[int, ...], FlowSpec] | None = cls.__dict__.get("_compiled")
        if compiled is not None and compiled[0] == key:
            return compiled[1]
        with cls._compile_lock:
            data = {f: getattr(cls, f) for f in fields if getattr(cls, f, None) is not None}
            if isinstance(data.get("triggers"), (list, tuple)):
                data["triggers"] = tuple(data["triggers"])
            spec = FlowSpec.parse(data).check()
            cls._compiled = (key, spec)
        return spec

    # -- the transform -------------------------------------------------------------------
    def transform(self, message: Message) -> TransformResult:
        """Turn one message into what to write: a mapping or Message, ``None`` to drop it,
        or an iterable of them to fan out. The default writes the message unchanged."""
        return message

    def transform_batch(self, batch: Any) -> Any:
        """The columnar path (extra ``[arrow]``): turn a batch of rows, a
        :class:`pyarrow.Table`, into what to write: a table, a record batch, a polars or
        pandas DataFrame, a list of dicts, or ``None`` to write nothing.

        Define this *instead of* :meth:`transform` to get the source's rows as Arrow
        batches (SQL sources read them page by page, files column by column) and hand
        sinks whole tables (PostgreSQL ``COPY``, one executemany elsewhere). If the batch
        raises, the runner calls it again on one-row slices to find the failing rows: under
        ``on_error="fail"`` the run fails naming them, else they are skipped or
        dead-lettered and the other rows are written.
        """
        return batch

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
        count: bool = False,
    ) -> RunResult:
        """Run the flow now, in this process, and return what it did.

        Args:
            cursor: resume strictly after this position (a previous ``RunResult.cursor``).
            checkpoint: called with the new cursor after each batch is durably written.
            on_progress: called with the running totals after each batch.
            stop: when set, the run stops after the current batch (``interrupted=True``).
            count: ask the source first how many messages it holds (``RunResult.total``,
                for progress bars; it may cost a query).

        Raises:
            FlowRunError: the run failed; ``error.result.cursor`` is where to resume.
        """
        return Runner(self.spec.build_runtime()).run(
            self, cursor=cursor, checkpoint=checkpoint, on_progress=on_progress, stop=stop,
            count=count,
        )
