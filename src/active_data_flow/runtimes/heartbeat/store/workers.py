"""Heartbeat callers in SQL: who beats, and when they last did."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from active_data_flow.runtimes.heartbeat.store._rows import worker_record
from active_data_flow.runtimes.heartbeat.store._shared import SqlRepository
from active_data_flow.runtimes.heartbeat.store.models import workers
from active_data_flow.runtimes.heartbeat.store.records import WorkerRecord

__all__ = ["SqlWorkers", "host_and_pid"]


def host_and_pid(worker_id: str) -> tuple[str, int]:
    """The host and process a ``hostname:pid`` worker id names (this process's otherwise)."""
    host, _, pid = worker_id.rpartition(":")
    return host or socket.gethostname(), int(pid) if pid.isdigit() else os.getpid()


class SqlWorkers(SqlRepository):
    """The workers repository on a SQL database (see :class:`~.base.WorkerRepository`)."""

    def record_beat(self, worker_id: str, claimed: int) -> None:
        def work(conn: Connection) -> None:
            now = self.now()
            values = {"last_beat_at": now, "last_claimed": claimed,
                      "beats": workers.c.beats + 1}
            if conn.execute(workers.update().where(workers.c.id == worker_id)
                            .values(**values)).rowcount:
                return
            host, pid = host_and_pid(worker_id)
            try:
                with conn.begin_nested():
                    conn.execute(workers.insert().values(
                        id=worker_id, hostname=host, pid=pid, started_at=now,
                        last_beat_at=now, beats=1, last_claimed=claimed))
            except sa.exc.IntegrityError:  # registered concurrently under the same id
                conn.execute(workers.update().where(workers.c.id == worker_id).values(**values))

        self._db.transact(work)

    def recent(self, *, seen_within: float | None = None) -> list[WorkerRecord]:
        def work(conn: Connection) -> list[WorkerRecord]:
            query = sa.select(workers).order_by(workers.c.last_beat_at.desc())
            if seen_within is not None:
                since = self.now() - timedelta(seconds=seen_within)
                query = query.where(workers.c.last_beat_at >= since)
            return [worker_record(r) for r in conn.execute(query.limit(1000))]

        return self._db.transact(work, write=False)

    def last_beat(self) -> datetime | None:
        return self._db.transact(lambda conn: conn.execute(
            sa.select(sa.func.max(workers.c.last_beat_at))).scalar(), write=False)
