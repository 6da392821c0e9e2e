"""The inbox in SQL: records pushed to flows over HTTP, until their source has read them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection

from active_data_flow.runtimes.heartbeat.store._shared import SqlRepository
from active_data_flow.runtimes.heartbeat.store.models import flows, inbox
from active_data_flow.runtimes.heartbeat.store.records import (
    FlowNotFound,
    InboxEntry,
    InboxReceipt,
)

__all__ = ["SqlInbox", "new_entries"]


def _insert_new(dialect: str) -> Any:
    """An INSERT into the inbox that skips a row whose (flow, key) is taken."""
    if dialect == "postgresql":
        return postgresql.insert(inbox).on_conflict_do_nothing(index_elements=["flow", "key"])
    if dialect == "sqlite":
        return sqlite.insert(inbox).on_conflict_do_nothing(index_elements=["flow", "key"])
    statement = mysql.insert(inbox)  # no-op on a duplicate key (still an error otherwise)
    return statement.on_duplicate_key_update(id=inbox.c.id)


def new_entries(records: Sequence[tuple[str | None, Mapping[str, Any]]],
                taken: set[str]) -> tuple[list[tuple[str | None, Mapping[str, Any]]], int]:
    """The records to store (keys not ``taken``, first of a key repeated in the push) and
    how many were duplicates. Updates ``taken``."""
    fresh: list[tuple[str | None, Mapping[str, Any]]] = []
    duplicates = 0
    for key, record in records:
        if key is not None:
            if key in taken:
                duplicates += 1
                continue
            taken.add(key)
        fresh.append((key, record))
    return fresh, duplicates


class SqlInbox(SqlRepository):
    """The inbox repository on a SQL database (see :class:`~.base.InboxRepository`)."""

    def push(self, flow: str, records: Sequence[tuple[str | None, Mapping[str, Any]]],
             ) -> InboxReceipt:
        fresh, repeated = new_entries(records, set())  # a key twice in one push: once
        now = self.now()
        rows = [{"flow": flow, "key": key, "payload": dict(record), "received_at": now}
                for key, record in fresh]

        def work(conn: Connection) -> InboxReceipt:
            # The flow's row lock serialises pushes to one flow: ids commit in order, so a
            # reader never passes an id that a slower push would commit later.
            found = conn.execute(sa.select(flows.c.id).where(flows.c.name == flow)
                                 .with_for_update()).scalar()
            if found is None:
                raise FlowNotFound(f"no flow named {flow!r} in the store", option="flow")
            mine = inbox.c.flow == flow
            before = conn.execute(sa.select(sa.func.max(inbox.c.id)).where(mine)).scalar()
            if rows:  # a taken key is skipped by the unique constraint itself (a retry)
                conn.execute(_insert_new(conn.dialect.name), rows)
            if before is not None:
                mine = sa.and_(mine, inbox.c.id > before)
            stored, last = conn.execute(
                sa.select(sa.func.count(), sa.func.max(inbox.c.id)).where(mine)).one()
            return InboxReceipt(accepted=int(stored),
                                duplicates=repeated + len(rows) - int(stored),
                                last_id=None if last is None else int(last))

        return self._db.transact(work)

    def read(self, flow: str, after: int | None, limit: int) -> list[InboxEntry]:
        query = sa.select(inbox).where(inbox.c.flow == flow)
        if after is not None:
            query = query.where(inbox.c.id > after)
        query = query.order_by(inbox.c.id).limit(limit)
        return self._db.transact(lambda conn: [
            InboxEntry(id=r.id, flow=r.flow, key=r.key, payload=r.payload,
                       received_at=r.received_at) for r in conn.execute(query)], write=False)

    def count(self, flow: str, after: int | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(inbox).where(inbox.c.flow == flow)
        if after is not None:
            query = query.where(inbox.c.id > after)
        return int(self._db.transact(lambda conn: conn.execute(query).scalar_one(),
                                     write=False))

    def purge(self, flow: str, upto: int, received_before: datetime) -> int:
        statement = inbox.delete().where(inbox.c.flow == flow, inbox.c.id <= upto,
                                         inbox.c.received_at < received_before)
        return int(self._db.transact(lambda conn: conn.execute(statement).rowcount))
