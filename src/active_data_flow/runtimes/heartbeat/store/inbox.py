"""The inbox in SQL: records pushed to flows over HTTP, until their source has read them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from active_data_flow.runtimes.heartbeat.store._shared import SqlRepository
from active_data_flow.runtimes.heartbeat.store.models import flows, inbox
from active_data_flow.runtimes.heartbeat.store.records import (
    FlowNotFound,
    InboxEntry,
    InboxReceipt,
)

__all__ = ["SqlInbox", "new_entries"]

_KEYS_PER_QUERY = 500


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
        def work(conn: Connection) -> InboxReceipt:
            # The flow's row lock serialises pushes to one flow: ids commit in order, so a
            # reader never passes an id that a slower push would commit later.
            found = conn.execute(sa.select(flows.c.id).where(flows.c.name == flow)
                                 .with_for_update()).scalar()
            if found is None:
                raise FlowNotFound(f"no flow named {flow!r} in the store", option="flow")
            keys = sorted({k for k, _ in records if k is not None})
            taken: set[str] = set()
            for start in range(0, len(keys), _KEYS_PER_QUERY):
                chunk = keys[start:start + _KEYS_PER_QUERY]
                taken.update(conn.execute(sa.select(inbox.c.key).where(
                    inbox.c.flow == flow, inbox.c.key.in_(chunk))).scalars())
            fresh, duplicates = new_entries(records, taken)
            now = self.now()
            if fresh:
                conn.execute(inbox.insert(), [
                    {"flow": flow, "key": key, "payload": dict(record), "received_at": now}
                    for key, record in fresh])
            last = conn.execute(sa.select(sa.func.max(inbox.c.id))
                                .where(inbox.c.flow == flow)).scalar()
            return InboxReceipt(accepted=len(fresh), duplicates=duplicates,
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
