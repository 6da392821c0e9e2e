"""Runs in the store: claiming, leases, fenced writes, finishing, reclaiming, listing.

Every write made on behalf of a running run is a guarded update ``WHERE id = :run AND
status = 'running' AND claim_token = :token``. A claim draws a fresh token, so once a run is
reclaimed (or released), the former holder's late writes match no row: it learns it was
fenced off (:class:`~active_data_flow.errors.RunClaimLost`) and its cursor never lands.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from active_data_flow.errors import ConfigurationError, RunClaimLost
from active_data_flow.runtimes.heartbeat._faults import claim_guard_enabled, crash_point
from active_data_flow.runtimes.heartbeat.models import (
    RUN_STATUSES,
    FlowStatus,
    RunStatus,
    flows,
    runs,
    workers,
)
from active_data_flow.runtimes.heartbeat.records import (
    ClaimedRun,
    Page,
    RunCounts,
    RunNotFound,
    RunRecord,
)
from active_data_flow.runtimes.heartbeat.schedule import schedule_of
from active_data_flow.runtimes.heartbeat.store._base import StoreBase
from active_data_flow.runtimes.heartbeat.store._rows import (
    MAX_ERROR,
    MAX_TRACEBACK,
    flow_record,
    flow_select,
    run_record,
    run_select,
    truncate,
)

__all__ = ["RunsMixin"]

log = logging.getLogger(__name__)

_RUNNING = RunStatus.RUNNING.value
_PENDING = RunStatus.PENDING.value


def _guard(claim: ClaimedRun) -> tuple[sa.ColumnElement[bool], ...]:
    return (runs.c.id == claim.run_id, runs.c.status == _RUNNING,
            runs.c.claim_token == claim.token)


class RunsMixin(StoreBase):
    """The run half of :class:`FlowStore`: what heartbeats and workers call."""

    # -- claiming ------------------------------------------------------------------------
    def claim_due(self, worker_id: str, *, limit: int | None = None) -> list[ClaimedRun]:
        """Claim due pending runs for ``worker_id``: exactly once, however many callers.

        PostgreSQL and MariaDB lock the due rows with ``FOR UPDATE SKIP LOCKED`` (a
        concurrent caller takes the others); SQLite serialises callers with an immediate
        transaction. Either way the update is guarded on ``status = 'pending'``. Each claimed
        run gets a lease of ``lease_seconds``, which its executor must renew.
        """
        guarded = claim_guard_enabled()

        def work(conn: Connection) -> list[ClaimedRun]:
            now = self.now()
            query = (sa.select(runs.c.id).where(runs.c.status == _PENDING, runs.c.due_at <= now)
                     .order_by(runs.c.due_at, runs.c.id))
            if limit is not None:
                query = query.limit(limit)
            if guarded:
                query = query.with_for_update(skip_locked=True)
            ids = list(conn.execute(query).scalars())
            if not ids:
                return []
            # Without the guard (a test switch) claims are not exclusive: no status check and
            # one shared token, so a second claimer does not fence the first off either.
            token = uuid.uuid4().hex if guarded else "unguarded".ljust(32, "-")
            update = runs.update().where(runs.c.id.in_(ids))
            if guarded:
                update = update.where(runs.c.status == _PENDING)
            conn.execute(update.values(claim_token=token, **self._claim_values(worker_id, now)))
            return self._claimed(conn, ids, token, worker_id)

        claimed = self._db.transact(work)
        if claimed:
            crash_point("after_claim")
        return claimed

    def claim_run(self, run_id: int, worker_id: str) -> ClaimedRun | None:
        """Claim one pending run by id, due or not (``None`` if it is not pending)."""
        def work(conn: Connection) -> ClaimedRun | None:
            now = self.now()
            token = uuid.uuid4().hex
            changed = conn.execute(runs.update().where(
                runs.c.id == run_id, runs.c.status == _PENDING).values(
                claim_token=token, **self._claim_values(worker_id, now))).rowcount
            claimed = self._claimed(conn, [run_id], token, worker_id) if changed else []
            return claimed[0] if claimed else None

        return self._db.transact(work)

    def adopt_run(self, run_id: int, token: str, worker_id: str) -> ClaimedRun | None:
        """Take over a claimed run from the process that claimed it (a task queue's worker
        executing what a heartbeat claimed), presenting the claim's token.

        Returns ``None`` when the claim is no longer valid (reclaimed, released, finished).
        """
        def work(conn: Connection) -> ClaimedRun | None:
            now = self.now()
            changed = conn.execute(runs.update().where(
                runs.c.id == run_id, runs.c.status == _RUNNING, runs.c.claim_token == token
            ).values(worker_id=worker_id, heartbeat_at=now,
                     lease_expires_at=self.lease_until(now))).rowcount
            claimed = self._claimed(conn, [run_id], token, worker_id) if changed else []
            return claimed[0] if claimed else None

        return self._db.transact(work)

    def _claim_values(self, worker_id: str, now: datetime) -> dict[str, Any]:
        """Column values of a claim (besides its token): running, held, leased, started."""
        flow_cursor = (sa.select(flows.c.cursor).where(flows.c.id == runs.c.flow_id)
                       .scalar_subquery())
        return {
            "status": _RUNNING, "worker_id": worker_id, "attempt": runs.c.attempt + 1,
            "started_at": sa.func.coalesce(runs.c.started_at, now),
            # The run starts where the flow's cursor is now: nobody can move it while held.
            "cursor_start": sa.case((runs.c.cursor_start.is_(None), flow_cursor),
                                    else_=runs.c.cursor_start),
            "heartbeat_at": now, "lease_expires_at": self.lease_until(now),
            "error": None, "error_type": None, "traceback": None,
        }

    def _claimed(
        self, conn: Connection, ids: list[int], token: str, worker_id: str
    ) -> list[ClaimedRun]:
        rows = conn.execute(
            sa.select(runs).where(runs.c.id.in_(ids), runs.c.claim_token == token)
            .order_by(runs.c.id)
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
        """Extend the leases of ``claims``; return the ids of those no longer held."""
        claims = list(claims)
        if not claims:
            return set()

        def work(conn: Connection) -> set[int]:
            now = self.now()
            until = self.lease_until(now)
            lost = set()
            for claim in claims:
                changed = conn.execute(runs.update().where(*_guard(claim)).values(
                    heartbeat_at=now, lease_expires_at=until)).rowcount
                if not changed:
                    lost.add(claim.run_id)
            return lost

        return self._db.transact(work)

    def begin_attempt(self, claim: ClaimedRun, attempt: int) -> tuple[Any, RunCounts]:
        """Record that attempt ``attempt`` starts; return the flow's cursor (where it
        resumes) and the run's counts so far (from earlier attempts, or before a release).

        Raises:
            RunClaimLost: the claim is no longer held.
        """
        def work(conn: Connection) -> tuple[Any, RunCounts]:
            now = self.now()
            row = conn.execute(sa.select(runs, flows.c.cursor.label("flow_cursor"))
                               .join(flows, flows.c.id == runs.c.flow_id)
                               .where(*_guard(claim))).first()
            if row is None:
                raise self._lost(claim)
            values: dict[str, Any] = {"attempt": attempt, "heartbeat_at": now,
                                      "lease_expires_at": self.lease_until(now)}
            if row.cursor_start is None:
                values["cursor_start"] = row.flow_cursor
            if not conn.execute(runs.update().where(*_guard(claim)).values(**values)).rowcount:
                raise self._lost(claim)
            return row.flow_cursor, RunCounts.of(row)

        return self._db.transact(work)

    def start_attempt(self, claim: ClaimedRun, attempt: int, cursor: Any) -> RunCounts:
        """Like :meth:`begin_attempt`, for a caller that read the cursor itself; returns the
        run's counts so far.

        Raises:
            RunClaimLost: the claim is no longer held.
        """
        del cursor  # the run's starting cursor is the flow's, read in the same transaction
        return self.begin_attempt(claim, attempt)[1]

    def flow_cursor(self, flow_id: int) -> Any:
        """The flow's saved cursor."""
        return self._db.transact(lambda conn: conn.execute(
            sa.select(flows.c.cursor).where(flows.c.id == flow_id)).scalar(), write=False)

    def progress(self, claim: ClaimedRun, counts: RunCounts, *, error: str | None = None,
                 error_type: str | None = None) -> bool:
        """Record a run's counts so far (and renew its lease); False if the claim is lost."""
        def work(conn: Connection) -> bool:
            now = self.now()
            values: dict[str, Any] = {**counts.values(), "heartbeat_at": now,
                                      "lease_expires_at": self.lease_until(now)}
            if error is not None:
                values.update(error=truncate(error, MAX_ERROR), error_type=error_type)
            return bool(conn.execute(runs.update().where(*_guard(claim)).values(**values))
                        .rowcount)

        return self._db.transact(work)

    def checkpoint(self, claim: ClaimedRun, cursor: Any, conn: Connection | None = None) -> None:
        """Save the flow's cursor for a held run: in its own transaction, or through ``conn``
        (a sink's open transaction on this same database, so it commits with the batch).

        Raises:
            RunClaimLost: the claim is no longer held; nothing was written (and through
                ``conn``, the sink's transaction must roll back).
        """
        def work(c: Connection) -> None:
            now = self.now()
            # The run row first (it is the lock a reclaim needs), then the flow row.
            changed = c.execute(runs.update().where(*_guard(claim)).values(
                cursor_end=cursor, heartbeat_at=now,
                lease_expires_at=self.lease_until(now))).rowcount
            if not changed:
                raise self._lost(claim)
            c.execute(flows.update().where(flows.c.id == claim.flow.id).values(
                cursor=cursor, cursor_updated_at=now))

        if conn is not None:
            work(conn)
        else:
            self._db.transact(work)

    def _lost(self, claim: ClaimedRun) -> RunClaimLost:
        return RunClaimLost(
            f"run {claim.run_id} of flow {claim.flow.name!r}: worker {claim.worker_id!r} no "
            "longer holds its claim (it was reclaimed after its lease expired, released, or "
            "finished); this write was rejected"
        )

    # -- ending --------------------------------------------------------------------------
    def finish(
        self, claim: ClaimedRun, status: RunStatus, counts: RunCounts, *,
        duration_s: float | None = None, error: BaseException | str | None = None,
        error_type: str | None = None, traceback: str | None = None,
        code_error: str | None = None,
    ) -> RunRecord:
        """End a held run as succeeded, failed or cancelled, and schedule the flow's next run.

        The flow's summary (last run, last error, code error) is updated, and when the flow
        is active and scheduled (or a trigger arrived meanwhile) its next pending run is
        inserted, all in one transaction.

        Raises:
            RunClaimLost: the claim is no longer held (nothing was written).
        """
        if status not in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
            raise ConfigurationError(f"cannot finish a run as {status!r}", option="status")
        described_type, message = _describe(error)
        error_type = error_type or described_type

        tries: list[int] = []

        def work(conn: Connection) -> RunRecord:
            tries.append(1)
            now = self.now()
            changed = conn.execute(runs.update().where(*_guard(claim)).values(
                status=status.value, live_flow_id=None, claim_token=None, ended_at=now,
                heartbeat_at=now, lease_expires_at=None, duration_s=duration_s,
                error_type=error_type, error=truncate(message, MAX_ERROR),
                traceback=truncate(traceback, MAX_TRACEBACK), **counts.values())).rowcount
            if not changed:
                if len(tries) == 1:
                    raise self._lost(claim)
                return self._already_finished(conn, claim, status)
            crash_point("while_finishing")
            conn.execute(flows.update().where(flows.c.id == claim.flow.id).values(
                last_run_id=claim.run_id, last_run_status=status.value, last_run_at=now,
                last_error=truncate(message, MAX_ERROR), code_error=code_error))
            # The flow row is locked by the update above: its status is current.
            row = conn.execute(run_select().add_columns(
                flows.c.status.label("flow_status"), flows.c.runtime.label("flow_runtime"),
                flows.c.rerun_requested).where(runs.c.id == claim.run_id)).one()
            record = run_record(row)
            self._schedule_next(conn, claim.flow.id, row.flow_status, row.flow_runtime,
                                bool(row.rerun_requested), record.due_at, now)
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
        raise self._lost(claim)

    def _schedule_next(
        self, conn: Connection, flow_id: int, flow_status: str, runtime: dict[str, Any],
        rerun: bool, previous_due: datetime, now: datetime,
    ) -> None:
        """Insert the flow's next pending run after a run ended (the caller holds the flow's
        row lock, and the run that ended was the flow's live run: no other can exist)."""
        if rerun:  # a trigger arrived while the run ran
            conn.execute(flows.update().where(flows.c.id == flow_id).values(
                rerun_requested=False))
            self._insert_pending(conn, flow_id, "manual", now, now)
            return
        schedule = schedule_of(runtime)
        if flow_status == FlowStatus.ACTIVE.value and schedule is not None:
            self._insert_pending(conn, flow_id, "schedule",
                                 schedule.next_due(previous_due, now), now)

    def release(
        self, claim: ClaimedRun, counts: RunCounts | None = None, *, reason: str
    ) -> RunRecord | None:
        """Give a held run back: it becomes pending again, due now, keeping its counts and
        the flow's cursor (a graceful stop). A paused flow's run is cancelled instead.
        ``counts`` (the run's totals so far) are recorded when given.

        Returns the run, or ``None`` when the claim was already lost.
        """
        def work(conn: Connection) -> bool:
            now = self.now()
            flow = self._flow_status(conn, claim.flow.id)
            if flow == FlowStatus.PAUSED.value:
                values: dict[str, Any] = {"status": RunStatus.CANCELLED.value,
                                          "live_flow_id": None, "ended_at": now}
            else:
                values = {"status": _PENDING, "due_at": now}
            changed = conn.execute(runs.update().where(*_guard(claim)).values(
                claim_token=None, heartbeat_at=now, lease_expires_at=None, error=reason,
                error_type=None, **values, **(counts.values() if counts else {}))).rowcount
            return bool(changed)

        if not self._db.transact(work):
            return None
        return self.get_run(claim.run_id)

    def _flow_status(self, conn: Connection, flow_id: int) -> str | None:
        return conn.execute(sa.select(flows.c.status).where(flows.c.id == flow_id)).scalar()

    # -- recovering from dead workers ----------------------------------------------------
    def reclaim_expired(self, *, limit: int = 100) -> list[int]:
        """Fail running runs whose lease expired (their worker died or hung) and give each
        flow a recovery run, due now, that resumes from the flow's cursor.

        Runs that still renew their lease are never touched; terminal runs never are.
        Returns the ids of the runs reclaimed.
        """
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
                message = (f"worker {row.worker_id!r} stopped renewing its lease (expired at "
                           f"{row.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC); the run was "
                           "reclaimed and the flow resumes from its last checkpoint")
                changed = conn.execute(runs.update().where(
                    runs.c.id == row.id, runs.c.status == _RUNNING,
                    runs.c.lease_expires_at < now,
                ).values(status=RunStatus.FAILED.value, live_flow_id=None, claim_token=None,
                         ended_at=now, lease_expires_at=None, error_type="WorkerLost",
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

    # -- heartbeats ----------------------------------------------------------------------
    def record_beat(self, worker_id: str, claimed: int) -> None:
        """Record that ``worker_id`` beat now, having claimed ``claimed`` runs."""
        def work(conn: Connection) -> None:
            now = self.now()
            values = {"last_beat_at": now, "last_claimed": claimed,
                      "beats": workers.c.beats + 1}
            if conn.execute(workers.update().where(workers.c.id == worker_id)
                            .values(**values)).rowcount:
                return
            host, _, pid = worker_id.rpartition(":")
            try:
                with conn.begin_nested():
                    conn.execute(workers.insert().values(
                        id=worker_id, hostname=host or socket.gethostname(),
                        pid=int(pid) if pid.isdigit() else os.getpid(), started_at=now,
                        last_beat_at=now, beats=1, last_claimed=claimed))
            except sa.exc.IntegrityError:  # registered concurrently under the same id
                conn.execute(workers.update().where(workers.c.id == worker_id).values(**values))

        self._db.transact(work)

    # -- reading -------------------------------------------------------------------------
    def get_run(self, run_id: int) -> RunRecord:
        """The run with id ``run_id``.

        Raises:
            RunNotFound: no such run.
        """
        row = self._db.transact(lambda conn: conn.execute(
            run_select().where(runs.c.id == run_id)).first(), write=False)
        if row is None:
            raise RunNotFound(f"no run with id {run_id} in the store")
        return run_record(row)

    def list_runs(
        self, flow: str | None = None, status: str | None = None, *,
        offset: int = 0, limit: int = 50, count_limit: int | None = 10_000,
    ) -> Page[RunRecord]:
        """A page of runs, newest first (by flow and by status, both indexed).

        Args:
            flow: only this flow's runs.
            status: only runs in this status.
            offset, limit: the page (limit 1..1000).
            count_limit: count matching runs up to this many (``total_is_exact`` tells
                whether there are more); ``None`` counts them all, which over millions of
                runs costs a scan.

        Raises:
            FlowNotFound: ``flow`` names no flow.
        """
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
            return Page([run_record(r) for r in rows], shown, offset, limit,
                        total_is_exact=exact)

        return self._db.transact(work, write=False)


def _describe(error: BaseException | str | None) -> tuple[str | None, str | None]:
    if error is None:
        return None, None
    if isinstance(error, str):
        return None, error
    kind = type(error)
    return f"{kind.__module__}.{kind.__qualname__}"[-200:], str(error) or kind.__name__

