"""Runs in SQL: claiming, leases, fenced writes, finishing, reclaiming, listing.

Every write made on behalf of a running run is a guarded update ``WHERE id = :run AND
status = 'running' AND claim_token = :token``. A claim draws a fresh token, so once a run is
reclaimed (or released), the former holder's late writes match no row: it learns it was
fenced off (:class:`~active_data_flow.errors.RunClaimLost`) and its cursor never lands.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from active_data_flow.errors import ConfigurationError, RunClaimLost, WorkerLost
from active_data_flow.runtimes.heartbeat.store._rows import (
    flow_record,
    flow_select,
    run_record,
    run_select,
)
from active_data_flow.runtimes.heartbeat.store._shared import SqlRepository
from active_data_flow.runtimes.heartbeat.store.base import MAX_ERROR, describe, truncate
from active_data_flow.runtimes.heartbeat.store.models import RUN_STATUSES, flows, runs
from active_data_flow.runtimes.heartbeat.store.records import (
    ClaimedRun,
    FlowStats,
    FlowStatus,
    Page,
    RunCounts,
    RunNotFound,
    RunRecord,
    RunStatus,
)

__all__ = ["SqlRuns", "lost"]

log = logging.getLogger(__name__)

_RUNNING = RunStatus.RUNNING.value
_PENDING = RunStatus.PENDING.value


def _guard(claim: ClaimedRun) -> tuple[sa.ColumnElement[bool], ...]:
    return (runs.c.id == claim.run_id, runs.c.status == _RUNNING,
            runs.c.claim_token == claim.token)


def lost(claim: ClaimedRun) -> RunClaimLost:
    """The error of a write refused because ``claim`` no longer holds its run."""
    return RunClaimLost(
        f"run {claim.run_id} of flow {claim.flow.name!r}: worker {claim.worker_id!r} no "
        "longer holds its claim (it was reclaimed after its lease expired, released, or "
        "finished); this write was rejected")


class SqlRuns(SqlRepository):
    """The runs repository on a SQL database (see :class:`~.base.RunRepository`)."""

    # -- claiming ------------------------------------------------------------------------
    def claim_due(self, worker_id: str, *, limit: int | None = None,
                  due_by: datetime | None = None) -> list[ClaimedRun]:
        """PostgreSQL and MariaDB lock the due rows with ``FOR UPDATE SKIP LOCKED`` (a
        concurrent caller takes the others); SQLite serialises callers with an immediate
        transaction. Either way the update is guarded on ``status = 'pending'``."""
        def work(conn: Connection) -> list[ClaimedRun]:
            now = self.now()
            cutoff = now if due_by is None else min(now, due_by)
            query = (sa.select(runs.c.id).where(runs.c.status == _PENDING,
                                                runs.c.due_at <= cutoff)
                     .order_by(runs.c.due_at, runs.c.id).with_for_update(skip_locked=True))
            if limit is not None:
                query = query.limit(limit)
            ids = list(conn.execute(query).scalars())
            if not ids:
                return []
            token = uuid.uuid4().hex
            conn.execute(runs.update().where(runs.c.id.in_(ids), runs.c.status == _PENDING)
                         .ordered_values(*self._claim_values(worker_id, now, token)))
            return self._claimed(conn, ids, token, worker_id)

        return self._db.transact(work)

    def claim(self, run_id: int, worker_id: str) -> ClaimedRun | None:
        def work(conn: Connection) -> ClaimedRun | None:
            now = self.now()
            token = uuid.uuid4().hex
            changed = conn.execute(runs.update().where(
                runs.c.id == run_id, runs.c.status == _PENDING).ordered_values(
                *self._claim_values(worker_id, now, token))).rowcount
            claimed = self._claimed(conn, [run_id], token, worker_id) if changed else []
            return claimed[0] if claimed else None

        return self._db.transact(work)

    def adopt(self, run_id: int, token: str, worker_id: str) -> ClaimedRun | None:
        def work(conn: Connection) -> ClaimedRun | None:
            now = self.now()
            changed = conn.execute(runs.update().where(
                runs.c.id == run_id, runs.c.status == _RUNNING, runs.c.claim_token == token
            ).values(worker_id=worker_id, heartbeat_at=now,
                     lease_expires_at=self._settings.lease_until(now))).rowcount
            claimed = self._claimed(conn, [run_id], token, worker_id) if changed else []
            return claimed[0] if claimed else None

        return self._db.transact(work)

    def dispatched(self, run_id: int, token: str) -> ClaimedRun | None:
        def work(conn: Connection) -> ClaimedRun | None:
            row = conn.execute(sa.select(runs.c.worker_id, runs.c.flow_id, runs.c.attempt,
                                         runs.c.trigger)
                               .where(runs.c.id == run_id, runs.c.status == _RUNNING,
                                      runs.c.claim_token == token)).first()
            if row is None:
                return None
            flow = self._flow_by_id(conn, row.flow_id)
            return ClaimedRun(run_id=run_id, token=token, worker_id=row.worker_id or "",
                              flow=flow, attempt=row.attempt, trigger=row.trigger,
                              cursor=flow.cursor)

        return self._db.transact(work, write=False)

    def hold_dispatched(self, claim: ClaimedRun, seconds: float) -> bool:
        def work(conn: Connection) -> bool:
            now = self.now()
            return bool(conn.execute(runs.update().where(*_guard(claim)).values(
                heartbeat_at=now, lease_expires_at=now + timedelta(seconds=seconds))).rowcount)

        return self._db.transact(work)

    def _claim_values(self, worker_id: str, now: datetime,
                      token: str) -> list[tuple[str, Any]]:
        """The SET clause of a claim, in order: running under ``token``, held, leased,
        started. In order because MySQL/MariaDB evaluate assignments left to right (a later
        one sees the columns earlier ones set): ``cursor_start`` reads ``started_at`` first."""
        flow_cursor = (sa.select(flows.c.cursor).where(flows.c.id == runs.c.flow_id)
                       .scalar_subquery())
        return [
            # A run starts where the flow's cursor is when it is first claimed (nobody can move
            # it while the claim holds); a run claimed again keeps where it started.
            ("cursor_start", sa.case((runs.c.started_at.is_(None), flow_cursor),
                                     else_=runs.c.cursor_start)),
            ("started_at", sa.func.coalesce(runs.c.started_at, now)),
            ("status", _RUNNING), ("claim_token", token), ("worker_id", worker_id),
            ("attempt", runs.c.attempt + 1), ("heartbeat_at", now),
            ("lease_expires_at", self._settings.lease_until(now)),
            ("error", None), ("error_type", None), ("traceback", None),
        ]

    def _claimed(
        self, conn: Connection, ids: list[int], token: str, worker_id: str
    ) -> list[ClaimedRun]:
        rows = conn.execute(
            sa.select(runs).where(runs.c.id.in_(ids), runs.c.claim_token == token)
            .order_by(runs.c.due_at, runs.c.id)
        ).all()
        flow_ids = {r.flow_id for r in rows}
        records = {row.id: flow_record(row) for row in conn.execute(
            flow_select().where(flows.c.id.in_(flow_ids)))}
        return [ClaimedRun(run_id=r.id, token=token, worker_id=worker_id,
                           flow=records[r.flow_id], attempt=r.attempt, trigger=r.trigger,
                           cursor=records[r.flow_id].cursor, counts=RunCounts.of(r))
                for r in rows]

    # -- while running -------------------------------------------------------------------
    def renew(self, claims: Iterable[ClaimedRun]) -> set[int]:
        """One UPDATE renews every claim, however many the worker holds; only when it
        matched fewer rows is a second statement needed, to tell which claims are gone."""
        claims = list(claims)
        if not claims:
            return set()
        ids = [c.run_id for c in claims]
        tokens = {c.token for c in claims}

        def work(conn: Connection) -> set[int]:
            now = self.now()
            changed = conn.execute(runs.update().where(
                runs.c.id.in_(ids), runs.c.status == _RUNNING, runs.c.claim_token.in_(tokens),
            ).values(heartbeat_at=now, lease_expires_at=self._settings.lease_until(now)))
            if changed.rowcount == len(claims):
                return set()
            held = {(row.id, row.claim_token) for row in conn.execute(
                sa.select(runs.c.id, runs.c.claim_token).where(
                    runs.c.id.in_(ids), runs.c.status == _RUNNING))}
            return {c.run_id for c in claims if (c.run_id, c.token) not in held}

        return self._db.transact(work)

    def begin_attempt(self, claim: ClaimedRun, attempt: int) -> tuple[Any, RunCounts]:
        def work(conn: Connection) -> tuple[Any, RunCounts]:
            now = self.now()
            row = conn.execute(sa.select(runs, flows.c.cursor.label("flow_cursor"))
                               .join(flows, flows.c.id == runs.c.flow_id)
                               .where(*_guard(claim))).first()
            if row is None:
                raise lost(claim)
            values: dict[str, Any] = {"attempt": attempt, "heartbeat_at": now,
                                      "lease_expires_at": self._settings.lease_until(now)}
            if not conn.execute(runs.update().where(*_guard(claim)).values(**values)).rowcount:
                raise lost(claim)
            return row.flow_cursor, RunCounts.of(row)

        return self._db.transact(work)

    def progress(self, claim: ClaimedRun, counts: RunCounts, *, error: str | None = None,
                 error_type: str | None = None) -> bool:
        def work(conn: Connection) -> bool:
            now = self.now()
            values: dict[str, Any] = {**counts.values(), "heartbeat_at": now,
                                      "lease_expires_at": self._settings.lease_until(now)}
            if error is not None:
                values.update(error=truncate(error, MAX_ERROR), error_type=error_type)
            return bool(conn.execute(runs.update().where(*_guard(claim)).values(**values))
                        .rowcount)

        return self._db.transact(work)

    def checkpoint(self, claim: ClaimedRun, cursor: Any, conn: Any = None, *,
                   counts: RunCounts | None = None) -> None:
        def work(c: Connection) -> None:
            now = self.now()
            # The run row first (it is the lock a reclaim needs), then the flow row. The
            # counts go with the cursor: every committed batch is counted on its run.
            changed = c.execute(runs.update().where(*_guard(claim)).values(
                cursor_end=cursor, heartbeat_at=now,
                lease_expires_at=self._settings.lease_until(now),
                **(counts.values() if counts is not None else {}))).rowcount
            if not changed:
                raise lost(claim)
            c.execute(flows.update().where(flows.c.id == claim.flow.id).values(
                cursor=cursor, cursor_updated_at=now))

        if conn is not None:
            work(conn)
        else:
            self._db.transact(work)

    # -- ending --------------------------------------------------------------------------
    def finish(
        self, claim: ClaimedRun, status: RunStatus, counts: RunCounts, *,
        duration_s: float | None = None, error: BaseException | str | None = None,
        code_error: str | None = None,
    ) -> RunRecord:
        if status not in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
            raise ConfigurationError(f"cannot finish a run as {status!r}", option="status")
        error_type, message, trace = describe(error)
        tries: list[int] = []

        def work(conn: Connection) -> RunRecord:
            tries.append(1)
            now = self.now()
            changed = conn.execute(runs.update().where(*_guard(claim)).values(
                status=status.value, live_flow_id=None, claim_token=None, ended_at=now,
                heartbeat_at=now, lease_expires_at=None, duration_s=duration_s,
                error_type=error_type, error=message, traceback=trace,
                **counts.values())).rowcount
            if not changed:
                if len(tries) == 1:
                    raise lost(claim)
                return self._already_finished(conn, claim, status)
            conn.execute(flows.update().where(flows.c.id == claim.flow.id).values(
                last_run_id=claim.run_id, last_run_status=status.value, last_run_at=now,
                last_error=message, code_error=code_error))
            # The flow row is locked by the update above: its status is current.
            flow = self._lock_flow(conn, claim.flow.id)
            record = run_record(conn.execute(run_select().where(runs.c.id == claim.run_id))
                                .one())
            self._schedule_next(conn, claim.flow.id, flow, record.due_at, now)
            if status == RunStatus.SUCCEEDED:
                self._chain(conn, flow.spec, now)
            return record

        return self._db.transact(work)

    def _already_finished(
        self, conn: Connection, claim: ClaimedRun, status: RunStatus
    ) -> RunRecord:
        # A retried transaction whose first try committed (the reply was lost on the way)
        # finds its own work done: same worker, same final status. Else: fenced off.
        row = conn.execute(run_select().where(runs.c.id == claim.run_id)).first()
        if row is not None and row.status == status.value and row.worker_id == claim.worker_id:
            return run_record(row)
        raise lost(claim)

    def release(
        self, claim: ClaimedRun, counts: RunCounts | None = None, *, reason: str,
        retry_in: float = 0.0, unclaim: bool = False,
    ) -> RunRecord | None:
        def work(conn: Connection) -> bool:
            now = self.now()
            flow = conn.execute(sa.select(flows.c.status).where(
                flows.c.id == claim.flow.id)).scalar()
            if flow == FlowStatus.PAUSED.value:
                values: dict[str, Any] = {"status": RunStatus.CANCELLED.value,
                                          "live_flow_id": None, "ended_at": now}
            else:
                values = {"status": _PENDING, "due_at": now + timedelta(seconds=retry_in)}
            if unclaim:
                values["attempt"] = runs.c.attempt - 1  # a claim counted it (>= 1)
                if claim.attempt <= 1:  # this claim started it: it has not started
                    values.update(started_at=None, cursor_start=None)
            return bool(conn.execute(runs.update().where(*_guard(claim)).values(
                claim_token=None, heartbeat_at=now, lease_expires_at=None, error=reason,
                error_type=None, **values, **(counts.values() if counts else {}))).rowcount)

        if not self._db.transact(work):
            return None
        return self.get(claim.run_id)

    # -- recovering from dead workers ----------------------------------------------------
    def next_lease_expiry(self) -> datetime | None:
        """The ``(status, lease_expires_at)`` index answers this from its first entry."""
        def work(conn: Connection) -> datetime | None:
            return conn.execute(sa.select(sa.func.min(runs.c.lease_expires_at)).where(
                runs.c.status == _RUNNING)).scalar()

        return self._db.transact(work, write=False)

    def reclaim_expired(self, *, limit: int = 100) -> list[int]:
        def work(conn: Connection) -> list[int]:
            now = self.now()
            expired = conn.execute(
                sa.select(runs.c.id, runs.c.flow_id, runs.c.worker_id, runs.c.lease_expires_at)
                .where(runs.c.status == _RUNNING, runs.c.lease_expires_at < now)
                .order_by(runs.c.lease_expires_at).limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            reclaimed = []
            for row in expired:
                error = WorkerLost(
                    f"worker {row.worker_id!r} stopped renewing its lease (expired at "
                    f"{row.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC); the run was reclaimed "
                    "and the flow resumes from its last checkpoint")
                error_type, message, _trace = describe(error)
                changed = conn.execute(runs.update().where(
                    runs.c.id == row.id, runs.c.status == _RUNNING,
                    runs.c.lease_expires_at < now,
                ).values(status=RunStatus.FAILED.value, live_flow_id=None, claim_token=None,
                         ended_at=now, lease_expires_at=None, error_type=error_type,
                         error=message)).rowcount
                if not changed:
                    continue
                reclaimed.append(row.id)
                flow = self._lock_flow(conn, row.flow_id)
                conn.execute(flows.update().where(flows.c.id == row.flow_id).values(
                    last_run_id=row.id, last_run_status=RunStatus.FAILED.value,
                    last_run_at=now, last_error=message, rerun_requested=False))
                if flow.status == FlowStatus.ACTIVE.value or flow.rerun_requested:
                    self._insert_pending(conn, row.flow_id, "recovery", now, now)
            return reclaimed

        reclaimed = self._db.transact(work)
        for run_id in reclaimed:
            log.warning("reclaimed run %s: its worker's lease expired", run_id,
                        extra={"action": "run_reclaimed", "run_id": run_id})
        return reclaimed

    # -- reading -------------------------------------------------------------------------
    def get(self, run_id: int) -> RunRecord:
        row = self._db.transact(lambda conn: conn.execute(
            run_select().where(runs.c.id == run_id)).first(), write=False)
        if row is None:
            raise RunNotFound(f"no run with id {run_id} in the store")
        return run_record(row)

    def page(
        self, flow: str | None = None, status: str | None = None, *,
        offset: int = 0, limit: int = 50, count_limit: int | None = 10_000,
    ) -> Page[RunRecord]:
        """``count_limit``: count matching runs up to this many (``total_is_exact`` tells
        whether there are more); ``None`` counts them all, which over millions of runs
        costs a scan."""
        if offset < 0 or not 1 <= limit <= 1000:
            raise ConfigurationError(f"bad page offset={offset} limit={limit} (limit 1..1000)",
                                     option="limit" if offset >= 0 else "offset")
        if status is not None and status not in RUN_STATUSES:
            raise ConfigurationError(f"unknown run status {status!r} (one of "
                                     f"{', '.join(RUN_STATUSES)})", option="status")

        def work(conn: Connection) -> Page[RunRecord]:
            conditions = []
            if flow is not None:
                conditions.append(runs.c.flow_id == self._flow_id(conn, flow))
            if status is not None:
                conditions.append(runs.c.status == status)
            matching = sa.select(runs.c.id).where(*conditions)
            if count_limit is not None:
                matching = matching.limit(count_limit + 1)
            total = conn.execute(sa.select(sa.func.count()).select_from(
                matching.subquery())).scalar_one()
            # The page is picked from the runs alone, then joined to its flows: a planner
            # that started from the flows (MariaDB does) would sort every run first.
            page = (sa.select(runs).where(*conditions).order_by(runs.c.id.desc())
                    .offset(offset).limit(limit).subquery())
            rows = conn.execute(sa.select(page, flows.c.name.label("flow_name"))
                                .join(flows, flows.c.id == page.c.flow_id)
                                .order_by(page.c.id.desc())).all()
            exact = count_limit is None or total <= count_limit
            shown = int(total) if count_limit is None else min(int(total), count_limit)
            return Page(items=[run_record(r) for r in rows], total=shown, offset=offset,
                        limit=limit, total_is_exact=exact)

        return self._db.transact(work, write=False)

    def stats(self, flow: str, *, window: int = 100) -> FlowStats:
        if not 1 <= window <= 10_000:
            raise ConfigurationError(f"window must be 1..10000, got {window}", option="window")

        def work(conn: Connection) -> FlowStats:
            flow_id = self._flow_id(conn, flow)
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
                flow=flow, window=window, runs=n[0], succeeded=n[1], failed=n[2],
                cancelled=n[3], read=n[4], written=n[5], skipped=n[6], failed_records=n[7],
                avg_duration_s=None if row[8] is None else float(row[8]),
                max_duration_s=None if row[9] is None else float(row[9]),
                last_success_at=last_ok,
            )

        return self._db.transact(work, write=False)

    def count_live(self, *, overdue_after: datetime) -> dict[str, int]:
        def work(conn: Connection) -> dict[str, int]:
            def count(*where: sa.ColumnElement[bool]) -> int:
                return int(conn.execute(sa.select(sa.func.count()).select_from(runs)
                                        .where(*where)).scalar_one())

            return {"pending": count(runs.c.status == _PENDING),
                    "running": count(runs.c.status == _RUNNING),
                    "overdue": count(runs.c.status == _PENDING,
                                     runs.c.due_at < overdue_after)}

        return self._db.transact(work, write=False)
