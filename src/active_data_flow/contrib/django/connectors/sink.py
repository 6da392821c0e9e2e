"""DjangoSink: ``bulk_create`` batches and upserts, or one ``save()`` per record."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import django
from django.core.exceptions import ValidationError
from django.db import DatabaseError, DataError, IntegrityError, connections, models, router
from django.db import transaction as db_transaction

from active_data_flow.connector import Sink
from active_data_flow.connectors._table_options import TableSinkOptions
from active_data_flow.contrib.django.connectors._handle import DjangoTransaction
from active_data_flow.contrib.django.connectors._options import DjangoModelOptions
from active_data_flow.errors import ConfigurationError, RecordRejected, SinkError
from active_data_flow.message import Message, Row, Untyped, as_record, record_key
from active_data_flow.registry import register_connector

__all__ = ["DjangoSink"]

log = logging.getLogger(__name__)

Record = dict[str, Any]
_PLAIN = (dict, Row, Untyped)
# Errors one bad record can cause in a statement: find that record and isolate it.
_HAS_CONSTRAINT_CHECKS = django.VERSION >= (4, 1)
_RECORD_ERRORS = (IntegrityError, DataError, ValidationError, ValueError, TypeError)


class _Refused(Exception):
    """A record the database or a validator refused (with the record and the cause)."""

    def __init__(self, record: Record, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.record, self.cause = record, cause


@register_connector("django")
class DjangoSink(Sink):
    """Write records to a Django model.

    Options:
        model: the model class, ``"app_label.Model"`` or an import string.
        batch_size: records per ``bulk_create`` statement, and how many a write may find
            buffered before it flushes them (default 1000). ``1`` is the single-record path:
            ``full_clean()`` then ``save()`` per record, so validators run and ``pre_save`` /
            ``post_save`` signals are sent.
        upsert: insert, or update the row with the same ``unique_by`` key
            (``bulk_create(update_conflicts=True)``; ``update_or_create`` semantics on the
            single-record path).
        unique_by: the unique field(s) upserts match on (default: the primary key).
        update_only: the fields an upsert updates (default: all written fields but the key;
            ``[]`` leaves existing rows untouched).
        transaction: write each flush in one ``transaction.atomic`` block (default true);
            false commits each statement on its own.
        transaction_batch_size: commit every this many records within a flush instead.
        skip_validations: single-record path: no ``full_clean()``.
        skip_callbacks: single-record path: no ``save()`` (and so no signals): the record is
            written with ``bulk_create`` / ``update()``.
        database: a ``DATABASES`` alias (default: the router's ``db_for_write``).

    ``flush()`` is the durability point. A record refused by a validator or the database
    (unique violation, bad value) is found, logged with its key and reported as
    :class:`~active_data_flow.errors.RecordRejected`: raised (the flush's transaction rolls
    back) or, under a flow's ``skip``/``dead_letter`` policy, passed on while the rest of the
    batch is committed.
    """

    untrusted_ok = True  # stored specs name allowed models and DATABASES aliases only

    class Config(DjangoModelOptions, TableSinkOptions):
        """The model options and every table sink's (see :class:`TableSinkOptions`)."""

    config: Config

    def _setup(self) -> None:
        what = self._label()
        cfg = self.config
        cfg.check(what)
        model: type[models.Model] = cfg.model
        self._model = model
        meta = model._meta
        self._fields: dict[str, models.Field[Any, Any]] = {}
        for f in meta.concrete_fields:
            self._fields[f.name] = f
            self._fields[f.attname] = f
        if cfg.transaction_batch_size is not None and not cfg.transaction:
            raise ConfigurationError(
                f"{what}: option 'transaction_batch_size' needs transaction=true",
                option="transaction_batch_size")
        pk = meta.pk
        assert pk is not None
        self._pk = pk
        self._unique_by: tuple[str, ...] | None = None
        self._update_only: tuple[str, ...] | None = None
        if not cfg.upsert:
            for option in ("unique_by", "update_only"):
                if getattr(cfg, option) is not None:
                    raise ConfigurationError(f"{what}: option {option!r} needs upsert=true",
                                             option=option)
        else:
            unique_by = tuple(self._name(n, "unique_by") for n in (cfg.unique_by or [pk.name]))
            if not _is_unique(model, unique_by):
                raise ConfigurationError(
                    f"{what}: option 'unique_by': ({', '.join(unique_by)}) is not a unique key "
                    f"of {meta.label}; declare unique=True or a UniqueConstraint",
                    option="unique_by")
            self._unique_by = unique_by
            if cfg.update_only is not None:
                self._update_only = tuple(self._name(n, "update_only") for n in cfg.update_only)
        self._key_fields = self._unique_by or (pk.name,)
        self._threshold = max(cfg.batch_size, cfg.transaction_batch_size or 0)
        self._buffer: list[Record] = []

    def _name(self, name: str, option: str) -> str:
        field = self._fields.get(name)
        if field is None:
            raise ConfigurationError(
                f"{self._label()}: option {option!r}: {self._model._meta.label} has no field "
                f"{name!r}", option=option)
        return field.name

    @property
    def alias(self) -> str:
        """The ``DATABASES`` alias written."""
        return self.config.database or router.db_for_write(self._model)

    # -- buffering -----------------------------------------------------------------------
    def write(self, record: Message | Mapping[str, Any]) -> None:
        """Buffer one record, flushing first if ``batch_size`` records are waiting."""
        if len(self._buffer) >= self._threshold:
            self.flush()
        self._buffer.append(as_record(record))

    def write_batch(self, records: Iterable[Message | Mapping[str, Any]]) -> None:
        """Buffer records; those of one call are committed together by the next flush."""
        if len(self._buffer) >= self._threshold:
            self.flush()
        plain = _PLAIN
        self._buffer.extend([
            r if type(r) in plain else as_record(r)  # type: ignore[misc]
            for r in records
        ])

    def discard(self) -> None:
        """Drop the records not flushed yet."""
        self._buffer = []

    def flush(self) -> None:
        """Write and commit everything buffered.

        Raises:
            RecordRejected: a record was refused and no ``on_reject`` handler is set.
            SinkError: a record names a field the model does not have, or a statement failed.
        """
        self._flush(None)

    def flush_with(self, hook: Callable[[Any], bool]) -> bool:
        """Flush, calling ``hook(handle)`` inside the same ``transaction.atomic`` block just
        before it commits (``handle.execute(sqlalchemy_statement)`` runs on this alias's
        connection). Without ``transaction`` the hook is not called and ``False`` returned.
        """
        if not self.config.transaction:
            self.flush()
            return False
        return self._flush(hook)

    # -- transactions --------------------------------------------------------------------
    def _flush(self, hook: Callable[[Any], bool] | None) -> bool:
        if not self._buffer and hook is None:
            return False
        cfg = self.config
        size = (cfg.transaction_batch_size if cfg.transaction else None) or len(self._buffer) or 1
        while True:
            records = self._buffer[:size] if len(self._buffer) > size else self._buffer
            last = records is self._buffer
            result = self._transaction(records, hook if last else None)
            if last:
                self._buffer = []
                return result
            del self._buffer[:len(records)]

    def _transaction(self, records: list[Record], hook: Callable[[Any], bool] | None) -> bool:
        """Write ``records`` (and run ``hook``) in one ``atomic`` block.

        The first try writes without savepoints; if a record makes a statement fail, the
        block rolls back and the batch is written again with each statement in a savepoint,
        to find the refused records (reported, or raised under the ``fail`` policy).
        Without ``transaction`` every statement is its own transaction, so the batch is
        written that way at once.
        """
        last: Any = None
        for record in records:
            keys = record.keys()
            if keys != last:
                self._check_fields(record)
                last = keys
        alias = self.alias
        isolate = not self.config.transaction
        while True:
            rejected: list[RecordRejected] = []
            try:
                if self.config.transaction:
                    with db_transaction.atomic(using=alias):
                        self._write(records, rejected, isolate)
                        result = bool(hook(DjangoTransaction(alias))) if hook else False
                else:
                    self._write(records, rejected, isolate)
                    result = False
            except RecordRejected:
                raise
            except _RECORD_ERRORS:
                if isolate:
                    raise
                isolate = True  # rolled back: find the refused records
                continue
            except DatabaseError as exc:
                raise SinkError(f"sink ({alias}): writing {self._model._meta.label} records "
                                f"failed: {type(exc).__name__}: {exc}") from exc
            for rejection in rejected:
                self.reject(rejection)
            return result

    def _check_fields(self, record: Record) -> None:
        unknown = [k for k in record if k not in self._fields]
        if unknown:
            raise SinkError(
                f"{self._label()}: record {self._key(record)!r} has field(s) "
                f"{', '.join(map(repr, unknown))} that are not fields of "
                f"{self._model._meta.label}")
        if self._unique_by is not None:
            missing = [k for k in self._unique_by if k not in record
                       and self._fields[k].attname not in record]
            if missing:
                raise SinkError(f"{self._label()}: record {self._key(record)!r} lacks the "
                                f"upsert key field(s) {', '.join(map(repr, missing))}")

    # -- writing -------------------------------------------------------------------------
    def _write(self, records: list[Record], rejected: list[RecordRejected],
               isolate: bool) -> None:
        if self.config.batch_size == 1:
            for record in records:
                self._guarded(functools.partial(self._save_one, record), [record], rejected)
            return
        if self._unique_by is not None:
            records = _last_per_key(records, self._unique_by)
        size = self.config.batch_size
        for start in range(0, len(records), size):
            chunk = records[start:start + size]
            if isolate:
                self._guarded(functools.partial(self._bulk, chunk), chunk, rejected)
            else:
                self._bulk(chunk)

    def _guarded(self, write: Callable[[], None], records: list[Record],
                 rejected: list[RecordRejected]) -> None:
        """Run ``write`` in a savepoint; if a record made it fail, isolate that record."""
        try:
            with db_transaction.atomic(using=self.alias):
                write()
            return
        except _RECORD_ERRORS as exc:
            if len(records) == 1:
                rejection = self._rejection(records[0], exc)
                if self.on_reject is None:
                    raise rejection from exc
                rejected.append(rejection)
                return
        for record in records:  # one at a time: find the refused ones
            self._guarded(functools.partial(self._bulk, [record]), [record], rejected)

    def _bulk(self, records: list[Record]) -> None:
        manager = self._model._default_manager.db_manager(self.alias)
        objects = [self._model(**r) for r in records]
        if self._unique_by is None:
            manager.bulk_create(objects)
            return
        written = list(dict.fromkeys(self._fields[k].name for r in records for k in r))
        update = list(self._update_only) if self._update_only is not None else [
            f for f in written if f not in self._unique_by and f != self._pk.name]
        if not update:
            manager.bulk_create(objects, ignore_conflicts=True)
            return
        features = connections[self.alias].features
        unique = list(self._unique_by) if features.supports_update_conflicts_with_target \
            else None
        manager.bulk_create(objects, update_conflicts=True, update_fields=update,
                            unique_fields=unique)

    def _save_one(self, record: Record) -> None:
        """The single-record path: ``full_clean()`` and ``save()`` (signals sent)."""
        cfg = self.config
        manager = self._model._default_manager.db_manager(self.alias)
        obj = None
        if self._unique_by is not None:
            key = {k: record.get(k, record.get(self._fields[k].attname))
                   for k in self._unique_by}
            obj = manager.filter(**key).first()
        if obj is None:
            obj = self._model(**record)
            if not cfg.skip_validations:
                self._clean(obj)
            if cfg.skip_callbacks:
                manager.bulk_create([obj])
            else:
                obj.save(using=self.alias, force_insert=True)
            return
        unique = self._unique_by or ()
        fields = [self._fields[k] for k in record
                  if self._fields[k].name not in unique and not self._fields[k].primary_key]
        if self._update_only is not None:
            fields = [f for f in fields if f.name in self._update_only]
        if not fields:
            return
        for f in fields:
            setattr(obj, f.attname, record.get(f.attname, record.get(f.name)))
        if not cfg.skip_validations:
            self._clean(obj)
        names_ = [f.name for f in fields]
        if cfg.skip_callbacks:
            manager.filter(pk=obj.pk).update(**{n: getattr(obj, self._fields[n].attname)
                                                for n in names_})
        else:
            obj.save(using=self.alias, update_fields=names_)

    def _clean(self, obj: models.Model) -> None:
        """``full_clean()``. Django checks unique fields and constraints with queries on the
        router's database: writing elsewhere, the database enforces them (a refused record
        all the same)."""
        here = self.alias == router.db_for_read(self._model)
        obj.full_clean(validate_unique=here, **({"validate_constraints": here}
                                                 if _HAS_CONSTRAINT_CHECKS else {}))

    def _key(self, record: Record) -> Any:
        values = tuple(record.get(f, record.get(self._fields[f].attname)) if f in self._fields
                       else record.get(f) for f in self._key_fields)
        if all(v is None for v in values):
            return record_key(record)
        return values[0] if len(values) == 1 else values

    def _rejection(self, record: Record, error: BaseException) -> RecordRejected:
        key = self._key(record)
        if isinstance(error, ValidationError):
            reason = "ValidationError: " + "; ".join(
                f"{field}: {' '.join(map(str, msgs))}"
                for field, msgs in error.message_dict.items()) if hasattr(
                error, "error_dict") else f"ValidationError: {' '.join(error.messages)}"
        else:
            cause = error.__cause__ or error
            reason = " ".join(f"{type(cause).__name__}: {cause}".split())
        rejection = RecordRejected(
            f"sink ({self.alias}): {self._model._meta.label} record {key!r} rejected: "
            f"{reason[:500]}", record=record, key=key)
        log.warning("%s", rejection, extra={"action": "record_rejected", "key": repr(key)})
        return rejection


def _is_unique(model: type[models.Model], fields: tuple[str, ...]) -> bool:
    meta = model._meta
    wanted = set(fields)
    if len(fields) == 1:
        field = meta.get_field(fields[0])
        if getattr(field, "primary_key", False) or getattr(field, "unique", False):
            return True
    for together in meta.unique_together:
        if set(together) == wanted:
            return True
    for constraint in meta.constraints:
        if isinstance(constraint, models.UniqueConstraint) and constraint.condition is None \
                and set(constraint.fields) == wanted:
            return True
    return False


def _last_per_key(records: list[Record], key: tuple[str, ...]) -> list[Record]:
    """Upserts: the last record of each key wins (one statement cannot update a row twice)."""
    latest: dict[Any, Record] = {}
    for record in records:
        k = tuple(repr(record.get(f)) for f in key)
        latest.pop(k, None)
        latest[k] = record
    return list(latest.values()) if len(latest) != len(records) else records
