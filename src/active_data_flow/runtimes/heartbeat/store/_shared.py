"""What the SQL repositories share: the database, the settings, locking and scheduling.

Lock order, everywhere: a flow's live run row first, then the flow row. Claiming locks only
run rows; finishing, checkpointing and reclaiming lock the run, then its flow; pausing,
triggering, resuming and editing lock the flow's live run (if any), then the flow. A
transaction that may insert a flow's next pending run holds that flow's row lock, so two
inserts never race (and the unique ``live_flow_id`` would refuse the second anyway).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from active_data_flow.runtimes.heartbeat.schedule import schedule_of
from active_data_flow.runtimes.heartbeat.store._db import Database
from active_data_flow.runtimes.heartbeat.store._rows import AnyRow, flow_record, flow_select
from active_data_flow.runtimes.heartbeat.store.base import StoreSettings, next_due, unschedulable
from active_data_flow.runtimes.heartbeat.store.models import flows, runs
from active_data_flow.runtimes.heartbeat.store.records import (
    FlowNotFound,
    FlowRecord,
    FlowStatus,
    RunStatus,
)

__all__ = ["SqlRepository"]

log = logging.getLogger(__name__)

_PENDING = RunStatus.PENDING.value


class SqlRepository:
    """Base of the SQL repositories: one database, the store's settings, shared helpers."""

    def __init__(self, db: Database, settings: StoreSettings) -> None:
        self._db = db
        self._settings = settings

    def now(self) -> datetime:
        """The store's current time."""
        return self._settings.now()

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
            sa.select(flows.c.status, flows.c.spec, flows.c.rerun_requested)
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

    # -- scheduling ----------------------------------------------------------------------
    def _insert_pending(
        self, conn: Connection, flow_id: int, trigger: str, due_at: datetime, now: datetime
    ) -> int:
        """Insert the flow's next pending run (the caller holds the flow's row lock)."""
        result = conn.execute(runs.insert().values(
            flow_id=flow_id, status=_PENDING, live_flow_id=flow_id, trigger=trigger,
            due_at=due_at, attempt=0, created_at=now))
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def _schedule_first(
        self, conn: Connection, flow_id: int, spec: dict[str, Any], now: datetime
    ) -> None:
        """Give an active, scheduled flow with no live run its first pending run."""
        schedule = schedule_of(spec.get("runtime") or {})
        if schedule is not None:
            self._insert_pending(conn, flow_id, "schedule", schedule.first_due(now), now)

    def _reschedule(
        self, conn: Connection, flow_id: int, live: AnyRow | None, flow: AnyRow,
        spec: dict[str, Any], now: datetime,
    ) -> None:
        """After a flow's schedule changed: bring its pending run in line."""
        if flow.status != FlowStatus.ACTIVE.value:
            return
        schedule = schedule_of(spec.get("runtime") or {})
        if live is None:
            if schedule is not None:
                self._insert_pending(conn, flow_id, "schedule", schedule.first_due(now), now)
            return
        if live.status != _PENDING or live.trigger != "schedule":
            return  # a running run reschedules when it ends; manual runs stay as asked
        if schedule is None:
            self._cancel_pending(conn, live.id, now, "cancelled: the flow is no longer scheduled")
            return
        if schedule.seconds is not None:  # sooner if the interval shrank, never later
            due = min(live.due_at, now + timedelta(seconds=schedule.seconds))
        else:
            due = schedule.first_due(now)
        conn.execute(runs.update().where(runs.c.id == live.id, runs.c.status == _PENDING)
                     .values(due_at=due))

    def _cancel_pending(self, conn: Connection, run_id: int, now: datetime, why: str) -> int:
        return conn.execute(
            runs.update().where(runs.c.id == run_id, runs.c.status == _PENDING)
            .values(status=RunStatus.CANCELLED.value, live_flow_id=None, ended_at=now,
                    error=why)
        ).rowcount

    def _schedule_next(
        self, conn: Connection, flow_id: int, flow: AnyRow, previous_due: datetime,
        now: datetime,
    ) -> None:
        """Insert the flow's next pending run after a run ended (the caller holds the flow's
        row lock, and the run that ended was the flow's live run: no other can exist).

        A schedule that cannot give a next time (a spec stored before it was validated)
        does not keep the run from ending: the flow is paused and says why."""
        if flow.rerun_requested:  # a trigger arrived while the run ran
            conn.execute(flows.update().where(flows.c.id == flow_id).values(
                rerun_requested=False))
            self._insert_pending(conn, flow_id, "manual", now, now)
            return
        if flow.status != FlowStatus.ACTIVE.value:
            return
        try:
            due = next_due(flow.spec, previous_due, now)
        except Exception as exc:  # any failure here must not wedge the run
            why = unschedulable(flow.spec, exc)
            conn.execute(flows.update().where(flows.c.id == flow_id).values(
                status=FlowStatus.PAUSED.value, last_error=why))
            return
        if due is not None:
            self._insert_pending(conn, flow_id, "schedule", due, now)

    def _trigger(self, conn: Connection, flow_id: int, reason: str, now: datetime) -> int | None:
        """Make the flow run as soon as a heartbeat comes; the id of its pending or running
        run. A chained trigger (``reason="chain"``) never queues a run of a paused flow."""
        live, flow = self._lock_live_then_flow(conn, flow_id)
        if reason == "chain" and flow.status != FlowStatus.ACTIVE.value:
            return None
        if live is None:
            return self._insert_pending(conn, flow_id, reason, now, now)
        if live.status == _PENDING:
            conn.execute(runs.update().where(runs.c.id == live.id).values(
                due_at=min(live.due_at, now), trigger=reason))
        else:
            conn.execute(flows.update().where(flows.c.id == flow_id).values(
                rerun_requested=True))
        return int(live.id)

    def _chain(self, conn: Connection, spec: dict[str, Any], now: datetime) -> None:
        """Queue the flows a successful run triggers, in the finishing transaction."""
        for name in spec.get("triggers") or ():
            found = conn.execute(sa.select(flows.c.id).where(flows.c.name == name)).scalar()
            if found is None:
                log.error("flow %s triggers %r, which is not in the store", spec.get("name"),
                          name, extra={"action": "chain_missing", "flow": spec.get("name")})
                continue
            self._trigger(conn, int(found), "chain", now)
