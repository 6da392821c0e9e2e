"""Health, metrics and dead letters: what the web engine's dashboard and API read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from active_data_flow.errors import ConfigurationError
from active_data_flow.runtimes.heartbeat.models import (
    FlowStatus,
    RunStatus,
    dead_letters,
    flows,
    runs,
    workers,
)
from active_data_flow.runtimes.heartbeat.records import (
    DeadLetter,
    FlowRecord,
    FlowStats,
    Page,
    WorkerRecord,
)
from active_data_flow.runtimes.heartbeat.store._base import StoreBase
from active_data_flow.runtimes.heartbeat.store._db import Database
from active_data_flow.runtimes.heartbeat.store._rows import (
    MAX_ERROR,
    dead_letter_record,
    flow_record,
    flow_select,
    truncate,
    worker_record,
)

__all__ = ["HealthMixin", "insert_dead_letters"]


def insert_dead_letters(db: Database, rows: Sequence[Mapping[str, Any]],
                        run_id: int | None, now: datetime) -> None:
    """Store dead-letter records (as :func:`active_data_flow.runtime.dead_letter` makes them)."""
    values = [{
        "flow": str(r.get("flow") or "?")[:200],
        "run_id": run_id,
        "position": r.get("position"),
        "error_type": (str(r["error_type"])[-200:] if r.get("error_type") else None),
        "error": truncate(str(r.get("error") or ""), MAX_ERROR),
        "message": r.get("message") if isinstance(r.get("message"), Mapping) else {
            "value": r.get("message")},
        "meta": r.get("metadata") or None,
        "failed_at": _parse_time(r.get("failed_at")) or now,
        "replay_attempts": 0,
    } for r in rows]
    if values:
        db.transact(lambda conn: conn.execute(dead_letters.insert(), values))


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


class HealthMixin(StoreBase):
    """Read-mostly queries for dashboards, health checks and metrics."""

    # -- heartbeats and workers ----------------------------------------------------------
    def last_heartbeat(self) -> datetime | None:
        """When any caller last ran a heartbeat (``None``: never)."""
        return self._db.transact(lambda conn: conn.execute(
            sa.select(sa.func.max(workers.c.last_beat_at))).scalar(), write=False)

    def workers(self, *, seen_within: float | None = None) -> list[WorkerRecord]:
        """Heartbeat callers, most recent first (only those seen within ``seen_within`` s)."""
        def work(conn: Connection) -> list[WorkerRecord]:
            query = sa.select(workers).order_by(workers.c.last_beat_at.desc())
            if seen_within is not None:
                since = self.now() - timedelta(seconds=seen_within)
                query = query.where(workers.c.last_beat_at >= since)
            return [worker_record(r) for r in conn.execute(query.limit(1000))]

        return self._db.transact(work, write=False)

    def overdue_flows(self, *, grace_seconds: float = 60.0) -> list[FlowRecord]:
        """Flows whose pending run has been due for more than ``grace_seconds`` unclaimed
        (no heartbeat is coming, or none keeps up)."""
        def work(conn: Connection) -> list[FlowRecord]:
            limit = self.now() - timedelta(seconds=grace_seconds)
            late = sa.select(runs.c.flow_id).where(
                runs.c.status == RunStatus.PENDING.value, runs.c.due_at < limit)
            rows = conn.execute(flow_select().where(flows.c.id.in_(late))
                                .order_by(flows.c.name).limit(1000))
            return [flow_record(r) for r in rows]

        return self._db.transact(work, write=False)

    def flow_stats(self, name: str, *, window: int = 100) -> FlowStats:
        """Aggregates over the flow's last ``window`` finished runs.

        Raises:
            FlowNotFound: no such flow.
        """
        if not 1 <= window <= 10_000:
            raise ConfigurationError(f"window must be 1..10000, got {window}", option="window")

        def work(conn: Connection) -> FlowStats:
            flow_id = self._flow_id(conn, name)
            recent = (sa.select(runs).where(runs.c.flow_id == flow_id,
                                            runs.c.ended_at.is_not(None))
                      .order_by(runs.c.id.desc()).limit(window).subquery())
            status = recent.c.status

            def count_of(value: str) -> Any:
                return sa.func.sum(sa.case((status == value, 1), else_=0))

            row = conn.execute(sa.select(
                sa.func.count(), count_of("succeeded"), count_of("failed"),
                count_of("cancelled"), sa.func.sum(recent.c.read),
                sa.func.sum(recent.c.written), sa.func.sum(recent.c.skipped),
                sa.func.sum(recent.c.failed), sa.func.avg(recent.c.duration_s),
                sa.func.max(recent.c.duration_s),
            )).one()
            last_ok = conn.execute(sa.select(sa.func.max(runs.c.ended_at)).where(
                runs.c.flow_id == flow_id, runs.c.status == RunStatus.SUCCEEDED.value)).scalar()
            n = [int(v or 0) for v in row[:8]]
            return FlowStats(
                flow=name, window=window, runs=n[0], succeeded=n[1], failed=n[2],
                cancelled=n[3], read=n[4], written=n[5], skipped=n[6], failed_records=n[7],
                avg_duration_s=None if row[8] is None else float(row[8]),
                max_duration_s=None if row[9] is None else float(row[9]),
                last_success_at=last_ok,
            )

        return self._db.transact(work, write=False)

    def metrics(self) -> dict[str, Any]:
        """Gauges for monitoring: flows by status, live runs, overdue runs, heartbeat age.

        Only indexed, bounded queries (no scan of the run history).
        """
        def work(conn: Connection) -> dict[str, Any]:
            now = self.now()
            by_status: dict[str, int] = dict(conn.execute(sa.select(flows.c.status, sa.func.count())
                                          .group_by(flows.c.status)).all())
            live = {s: conn.execute(sa.select(sa.func.count()).select_from(runs)
                                    .where(runs.c.status == s)).scalar_one()
                    for s in (RunStatus.PENDING.value, RunStatus.RUNNING.value)}
            overdue = conn.execute(sa.select(sa.func.count()).select_from(runs).where(
                runs.c.status == RunStatus.PENDING.value,
                runs.c.due_at < now - timedelta(seconds=60))).scalar_one()
            last = conn.execute(sa.select(sa.func.max(workers.c.last_beat_at))).scalar()
            return {
                "flows_active": int(by_status.get(FlowStatus.ACTIVE.value, 0)),
                "flows_paused": int(by_status.get(FlowStatus.PAUSED.value, 0)),
                "runs_pending": int(live[RunStatus.PENDING.value]),
                "runs_running": int(live[RunStatus.RUNNING.value]),
                "runs_overdue": int(overdue),
                "last_heartbeat_at": last,
                "last_heartbeat_age_s": None if last is None else (now - last).total_seconds(),
            }

        return self._db.transact(work, write=False)

    # -- dead letters --------------------------------------------------------------------
    def list_dead_letters(
        self, flow: str, *, offset: int = 0, limit: int = 50, include_replayed: bool = False,
    ) -> Page[DeadLetter]:
        """A page of the flow's dead letters, newest first (unreplayed only, by default)."""
        if offset < 0 or not 1 <= limit <= 1000:
            raise ConfigurationError(f"bad page offset={offset} limit={limit} (limit 1..1000)",
                                     option="limit" if offset >= 0 else "offset")
        conditions = [dead_letters.c.flow == flow]
        if not include_replayed:
            conditions.append(dead_letters.c.replayed_at.is_(None))

        def work(conn: Connection) -> Page[DeadLetter]:
            total = conn.execute(sa.select(sa.func.count()).select_from(dead_letters)
                                 .where(*conditions)).scalar_one()
            rows = conn.execute(sa.select(dead_letters).where(*conditions)
                                .order_by(dead_letters.c.id.desc()).offset(offset).limit(limit))
            return Page([dead_letter_record(r) for r in rows], int(total), offset, limit)

        return self._db.transact(work, write=False)

    def dead_letters_for_replay(
        self, flow: str, ids: Iterable[int] | None = None, *, limit: int = 10_000
    ) -> list[DeadLetter]:
        """The flow's unreplayed dead letters (those in ``ids`` only, when given), oldest first."""
        conditions = [dead_letters.c.flow == flow, dead_letters.c.replayed_at.is_(None)]
        if ids is not None:
            conditions.append(dead_letters.c.id.in_(list(ids)))
        return self._db.transact(lambda conn: [dead_letter_record(r) for r in conn.execute(
            sa.select(dead_letters).where(*conditions).order_by(dead_letters.c.id)
            .limit(limit))], write=False)

    def mark_replayed(self, ids: Sequence[int]) -> None:
        """Mark dead letters as replayed (written to the flow's sinks)."""
        if ids:
            now = self.now()
            self._db.transact(lambda conn: conn.execute(
                dead_letters.update().where(dead_letters.c.id.in_(list(ids))).values(
                    replayed_at=now, replay_error=None,
                    replay_attempts=dead_letters.c.replay_attempts + 1)))

    def mark_replay_failed(self, failures: Mapping[int, str]) -> None:
        """Record why dead letters failed again when replayed."""
        def work(conn: Connection) -> None:
            for letter_id, error in failures.items():
                conn.execute(dead_letters.update().where(dead_letters.c.id == letter_id).values(
                    replay_error=truncate(error, MAX_ERROR),
                    replay_attempts=dead_letters.c.replay_attempts + 1))

        if failures:
            self._db.transact(work)
