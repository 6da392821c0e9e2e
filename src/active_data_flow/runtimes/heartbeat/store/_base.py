"""State and helpers every part of the store shares.

Lock order, everywhere: a flow's live run row first, then the flow row. Claiming locks only
run rows; finishing, checkpointing and reclaiming lock the run, then its flow; pausing,
triggering, resuming and editing lock the flow's live run (if any), then the flow. A
transaction that may insert a flow's next pending run holds that flow's row lock, so two
inserts never race (and the unique ``live_flow_id`` would refuse the second anyway).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from active_data_flow.runtimes.heartbeat.models import FlowStatus, RunStatus, flows, runs
from active_data_flow.runtimes.heartbeat.records import FlowNotFound, FlowRecord
from active_data_flow.runtimes.heartbeat.schedule import schedule_of
from active_data_flow.runtimes.heartbeat.store._db import Database
from active_data_flow.runtimes.heartbeat.store._rows import AnyRow, flow_record, flow_select

__all__ = ["StoreBase", "utcnow"]


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class StoreBase:
    """Attributes and helpers of :class:`FlowStore` used by its parts."""

    _db: Database
    _clock: Callable[[], datetime]
    lease_seconds: float

    def now(self) -> datetime:
        """The store's current time (UTC; injectable for tests with ``clock=``)."""
        return self._clock()

    def lease_until(self, now: datetime) -> datetime:
        """When a lease renewed at ``now`` expires."""
        return now + timedelta(seconds=self.lease_seconds)

    # -- reading -------------------------------------------------------------------------
    def _flow_by_name(self, conn: Connection, name: str) -> FlowRecord:
        row = conn.execute(flow_select().where(flows.c.name == name)).first()
        if row is None:
            raise FlowNotFound(f"no flow named {name!r} in the store", option="name")
        return flow_record(row)

    def _flow_by_id(self, conn: Connection, flow_id: int) -> FlowRecord:
        row = conn.execute(flow_select().where(flows.c.id == flow_id)).first()
        if row is None:
            raise FlowNotFound(f"no flow with id {flow_id} in the store", option="id")
        return flow_record(row)

    def _flow_id(self, conn: Connection, name: str) -> int:
        found = conn.execute(sa.select(flows.c.id).where(flows.c.name == name)).scalar()
        if found is None:
            raise FlowNotFound(f"no flow named {name!r} in the store", option="name")
        return int(found)

    # -- locking, in the documented order ------------------------------------------------
    def _lock_live(self, conn: Connection, flow_id: int) -> AnyRow | None:
        """Lock and return the flow's live run (pending or running), if it has one."""
        return conn.execute(
            sa.select(runs.c.id, runs.c.status, runs.c.due_at, runs.c.trigger)
            .where(runs.c.live_flow_id == flow_id)
            .with_for_update()
        ).first()

    def _lock_flow(self, conn: Connection, flow_id: int) -> AnyRow:
        row = conn.execute(
            sa.select(flows.c.status, flows.c.runtime, flows.c.rerun_requested)
            .where(flows.c.id == flow_id)
            .with_for_update()
        ).first()
        if row is None:
            raise FlowNotFound(f"no flow with id {flow_id} in the store", option="id")
        return row

    def _lock_live_then_flow(
        self, conn: Connection, flow_id: int
    ) -> tuple[AnyRow | None, AnyRow]:
        live = self._lock_live(conn, flow_id)
        flow = self._lock_flow(conn, flow_id)
        if live is None:  # one may have been inserted before we held the flow lock
            live = self._lock_live(conn, flow_id)
        return live, flow

    # -- writing -------------------------------------------------------------------------
    def _insert_pending(
        self, conn: Connection, flow_id: int, trigger: str, due_at: datetime, now: datetime
    ) -> int:
        """Insert the flow's next pending run (the caller holds the flow's row lock)."""
        result = conn.execute(
            runs.insert().values(
                flow_id=flow_id, status=RunStatus.PENDING.value, live_flow_id=flow_id,
                trigger=trigger, due_at=due_at, attempt=0, created_at=now,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def _schedule_first(
        self, conn: Connection, flow_id: int, runtime: dict[str, Any], now: datetime
    ) -> None:
        """Give an active, scheduled flow with no live run its first pending run."""
        schedule = schedule_of(runtime)
        if schedule is not None:
            self._insert_pending(conn, flow_id, "schedule", schedule.first_due(now), now)

    def _reschedule(
        self, conn: Connection, flow_id: int, live: AnyRow | None, flow: AnyRow,
        runtime: dict[str, Any], now: datetime,
    ) -> None:
        """After a flow's schedule changed: bring its pending run in line."""
        if flow.status != FlowStatus.ACTIVE.value:
            return
        schedule = schedule_of(runtime)
        if live is None:
            if schedule is not None:
                self._insert_pending(conn, flow_id, "schedule", schedule.first_due(now), now)
            return
        if live.status != RunStatus.PENDING.value or live.trigger != "schedule":
            return  # a running run reschedules when it ends; manual runs stay as asked
        if schedule is None:
            self._cancel_pending(conn, live.id, now, "cancelled: the flow is no longer scheduled")
            return
        if schedule.seconds is not None:  # sooner if the interval shrank, never later
            due = min(live.due_at, now + timedelta(seconds=schedule.seconds))
        else:
            due = schedule.first_due(now)
        conn.execute(runs.update().where(runs.c.id == live.id,
                                         runs.c.status == RunStatus.PENDING.value)
                     .values(due_at=due))

    def _cancel_pending(self, conn: Connection, run_id: int, now: datetime, why: str) -> int:
        return conn.execute(
            runs.update()
            .where(runs.c.id == run_id, runs.c.status == RunStatus.PENDING.value)
            .values(status=RunStatus.CANCELLED.value, live_flow_id=None, ended_at=now,
                    error=why)
        ).rowcount
