"""DjangoSource: a model's rows in keyset pages (memory flat), resumable by cursor."""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator, Iterator, Sequence
from decimal import Decimal
from typing import Any

from django.db import connections, models, router, transaction
from django.db.models import Q
from pydantic import Field, field_validator

from active_data_flow.connector import Source, SourceConfig
from active_data_flow.contrib.django.connectors._models import decode, encode
from active_data_flow.contrib.django.connectors._options import DjangoModelOptions, names
from active_data_flow.errors import ConfigurationError
from active_data_flow.message import Message, Row
from active_data_flow.registry import register_connector

__all__ = ["DjangoSource"]

_READONLY = {"postgresql": "SET TRANSACTION READ ONLY", "mysql": "SET TRANSACTION READ ONLY"}


@register_connector("django")
class DjangoSource(Source):
    """Read a Django model's rows, in pages, in key order.

    Options:
        model: the model class, ``"app_label.Model"`` or an import string.
        where: field lookups, as given to ``filter()`` (``{"status": "paid",
            "total__gte": 10}``).
        order_by: the reading order (``"-created"``); made unique with the primary key.
        limit: read at most this many rows.
        select: the fields a message carries (``values()``; key fields are added).
        includes: relations loaded with each row: forward foreign keys and one-to-ones with
            ``select_related``, the others with ``prefetch_related``; each becomes a nested
            dict (or list of dicts) in the message.
        batch_size: rows per page (keyset pagination: memory stays flat).
        readonly: read each page in a read-only transaction (PostgreSQL, MariaDB/MySQL) or
            with ``query_only`` (SQLite) (default true).
        cursor_column: the field(s) an incremental read resumes after (``"updated_at"`` or
            ``["updated_at", "id"]``); made unique with the primary key.
        lag: also read again the rows at most this far before the cursor (a timedelta or
            seconds for date/time fields, a number for numeric ones): late commits are not
            missed.
        database: a ``DATABASES`` alias (default: the router's ``db_for_read``).

    A message holds the model's concrete fields by attribute name (``customer_id``).
    """

    untrusted_ok = True  # stored specs name allowed models and DATABASES aliases only

    class Config(DjangoModelOptions, SourceConfig):
        where: dict[str, Any] = Field(default_factory=dict)
        order_by: list[str] = Field(default_factory=list)
        limit: int | None = Field(default=None, ge=1)
        select: list[str] | None = None
        includes: list[str] = Field(default_factory=list)
        batch_size: int = Field(default=1000, ge=1, le=100_000)
        readonly: bool = True
        cursor_column: list[str] | None = None
        lag: dt.timedelta | int | float | Decimal | None = None

        _as_lists = field_validator(
            "order_by", "select", "includes", "cursor_column", mode="before")(names)

        @field_validator("lag")
        @classmethod
        def _non_negative(cls, value: Any) -> Any:
            zero = dt.timedelta(0) if isinstance(value, dt.timedelta) else 0
            if value is not None and value < zero:
                raise ValueError("must not be negative")
            return value

    config: Config

    def _setup(self) -> None:
        what = self._label()
        cfg = self.config
        cfg.check(what)
        model: type[models.Model] = cfg.model
        self._model = model
        meta = model._meta
        self._fields = {f.name: f for f in meta.concrete_fields}
        self._attnames = {f.attname: f for f in meta.concrete_fields}
        self._key = _key(model, self._field, cfg.order_by, cfg.cursor_column, what)
        self._key_fields = [self._field(n, "cursor_column", what) for n, _ in self._key]
        chosen = [self._field(n, "select", what).attname for n in cfg.select] \
            if cfg.select is not None else [f.attname for f in meta.concrete_fields]
        if cfg.select is not None and not cfg.select:
            raise ConfigurationError(f"{what}: option 'select' is empty", option="select")
        keys = list(dict.fromkeys(chosen))
        keys += [f.attname for f in self._key_fields if f.attname not in keys]
        self._keys = tuple(keys)
        self._key_indexes = tuple(self._keys.index(f.attname) for f in self._key_fields)
        self._includes = [_relation(model, path, what) for path in cfg.includes]
        try:
            model._default_manager.filter(**cfg.where).query  # noqa: B018  (checks lookups)
        except Exception as exc:
            raise ConfigurationError(f"{what}: option 'where': {exc}", option="where") from None
        self._lag = _lag(self._key_fields[0], self._key[0][1], cfg.lag, what)

    def _field(self, name: str, option: str, what: str) -> models.Field[Any, Any]:
        field = self._fields.get(name) or self._attnames.get(name)
        if field is None:
            raise ConfigurationError(
                f"{what}: option {option!r}: {self._model._meta.label} has no field {name!r} "
                f"(fields: {', '.join(self._fields)})", option=option)
        return field

    # -- reading -------------------------------------------------------------------------
    @property
    def alias(self) -> str:
        """The ``DATABASES`` alias read."""
        return self.config.database or router.db_for_read(self._model)

    def each(self, cursor: Any = None) -> Iterator[Message]:
        """Yield the rows after ``cursor`` (all rows when ``None``) in key order.

        Raises:
            ConfigurationError: the cursor is not a position of this source (at once).
        """
        after = None if cursor is None else self._decode(cursor)
        return self._stream(after)

    def _decode(self, position: Any) -> tuple[Any, ...]:
        what = self._label()
        if len(self._key) == 1 and not isinstance(position, (list, tuple)):
            position = [position]
        if not isinstance(position, (list, tuple)) or len(position) != len(self._key):
            raise ConfigurationError(
                f"{what}: cursor {position!r} is not a position of this source: expected "
                f"values of {', '.join(n for n, _ in self._key)}", option="cursor")
        return tuple(decode(f, v, what) for f, v in zip(self._key_fields, position,
                                                         strict=True))

    def _position(self, values: Sequence[Any]) -> Any:
        out = [encode(values[i]) for i in self._key_indexes]
        return out[0] if len(out) == 1 else out

    def _stream(self, after: tuple[Any, ...] | None) -> Generator[Message, None, None]:
        keys = self._keys
        remaining = self.config.limit
        if after is not None and self._lag is not None:
            fixed = self._position_of_key(after)
            window = Q(**{f"{self._key_fields[0].attname}__gte": after[0] - self._lag}) & \
                ~self._after(after)
            for rows in self._pages(None, window, remaining):
                if remaining is not None:
                    remaining -= len(rows)
                for values in rows:
                    message = Row(zip(keys, values[:len(keys)]))  # noqa: B905
                    self._nest(message, values)
                    message.position = fixed
                    yield message
        plain = self._plain_index()
        for rows in self._pages(after, None, remaining):
            if self._includes:
                for values in rows:
                    message = Row(zip(keys, values[:len(keys)]))  # noqa: B905
                    self._nest(message, values)
                    message.position = self._position(values)
                    yield message
            elif plain is not None:  # the hot loop: an integer key, positions as they are
                for values in rows:
                    message = Row(zip(keys, values))  # noqa: B905
                    message.position = values[plain]
                    yield message
            else:
                for values in rows:
                    message = Row(zip(keys, values))  # noqa: B905
                    message.position = self._position(values)
                    yield message

    def _plain_index(self) -> int | None:
        """For a one-field integer key, its place in a row (its values are JSON as they are)."""
        if len(self._key_fields) == 1 and isinstance(
                self._key_fields[0], (models.IntegerField, models.AutoField)):
            return self._key_indexes[0]
        return None

    def _position_of_key(self, key: tuple[Any, ...]) -> Any:
        out = [encode(v) for v in key]
        return out[0] if len(out) == 1 else out

    def _nest(self, message: Row, values: Any) -> None:
        if self._includes:
            message.update(values[len(self._keys)])

    def _after(self, after: Sequence[Any]) -> Q:
        """Rows strictly after ``after`` in key order (the expanded keyset predicate)."""
        result: Q | None = None
        for i, ((_, desc), field) in enumerate(zip(self._key, self._key_fields, strict=True)):
            q = Q(**{f.attname: after[j] for j, f in enumerate(self._key_fields[:i])})
            q &= Q(**{f"{field.attname}__{'lt' if desc else 'gt'}": after[i]})
            result = q if result is None else result | q
        assert result is not None
        return result

    def _queryset(self) -> models.QuerySet[Any]:
        qs = self._model._default_manager.using(self.alias).filter(**self.config.where)
        order = [f"-{f.attname}" if desc else f.attname
                 for (_, desc), f in zip(self._key, self._key_fields, strict=True)]
        return qs.order_by(*order)

    def _pages(self, after: tuple[Any, ...] | None, extra: Q | None,
               remaining: int | None) -> Iterator[list[Any]]:
        base = self._queryset()
        if extra is not None:
            base = base.filter(extra)
        size = self.config.batch_size
        while remaining is None or remaining > 0:
            n = size if remaining is None else min(size, remaining)
            qs = base if after is None else base.filter(self._after(after))
            rows = self._fetch(qs, n)
            if rows:
                yield rows
            if len(rows) < n:
                return
            if remaining is not None:
                remaining -= len(rows)
            last = rows[-1]
            after = tuple(last[i] for i in self._key_indexes)

    def _fetch(self, qs: models.QuerySet[Any], n: int) -> list[Any]:
        alias = self.alias
        connection = connections[alias]
        if not self.config.readonly or connection.in_atomic_block:
            return self._rows(qs, n)
        if connection.vendor == "sqlite":
            with connection.cursor() as cur:
                cur.execute("PRAGMA query_only = ON")
            try:
                return self._rows(qs, n)
            finally:
                with connection.cursor() as cur:
                    cur.execute("PRAGMA query_only = OFF")
        with transaction.atomic(using=alias):
            statement = _READONLY.get(connection.vendor)
            if statement:
                with connection.cursor() as cur:
                    cur.execute(statement)
            return self._rows(qs, n)

    def _rows(self, qs: models.QuerySet[Any], n: int) -> list[Any]:
        if not self._includes:
            return list(qs.values_list(*self._keys)[:n])
        for kind, path in self._includes:
            qs = qs.select_related(path) if kind == "select" else qs.prefetch_related(path)
        out = []
        for obj in qs[:n]:
            values = [getattr(obj, k) for k in self._keys]
            values.append({path.split("__")[0]: _nested(obj, path.split("__"))
                           for _, path in self._includes})
            out.append(values)
        return out

    def count(self) -> int | None:
        """The number of rows a full read yields (``limit`` included)."""
        total = self._model._default_manager.using(self.alias).filter(
            **self.config.where).count()
        return min(total, self.config.limit) if self.config.limit else total


def _key(model: type[models.Model], field: Any, order_by: Sequence[str],
         cursor_column: Sequence[str] | None, what: str) -> list[tuple[str, bool]]:
    """The reading order: cursor columns, else ``order_by``, else the primary key; made
    unique with the primary key."""
    ordered = [(o[1:], True) if o.startswith("-") else (o, False) for o in order_by]
    option = "order_by"
    if cursor_column:
        if ordered and [(c, False) for c in cursor_column] != ordered[:len(cursor_column)]:
            raise ConfigurationError(
                f"{what}: 'order_by' {list(order_by)} conflicts with 'cursor_column' "
                f"{list(cursor_column)}: an incremental source reads in cursor order; set one "
                "of them", option="order_by")
        ordered = [(c, False) for c in cursor_column] + ordered[len(cursor_column):]
        option = "cursor_column"
    pk = model._meta.pk
    assert pk is not None
    if not ordered:
        ordered = [(pk.name, False)]
    fields = [field(n, option, what) for n, _ in ordered]
    if len({f.attname for f in fields}) != len(fields):
        raise ConfigurationError(f"{what}: option {option!r} repeats a field", option=option)
    for f in fields:
        if f.null and not f.primary_key:
            raise ConfigurationError(
                f"{what}: option {option!r}: field {f.name!r} is nullable, and rows where it "
                "is NULL would never be read in key order; make it null=False or read in "
                "another order", option=option)
    if not any(f.primary_key or (f.unique and len(fields) == 1) for f in fields):
        ordered.append((pk.name, ordered[-1][1]))
    return ordered


def _relation(model: type[models.Model], path: str, what: str) -> tuple[str, str]:
    """``("select" | "prefetch", django_path)`` of an ``includes`` entry (``a.b`` or ``a__b``)."""
    steps = path.replace(".", "__").split("__")
    current: Any = model
    kind = "select"
    for step in steps:
        try:
            field = current._meta.get_field(step)
        except Exception:
            raise ConfigurationError(
                f"{what}: option 'includes': {current._meta.label} has no relation {step!r}",
                option="includes") from None
        if not field.is_relation:
            raise ConfigurationError(
                f"{what}: option 'includes': {step!r} of {current._meta.label} is not a "
                "relation", option="includes")
        if field.many_to_many or field.one_to_many:
            kind = "prefetch"
        current = field.related_model
    return kind, "__".join(steps)


def _as_dict(obj: models.Model) -> dict[str, Any]:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def _nested(obj: Any, steps: list[str]) -> Any:
    """The relation ``steps[0]`` of ``obj`` as dicts, with ``steps[1:]`` nested inside."""
    step, rest = steps[0], steps[1:]
    value = getattr(obj, step, None)
    if value is None:
        return None
    if isinstance(value, models.Manager):
        items = list(value.all())
        out = [_as_dict(item) for item in items]
        if rest:
            for item, d in zip(items, out, strict=True):
                d[rest[0]] = _nested(item, rest)
        return out
    out_one = _as_dict(value)
    if rest:
        out_one[rest[0]] = _nested(value, rest)
    return out_one


def _lag(field: Any, descending: bool, lag: Any, what: str) -> Any:
    if lag is None:
        return None
    if descending:
        raise ConfigurationError(f"{what}: option 'lag' needs an ascending cursor", option="lag")
    if isinstance(field, (models.DateTimeField, models.DateField)):
        return lag if isinstance(lag, dt.timedelta) else dt.timedelta(seconds=float(lag))
    if isinstance(field, (models.IntegerField, models.AutoField)) and not isinstance(
            lag, dt.timedelta):
        return int(lag)
    if isinstance(field, (models.DecimalField, models.FloatField)) and not isinstance(
            lag, dt.timedelta):
        return Decimal(str(lag)) if isinstance(field, models.DecimalField) else float(lag)
    raise ConfigurationError(
        f"{what}: option 'lag' ({lag!r}) does not fit the cursor field {field.name!r}: use a "
        "timedelta or seconds for date/time fields and a number for numeric ones", option="lag")
