"""The single-record path (``batch_size=1``): one ORM object per record, as ``create!`` does.

Each record is written inside its own SAVEPOINT, so one that fails (a validator raises, a
unique key is taken, a value does not fit its column) is rolled back alone and reported,
while the others stay in the batch's transaction:

* by default the record becomes an object through the model's constructor, so
  ``@validates`` validators run, and is flushed, so mapper events (``before_insert``,
  ``after_insert``...) fire;
* ``skip_validations`` fills the object without calling validators (events still fire);
* ``skip_callbacks`` writes the record with a Core ``INSERT`` instead of flushing an
  object, so no mapper or session event fires (validators still run unless skipped too).

With ``upsert`` the existing row (found by ``unique_by``) is loaded and its ``update_only``
attributes assigned, so validators and update events run for updates as well.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from active_data_flow.connectors.sqlalchemy._models import ModelInfo
from active_data_flow.connectors.sqlalchemy._upsert import UpsertSpec, insert_statement

__all__ = ["RECORD_ERRORS", "SingleWriter"]

Record = dict[str, Any]

#: Errors that condemn one record rather than the batch: validators raise ValueError (or
#: TypeError/AssertionError); the database raises IntegrityError or DataError.
RECORD_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, AssertionError, sa.exc.IntegrityError, sa.exc.DataError,
)


class SingleWriter:
    """Writes records one ORM object (or one Core statement) at a time."""

    def __init__(
        self, info: ModelInfo, upsert: UpsertSpec | None, *,
        skip_validations: bool, skip_callbacks: bool,
    ) -> None:
        self.info = info
        self.upsert = upsert
        self.skip_validations = skip_validations
        self.skip_callbacks = skip_callbacks

    def write(
        self, conn: Connection, records: Sequence[Record],
        rejected: Callable[[Record, BaseException], None],
    ) -> None:
        """Write each record in its own savepoint; pass failing ones to ``rejected``."""
        # rollback_only: the session works inside the sink's transaction and never commits
        # or ends it; the sink commits after the whole batch.
        session = Session(bind=conn, join_transaction_mode="rollback_only", autoflush=False,
                          expire_on_commit=False)
        try:
            for record in records:
                try:
                    with session.begin_nested():
                        self._one(session, record)
                except RECORD_ERRORS as exc:
                    rejected(record, exc)
                session.expunge_all()  # memory stays flat however long the batch
        finally:
            session.close()

    def _one(self, session: Session, record: Record) -> None:
        if self.skip_callbacks:
            values = record if self.skip_validations else self._validated(record)
            conn = session.connection()
            stmt = insert_statement(self.info, list(values), conn.dialect.name, self.upsert)
            conn.execute(stmt, {self.info.columns[k].key: v for k, v in values.items()})
            return
        if self.upsert is not None and self._update_existing(session, record):
            return
        session.add(self._build(record))

    def _build(self, record: Record) -> Any:
        if not self.skip_validations:
            return self.info.cls(**record)  # the constructor runs @validates validators
        obj = self.info.mapper.class_manager.new_instance()
        # Writing the instance dict bypasses attribute events, hence validators; a pending
        # object's flush inserts what its dict holds.
        obj.__dict__.update(record)
        return obj

    def _validated(self, record: Record) -> Record:
        obj = self.info.cls(**record)
        return {key: obj.__dict__.get(key, value) for key, value in record.items()}

    def _update_existing(self, session: Session, record: Record) -> bool:
        assert self.upsert is not None
        key = {k: record[k] for k in self.upsert.unique_by}
        existing = session.scalars(sa.select(self.info.cls).filter_by(**key)).one_or_none()
        if existing is None:
            return False
        for name in self.upsert.updates(list(record)):
            if self.skip_validations:
                existing.__dict__[name] = record[name]
                flag_modified(existing, name)
            else:
                setattr(existing, name, record[name])
        return True
