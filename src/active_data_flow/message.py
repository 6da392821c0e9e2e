"""Messages: the records that flow from sources through transforms into sinks.

Two kinds share one interface (``m["k"]``, ``m["k"] = v``, ``"k" in m``, ``m.get("k")``,
``.data``, ``.metadata``, ``.to_dict()``):

* :class:`Untyped` wraps any mapping and checks nothing;
* :class:`Typed` validates its data against a schema on construction and on every
  assignment, raising :class:`~active_data_flow.errors.SchemaError` naming the field.

A message read from a source also carries the source's ``position`` for it: an opaque,
JSON-safe value that the source can resume strictly after (see DESIGN §6).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, cast

import pydantic
from pydantic import BaseModel, ConfigDict

from active_data_flow.errors import SchemaError

__all__ = ["Message", "Row", "Schema", "Typed", "Untyped", "as_record", "record_key"]

#: A schema: a pydantic model class, or a mapping of field name to type.
Schema = type[BaseModel] | Mapping[str, Any]


class Message:
    """Base class of all messages.

    Attributes:
        metadata: free-form information about the message (never validated).
        position: where the source read it, for resuming; ``None`` outside a source.
    """

    # Subclasses declare the storage: Untyped is a dict, whose layout forbids slots here.
    if not TYPE_CHECKING:
        __slots__ = ()
    kind: ClassVar[str] = "message"

    _metadata: dict[str, Any] | None
    position: Any

    @property
    def metadata(self) -> dict[str, Any]:
        """Free-form information about the message (created on first use)."""
        if self._metadata is None:
            self._metadata = {}
        return self._metadata

    @metadata.setter
    def metadata(self, value: Mapping[str, Any]) -> None:
        self._metadata = dict(value)

    @property
    def data(self) -> dict[str, Any]:
        """The message's fields as a dict."""
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        raise NotImplementedError

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def keys(self) -> Any:
        """The field names, like ``dict.keys()``."""
        return self.data.keys()

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when the message has no such field."""
        return self.data.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        """A shallow copy of the fields as a plain dict."""
        return dict(self.data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Message):
            return self.data == other.data
        if isinstance(other, Mapping):
            return self.data == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like dict

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.data!r})"


class Untyped(dict[str, Any], Message):
    """A message over any mapping; nothing is validated.

    An ``Untyped`` message *is* a ``dict`` (a copy of the data it was given), so every dict
    operation works on it at dict speed, and it serialises as JSON like one. Equality
    compares fields only, not metadata.

    Args:
        data: the fields (a mapping, or an iterable of key/value pairs).
        metadata: optional information about the message.

    Example:
        >>> m = Untyped({"id": 1})
        >>> m["name"] = "Ada"
        >>> m.to_dict()
        {'id': 1, 'name': 'Ada'}
    """

    __slots__ = ("_metadata", "position")
    kind = "untyped"

    def __init__(
        self,
        data: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        position: Any = None,
    ) -> None:
        if data is not None:
            try:
                dict.__init__(self, data)
            except (TypeError, ValueError):
                raise SchemaError(
                    f"message data must be a mapping, got {type(data).__name__}"
                ) from None
        self._metadata = dict(metadata) if metadata else None
        self.position = position

    @property
    def data(self) -> dict[str, Any]:
        """The message itself: an ``Untyped`` message is its own dict of fields."""
        return self

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    def __repr__(self) -> str:
        return f"Untyped({dict.__repr__(self)})"

    def __getattr__(self, name: str) -> Any:
        # Reached only for unset slots: Row skips __init__ for speed.
        if name in ("position", "_metadata"):
            return None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class Row(Untyped):
    """An :class:`Untyped` message built at ``dict`` speed, for connector authors.

    ``Row(mapping_or_pairs)`` takes exactly what ``dict()`` takes and nothing else; set
    ``row.position`` afterwards. Sources that yield millions of messages use it to avoid a
    Python-level constructor call per message.
    """

    __slots__ = ()
    __init__ = dict.__init__


class Typed(Message):
    """A message validated against a schema on construction and on every assignment.

    Args:
        data: the fields.
        schema: a pydantic model class, or a mapping ``{field: type}`` (every field
            required, unknown fields rejected).
        metadata: optional information about the message.
        strict: with a mapping schema, refuse values of the wrong type instead of
            converting them (``"1"`` is not an ``int``). Pydantic models keep their own
            configuration.

    Raises:
        SchemaError: naming every field that does not validate.

    Example:
        >>> m = Typed({"id": "7"}, schema={"id": int})
        >>> m["id"]
        7
        >>> m["id"] = "seven"
        Traceback (most recent call last):
        ...
        active_data_flow.errors.SchemaError: field 'id': Input should be a valid integer, ...
    """

    __slots__ = ("_metadata", "_model", "position", "schema")
    kind = "typed"

    def __init__(
        self,
        data: Mapping[str, Any] | BaseModel | None = None,
        schema: Schema | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        strict: bool = False,
        position: Any = None,
    ) -> None:
        if schema is None:
            if isinstance(data, BaseModel):
                schema = type(data)
            else:
                raise SchemaError("Typed messages need a schema (a pydantic model or a mapping)")
        self.schema: type[BaseModel] = model_for(schema, strict=strict)
        if isinstance(data, self.schema):
            self._model: BaseModel = data
        else:
            if isinstance(data, BaseModel):
                data = data.model_dump()
            elif data is not None and not isinstance(data, Mapping):
                raise SchemaError(f"message data must be a mapping, got {type(data).__name__}")
            try:
                self._model = self.schema.model_validate(data or {})
            except pydantic.ValidationError as exc:
                raise _schema_error(exc) from None
        self._metadata = dict(metadata) if metadata else None
        self.position = position

    @property
    def data(self) -> dict[str, Any]:
        """A dict of the validated fields (a new dict on each access)."""
        return self._model.model_dump()

    @property
    def model(self) -> BaseModel:
        """The validated pydantic model instance."""
        return self._model

    def __getitem__(self, key: str) -> Any:
        if key in type(self._model).model_fields:
            return getattr(self._model, key)
        extra = self._model.model_extra or {}
        if key in extra:
            return extra[key]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in type(self._model).model_fields or key in (self._model.model_extra or {})

    def __setitem__(self, key: str, value: Any) -> None:
        validator = self.schema.__pydantic_validator__
        try:
            validator.validate_assignment(self._model, key, value)
        except pydantic.ValidationError as exc:
            raise _schema_error(exc, default_field=key) from None


def _schema_error(exc: pydantic.ValidationError, default_field: str | None = None) -> SchemaError:
    fields: list[str] = []
    parts: list[str] = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or default_field or "?"
        fields.append(loc)
        got = err.get("input")
        shown = "" if err["type"] == "missing" else f" (got {_short(got)})"
        parts.append(f"field {loc!r}: {err['msg']}{shown}")
    return SchemaError("; ".join(parts), fields=tuple(fields))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def model_for(schema: Schema, *, strict: bool = False) -> type[BaseModel]:
    """The pydantic model class for ``schema`` (cached for mapping schemas)."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema
    if not isinstance(schema, Mapping):
        raise SchemaError(
            f"schema must be a pydantic model class or a mapping of field to type, "
            f"got {type(schema).__name__}"
        )
    try:
        return _model_from_items(tuple(schema.items()), strict)
    except TypeError:  # unhashable annotations: build without the cache
        return _build_model(tuple(schema.items()), strict)


@lru_cache(maxsize=256)
def _model_from_items(items: tuple[tuple[str, Any], ...], strict: bool) -> type[BaseModel]:
    return _build_model(items, strict)


def _build_model(items: tuple[tuple[str, Any], ...], strict: bool) -> type[BaseModel]:
    for name, _ in items:
        if not isinstance(name, str) or not name.isidentifier():
            raise SchemaError(f"schema field names must be identifiers, got {name!r}")
    config = ConfigDict(extra="forbid", strict=strict, validate_assignment=True)
    fields: dict[str, Any] = {name: (tp, ...) for name, tp in items}
    try:
        return pydantic.create_model("TypedSchema", __config__=config, **fields)
    except (TypeError, pydantic.PydanticSchemaGenerationError) as exc:
        raise SchemaError(f"invalid schema: {exc}") from exc


def as_record(item: Message | Mapping[str, Any]) -> dict[str, Any]:
    """The plain dict behind a message or mapping (a dict is returned as is, not copied)."""
    if type(item) is dict or type(item) is Row or type(item) is Untyped:
        return cast(dict[str, Any], item)
    if isinstance(item, Message):
        return item.data
    return dict(item)


def record_key(record: Any, fields: tuple[str, ...] = ("id", "key", "uuid")) -> Any:
    """A short identification of a record for logs: its first ``fields`` value present."""
    try:
        data = as_record(record)
    except Exception:
        return None
    for field in fields:
        if field in data:
            return data[field]
    return None
