"""Partitioned runs in the store: a dispatched run split into parts, each claimed, leased,
checkpointed and ended on its own; the run ends with its last part (docs/celery.md).

Every write made for a running part is guarded like a run's: ``WHERE id = :part AND status =
'running' AND claim_token = :token``. A part also carries the token of its run's claim: once
the run was reclaimed (or ended), its parts are void, and their renewals report them lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from active_data_flow.errors import RunClaimLost
from active_data_flow.runtimes.heartbeat.store._rows import partition_record, run_record, run_select
from active_data_flow.runtimes.heartbeat.store._shared import SqlRepository
from active_data_flow.runtimes.heartbeat.store.base import MAX_ERROR, describe, truncate
from active_data_flow.runtimes.heartbeat.store.models import (
    concurrency_locks,
    flows,
    partitions,
    runs,
)
from active_data_flow.runtimes.heartbeat.store.records import (
    LIVE_STATUSES,
    TERMINAL_STATUSES,
    ClaimedPartition,
    ClaimedRun,
    PartitionBusy,
    PartitionOutcome,
    PartitionRecord,
    RunCounts,
    RunNotFound,
    RunStatus,
)

__all__ = ["LIMIT_RETRY_SECONDS", "SqlPartitions"]

_RUNNING = RunStatus.RUNNING.value
_PENDING = RunStatus.PENDING.value

#: How long a claim that hit a concurrency limit waits before trying again.
LIMIT_RETRY_SECONDS = 0.5


def _guard(claim: ClaimedPartition) -> tuple[sa.ColumnElement[bool], ...]:
    return (partitions.c.id == claim.partition_id, partitions.c.status == _RUNNING,
            partitions.c.claim_token == claim.token)


def _run_guard(run_id: int, token: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (runs.c.id == run_id, runs.c.status == _RUNNING, runs.c.claim_token == token)


class SqlPartitions(SqlRepository):
    """The partitions repository on a SQL database (see :class:`~.base.PartitionRepository`).

    Lock order: concurrency keys, then the part, then its run, then the flow.
    """

    # -- dispatching ----------------------------------------------------------------------
    def open(
        self, claim: ClaimedRun, parts: Sequence[tuple[dict[str, Any], Any]], *,
        cursor_start: Any, hold_seconds: float, concurrency_limit: int | None = None,
        concurrency_group: str | None = None, group_limit: int | None = None,
    ) -> list[int] | None:
        """Record a dispatched run's parts (``(source spec, start cursor)`` in source order).

        Each part is later claimed under the limits given here: at most
        ``concurrency_limit`` running parts of the flow, and at most ``group_limit`` running
        parts of all flows in ``concurrency_group``. ``hold_seconds``: how far each part's
        lease renewal pushes the run's own lease.

        Idempotent: when the run already has parts (a redelivered task), nothing is added
        and the ids of those not yet ended are returned. ``None``: the run's claim is gone.
        The run's ``started_at`` becomes now: its duration counts the work, not the queue.
        """
        def work(conn: Connection) -> list[int] | None:
            now = self.now()
            held = conn.execute(sa.select(runs.c.id).where(*_run_guard(claim.run_id, claim.token))
                                .with_for_update()).first()
            if held is None:
                return None
            existing = conn.execute(sa.select(partitions.c.id, partitions.c.status)
                                    .where(partitions.c.run_id == claim.run_id)
                                    .order_by(partitions.c.part)).all()
            if existing:
                return [r.id for r in existing if r.status in LIVE_STATUSES]
            for index, (source, cursor) in enumerate(parts):
                conn.execute(partitions.insert().values(
                    run_id=claim.run_id, flow_id=claim.flow.id, part=index, status=_PENDING,
                    source=source, cursor_start=cursor, cursor=cursor, run_token=claim.token,
                    attempt=0, concurrency_limit=concurrency_limit,
                    concurrency_group=concurrency_group, group_limit=group_limit,
                    hold_seconds=hold_seconds, created_at=now))
            # The work starts now, on a worker: the run's time waiting in the queue since the
            # heartbeat claimed it is not part of its duration.
            conn.execute(runs.update().where(*_run_guard(claim.run_id, claim.token)).values(
                cursor_start=cursor_start, heartbeat_at=now, started_at=now,
                lease_expires_at=now + timedelta(seconds=hold_seconds)))
            return list(conn.execute(sa.select(partitions.c.id).where(
                partitions.c.run_id == claim.run_id).order_by(partitions.c.part)).scalars())

        return self._db.transact(work)

    # -- claiming ------------------------------------------------------------------------
    def claim(
        self, partition_id: int, worker_id: str
    ) -> ClaimedPartition | PartitionBusy | None:
        """Claim a part for ``worker_id``.

        A pending part is claimed; a running part whose lease expired (its worker died) is
        taken over with a fresh token. A part still leased to a live worker, or whose flow or
        concurrency group already runs as many parts as its limits allow, gives
        :class:`PartitionBusy`. ``None``: nothing to do (the part ended, or its run did,
        which voids the part).

        The limits hold across machines: the claim locks a row per limit (flow, group)
        before counting the parts running under it, so two claims never both see the
        last free slot.
        """
        def work(conn: Connection) -> ClaimedPartition | PartitionBusy | None:
            now = self.now()
            first = conn.execute(sa.select(partitions).where(
                partitions.c.id == partition_id)).first()
            if first is None or first.status in TERMINAL_STATUSES:
                return None
            keys = []
            if first.concurrency_group is not None and first.group_limit is not None:
                keys.append(f"group:{first.concurrency_group}")
            if first.concurrency_limit is not None:
                keys.append(f"flow:{first.flow_id}")
            for key in sorted(keys):
                _lock_key(conn, key)
            part = conn.execute(sa.select(partitions).where(partitions.c.id == partition_id)
                                .with_for_update()).first()
            if part is None or part.status in TERMINAL_STATUSES:
                return None
            if not self._run_holds(conn, part):
                _void(conn, partition_id, now)
                return None
            if part.status == _RUNNING and part.lease_expires_at >= now:
                wait = (part.lease_expires_at - now).total_seconds()
                return PartitionBusy(
                    wait + 0.2, f"part held by {part.worker_id} (lease expires in {wait:.1f}s)",
                    self._flow_by_id(conn, part.flow_id))
            busy = _at_limit(conn, part, now)
            if busy is not None:
                return PartitionBusy(LIMIT_RETRY_SECONDS, busy,
                                     self._flow_by_id(conn, part.flow_id))
            # Read the clock after counting: a part whose end freed the slot committed its
            # ended_at before the count saw it, so this start is never earlier.
            now = self.now()
            token = uuid.uuid4().hex
            conn.execute(partitions.update().where(partitions.c.id == partition_id).values(
                status=_RUNNING, claim_token=token, worker_id=worker_id,
                attempt=partitions.c.attempt + 1,
                started_at=sa.func.coalesce(partitions.c.started_at, now), heartbeat_at=now,
                lease_expires_at=self._settings.lease_until(now)))
            conn.execute(runs.update().where(*_run_guard(part.run_id, part.run_token)).values(
                heartbeat_at=now, lease_expires_at=now + timedelta(seconds=part.hold_seconds)))
            return ClaimedPartition(
                partition_id=partition_id, run_id=part.run_id, part=part.part, token=token,
                run_token=part.run_token, worker_id=worker_id, attempt=part.attempt + 1,
                source=part.source, cursor=part.cursor, counts=RunCounts.of(part),
                flow=self._flow_by_id(conn, part.flow_id), hold_seconds=part.hold_seconds)

        return self._db.transact(work)

    def _run_holds(self, conn: Connection, part: Any) -> bool:
        return conn.execute(sa.select(runs.c.id).where(
            *_run_guard(part.run_id, part.run_token))).first() is not None

    # -- while running -------------------------------------------------------------------
    def renew(self, claims: Iterable[ClaimedPartition]) -> set[int]:
        """Extend the leases of held parts, and of their runs; return the ids of the parts
        no longer held (taken over, or their run was reclaimed)."""
        claims = list(claims)

        def work(conn: Connection) -> set[int]:
            now = self.now()
            lost = set()
            for claim in claims:
                held = conn.execute(partitions.update().where(*_guard(claim)).values(
                    heartbeat_at=now, lease_expires_at=self._settings.lease_until(now))).rowcount
                run = conn.execute(runs.update().where(
                    *_run_guard(claim.run_id, claim.run_token)).values(
                    heartbeat_at=now,
                    lease_expires_at=now + timedelta(seconds=claim.hold_seconds))).rowcount
                if not (held and run):
                    lost.add(claim.partition_id)
            return lost

        return self._db.transact(work) if claims else set()

    def checkpoint(
        self, claim: ClaimedPartition, cursor: Any, conn: Any = None, *,
        counts: RunCounts | None = None,
    ) -> None:
        """Save a held part's cursor (through ``conn``: in the sink's own transaction).

        Raises:
            RunClaimLost: the part is no longer held (the write was refused).
        """
        def work(c: Connection) -> None:
            now = self.now()
            if not c.execute(partitions.update().where(*_guard(claim)).values(
                    cursor=cursor, heartbeat_at=now,
                    lease_expires_at=self._settings.lease_until(now),
                    **(counts.values() if counts is not None else {}))).rowcount:
                raise _lost(claim)

        if conn is not None:
            work(conn)
        else:
            self._db.transact(work)

    def progress(self, claim: ClaimedPartition, counts: RunCounts) -> bool:
        """Record a held part's counts so far; False when it is no longer held."""
        return bool(self._db.transact(lambda conn: conn.execute(
            partitions.update().where(*_guard(claim)).values(**counts.values())).rowcount))

    def retry(
        self, claim: ClaimedPartition, counts: RunCounts, *, error: str,
        error_type: str | None = None,
    ) -> bool:
        """Give a held part back, pending, to be retried from its last checkpoint (the other
        parts carry on); False when it was no longer held."""
        def work(conn: Connection) -> bool:
            now = self.now()
            return bool(conn.execute(partitions.update().where(*_guard(claim)).values(
                status=_PENDING, claim_token=None, heartbeat_at=now, lease_expires_at=None,
                error=truncate(error, MAX_ERROR), error_type=error_type,
                **counts.values())).rowcount)

        return self._db.transact(work)

    # -- ending --------------------------------------------------------------------------
    def finish(
        self, claim: ClaimedPartition, status: RunStatus, counts: RunCounts, *,
        duration_s: float | None = None, error: BaseException | str | None = None,
    ) -> PartitionOutcome:
        """End a held part; when it is the run's last, end the run in the same transaction.

        The run succeeds when every part did: the flow's cursor then becomes the furthest
        checkpoint (the last part, in source order, that read anything), and its next run is
        scheduled as after any run. A failed part fails the run once the others ended; the
        flow's cursor then stays where the run started.

        Raises:
            RunClaimLost: the part is no longer held (nothing was written).
        """
        error_type, message, trace = describe(error)

        def work(conn: Connection) -> PartitionOutcome:
            now = self.now()
            changed = conn.execute(partitions.update().where(*_guard(claim)).values(
                status=status.value, claim_token=None, ended_at=now, heartbeat_at=now,
                lease_expires_at=None, duration_s=duration_s, error_type=error_type,
                error=message, traceback=trace, **counts.values())).rowcount
            if not changed:
                raise _lost(claim)
            record = partition_record(conn.execute(sa.select(partitions).where(
                partitions.c.id == claim.partition_id)).one())
            run = conn.execute(sa.select(runs).where(*_run_guard(claim.run_id, claim.run_token))
                               .with_for_update()).first()
            if run is None:
                return PartitionOutcome(record, None)
            parts = conn.execute(sa.select(partitions).where(
                partitions.c.run_id == claim.run_id).order_by(partitions.c.part)).all()
            if any(p.status in LIVE_STATUSES for p in parts):
                # The run's counts so far (the pages show them while other parts run).
                so_far = sum((RunCounts.of(p) for p in parts), RunCounts())
                conn.execute(runs.update().where(runs.c.id == claim.run_id).values(
                    heartbeat_at=now, **so_far.values(),
                    lease_expires_at=now + timedelta(seconds=claim.hold_seconds)))
                return PartitionOutcome(record, None)
            self._end_partitioned_run(conn, run, parts, now)
            return PartitionOutcome(record, run_record(conn.execute(
                run_select().where(runs.c.id == claim.run_id)).one()))

        return self._db.transact(work)

    def _end_partitioned_run(
        self, conn: Connection, run: Any, parts: Sequence[Any], now: datetime
    ) -> None:
        failed = [p for p in parts if p.status != RunStatus.SUCCEEDED.value]
        total = sum((RunCounts.of(p) for p in parts), RunCounts())
        cursor = next((p.cursor for p in reversed(parts) if p.cursor is not None),
                      run.cursor_start)
        status = RunStatus.FAILED if failed else RunStatus.SUCCEEDED
        error = error_type = trace = None
        if failed:
            first = failed[0]
            error = (f"{len(failed)} of {len(parts)} partition(s) failed "
                     f"({', '.join(str(p.part) for p in failed)}); partition {first.part}: "
                     f"{first.error or first.status}")
            error_type, trace = first.error_type, first.traceback
        else:
            conn.execute(flows.update().where(flows.c.id == run.flow_id).values(
                cursor=cursor, cursor_updated_at=now))
        started = run.started_at or now
        conn.execute(runs.update().where(runs.c.id == run.id).values(
            status=status.value, live_flow_id=None, claim_token=None, ended_at=now,
            heartbeat_at=now, lease_expires_at=None,
            duration_s=(now - started).total_seconds(), error_type=error_type,
            error=truncate(error, MAX_ERROR), traceback=trace,
            cursor_end=cursor if not failed else run.cursor_start, **total.values()))
        conn.execute(flows.update().where(flows.c.id == run.flow_id).values(
            last_run_id=run.id, last_run_status=status.value, last_run_at=now,
            last_error=truncate(error, MAX_ERROR)))
        # The flow row is locked by the update above: its status is current.
        flow = self._lock_flow(conn, run.flow_id)
        self._schedule_next(conn, run.flow_id, flow, run.due_at or now, now)
        if not failed:
            self._chain(conn, flow.spec, now)

    # -- reading -------------------------------------------------------------------------
    def get(self, partition_id: int) -> PartitionRecord:
        row = self._db.transact(lambda conn: conn.execute(
            sa.select(partitions).where(partitions.c.id == partition_id)).first(), write=False)
        if row is None:
            raise RunNotFound(f"no partition with id {partition_id} in the store")
        return partition_record(row)

    def of_run(self, run_id: int) -> list[PartitionRecord]:
        rows = self._db.transact(lambda conn: conn.execute(
            sa.select(partitions).where(partitions.c.run_id == run_id)
            .order_by(partitions.c.part)).all(), write=False)
        return [partition_record(r) for r in rows]


def _lock_key(conn: Connection, key: str) -> None:
    query = sa.select(concurrency_locks.c.name).where(
        concurrency_locks.c.name == key).with_for_update()
    if conn.execute(query).first() is not None:
        return
    try:
        with conn.begin_nested():
            conn.execute(concurrency_locks.insert().values(name=key))
    except sa.exc.IntegrityError:  # created concurrently; now wait for its lock
        pass
    conn.execute(query).first()


def _at_limit(conn: Connection, part: Any, now: datetime) -> str | None:
    """Why ``part`` may not start now (a limit is reached), or ``None``. Parts whose lease
    expired do not count: their worker is gone."""
    live = (partitions.c.status == _RUNNING, partitions.c.lease_expires_at >= now,
            partitions.c.id != part.id)
    count = sa.select(sa.func.count()).select_from(partitions)
    limit, group, group_limit = part.concurrency_limit, part.concurrency_group, part.group_limit
    if limit is not None:
        n = conn.execute(count.where(*live, partitions.c.flow_id == part.flow_id)).scalar_one()
        if n >= limit:
            return f"flow at its concurrency limit ({n} of {limit} running)"
    if group is not None and group_limit is not None:
        n = conn.execute(count.where(*live, partitions.c.concurrency_group == group)
                         ).scalar_one()
        if n >= group_limit:
            return f"group {group!r} at its concurrency limit ({n} of {group_limit} running)"
    return None


def _void(conn: Connection, partition_id: int, now: datetime) -> None:
    conn.execute(partitions.update().where(
        partitions.c.id == partition_id, partitions.c.status.in_(LIVE_STATUSES)).values(
        status=RunStatus.CANCELLED.value, claim_token=None, ended_at=now,
        lease_expires_at=None, error="cancelled: its run ended or was reclaimed"))


def _lost(claim: ClaimedPartition) -> RunClaimLost:
    return RunClaimLost(
        f"partition {claim.part} of run {claim.run_id} (flow {claim.flow.name!r}): worker "
        f"{claim.worker_id!r} no longer holds it (taken over after its lease expired, or its "
        "run was reclaimed); this write was rejected")
