"""MemoryStore: the flow store's contract, in memory.

For fast tests of code that drives the engine (scheduling, claiming order, retries, chaining,
pausing) and for trying flows without a database. It keeps the same tables as the SQL store
(as dicts of rows) and makes the same guarded transitions under one lock; the contract test
suite runs on it and on every SQL database. Values stored as JSON in SQL (specs, cursors,
messages) go through a JSON round trip here too, so they come back as SQL gives them.

It is not shared between processes, and it forgets everything when the process ends.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal

from active_data_flow.errors import ConfigurationError, RunClaimLost, WorkerLost
from active_data_flow.flow import FlowSpec
from active_data_flow.runtimes.heartbeat.schedule import interval_of, schedule_of
from active_data_flow.runtimes.heartbeat.store.base import (
    MAX_ERROR,
    OVERDUE_GRACE_SECONDS,
    Outcome,
    Store,
    StoreSettings,
    check_json_value,
    check_page,
    check_search,
    check_trigger_cycle,
    default_lease_seconds,
    describe,
    next_due,
    paused_chain,
    truncate,
    unschedulable,
    utcnow,
)
from active_data_flow.runtimes.heartbeat.store.codec import decode
from active_data_flow.runtimes.heartbeat.store.dead_letters import letter_values
from active_data_flow.runtimes.heartbeat.store.inbox import new_entries
from active_data_flow.runtimes.heartbeat.store.records import (
    LIVE_STATUSES,
    TERMINAL_STATUSES,
    ClaimedPartition,
    ClaimedRun,
    DeadLetter,
    FlowBusy,
    FlowExists,
    FlowNotFound,
    FlowRecord,
    FlowStats,
    FlowStatus,
    InboxEntry,
    InboxReceipt,
    Page,
    PartitionBusy,
    PartitionOutcome,
    PartitionRecord,
    RunCounts,
    RunNotFound,
    RunRecord,
    RunStatus,
    WorkerRecord,
)
from active_data_flow.runtimes.heartbeat.store.workers import host_and_pid

__all__ = ["MemoryStore"]

Row = dict[str, Any]

_PENDING, _RUNNING = RunStatus.PENDING.value, RunStatus.RUNNING.value
_COUNTS = ("read", "written", "skipped", "failed", "batches")
_LIMIT_RETRY_SECONDS = 0.5


def _json(value: Any) -> Any:
    """``value`` as it comes back from a JSON column."""
    return None if value is None else json.loads(json.dumps(value, default=str))


class _Tables:
    """The store's rows, and the lock every transition holds."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.flows: dict[int, Row] = {}
        self.runs: dict[int, Row] = {}
        self.partitions: dict[int, Row] = {}
        self.letters: dict[int, Row] = {}
        self.workers: dict[str, Row] = {}
        self.inbox: dict[int, Row] = {}
        self._ids: dict[str, int] = {}

    def next_id(self, table: str) -> int:
        self._ids[table] = self._ids.get(table, 0) + 1
        return self._ids[table]


class _Repository:
    """Shared state and helpers of the memory repositories (the SQL ones' twins)."""

    def __init__(self, tables: _Tables, settings: StoreSettings) -> None:
        self._t = tables
        self._settings = settings

    def now(self) -> datetime:
        return self._settings.now()

    # -- reading -------------------------------------------------------------------------
    def _flow_row(self, name: str) -> Row:
        for row in self._t.flows.values():
            if row["name"] == name:
                return row
        raise FlowNotFound(f"no flow named {name!r} in the store", option="name")

    def _live(self, flow_id: int) -> Row | None:
        return next((r for r in self._t.runs.values()
                     if r["flow_id"] == flow_id and r["status"] in LIVE_STATUSES), None)

    def _flow_record(self, row: Row) -> FlowRecord:
        live = self._live(row["id"])
        return FlowRecord(
            id=row["id"], spec=FlowSpec.model_validate(row["spec"]), origin=row["origin"],
            status=row["status"], schedule=interval_of(row["spec"].get("runtime") or {}),
            cursor=_json(row["cursor"]), cursor_updated_at=row["cursor_updated_at"],
            next_run_at=live["due_at"] if live and live["status"] == _PENDING else None,
            running_run_id=live["id"] if live and live["status"] == _RUNNING else None,
            rerun_requested=row["rerun_requested"], last_run_id=row["last_run_id"],
            last_run_status=row["last_run_status"], last_run_at=row["last_run_at"],
            last_error=row["last_error"], code_error=row["code_error"],
            created_at=row["created_at"], updated_at=row["updated_at"])

    def _run_record(self, row: Row) -> RunRecord:
        values = {k: v for k, v in row.items() if k not in ("claim_token", "live")}
        return RunRecord(**values, flow=self._t.flows[row["flow_id"]]["name"])

    # -- scheduling ----------------------------------------------------------------------
    def _insert_pending(self, flow_id: int, trigger: str, due_at: datetime,
                        now: datetime) -> int:
        run_id = self._t.next_id("runs")
        self._t.runs[run_id] = {
            "id": run_id, "flow_id": flow_id, "status": _PENDING, "trigger": trigger,
            "due_at": due_at, "claim_token": None, "worker_id": None, "attempt": 0,
            "started_at": None, "heartbeat_at": None, "lease_expires_at": None,
            "ended_at": None, **dict.fromkeys(_COUNTS, 0), "duration_s": None,
            "cursor_start": None, "cursor_end": None, "error_type": None, "error": None,
            "traceback": None, "created_at": now}
        return run_id

    def _schedule_first(self, flow: Row, now: datetime) -> None:
        schedule = schedule_of(flow["spec"].get("runtime") or {})
        if schedule is not None:
            self._insert_pending(flow["id"], "schedule", schedule.first_due(now), now)

    def _cancel(self, run: Row, now: datetime, why: str) -> None:
        run.update(status=RunStatus.CANCELLED.value, ended_at=now, error=why)

    def _reschedule(self, flow: Row, old_spec: Mapping[str, Any], now: datetime) -> None:
        if schedule_of(old_spec.get("runtime") or {}) == schedule_of(
                flow["spec"].get("runtime") or {}) or flow["status"] != FlowStatus.ACTIVE.value:
            return
        schedule = schedule_of(flow["spec"].get("runtime") or {})
        live = self._live(flow["id"])
        if live is None:
            if schedule is not None:
                self._insert_pending(flow["id"], "schedule", schedule.first_due(now), now)
            return
        if live["status"] != _PENDING or live["trigger"] != "schedule":
            return
        if schedule is None:
            self._cancel(live, now, "cancelled: the flow is no longer scheduled")
        elif schedule.seconds is not None:
            live["due_at"] = min(live["due_at"], now + timedelta(seconds=schedule.seconds))
        else:
            live["due_at"] = schedule.first_due(now)

    def _schedule_next(self, flow: Row, previous_due: datetime, now: datetime) -> None:
        if flow["rerun_requested"]:
            flow["rerun_requested"] = False
            self._insert_pending(flow["id"], "manual", now, now)
            return
        if flow["status"] != FlowStatus.ACTIVE.value:
            return
        try:
            due = next_due(flow["spec"], previous_due, now)
        except Exception as exc:  # like the SQL store: never wedge the run
            flow.update(status=FlowStatus.PAUSED.value, last_error=unschedulable(
                flow["spec"], exc))
            return
        if due is not None:
            self._insert_pending(flow["id"], "schedule", due, now)

    def _trigger(self, flow: Row, reason: str, now: datetime) -> int | None:
        if reason == "chain" and flow["status"] != FlowStatus.ACTIVE.value:
            return None
        live = self._live(flow["id"])
        if live is None:
            return self._insert_pending(flow["id"], reason, now, now)
        if live["status"] == _PENDING:
            live.update(due_at=min(live["due_at"], now), trigger=reason)
        else:
            flow["rerun_requested"] = True
        return int(live["id"])

    def _end(self, flow: Row, run: Row, status: str, message: str | None,
             now: datetime) -> None:
        """After a run ended: the flow's summary, its next run, the flows it triggers."""
        flow.update(last_run_id=run["id"], last_run_status=status, last_run_at=now,
                    last_error=message)
        self._schedule_next(flow, run["due_at"], now)
        if status == RunStatus.SUCCEEDED.value:
            for name in flow["spec"].get("triggers") or ():
                target = next((f for f in self._t.flows.values() if f["name"] == name), None)
                if target is not None:
                    self._trigger(target, "chain", now)


def _lost(claim: ClaimedRun | ClaimedPartition) -> RunClaimLost:
    what = (f"partition {claim.part} of run {claim.run_id}"
            if isinstance(claim, ClaimedPartition) else f"run {claim.run_id}")
    return RunClaimLost(f"{what} of flow {claim.flow.name!r}: worker {claim.worker_id!r} no "
                        "longer holds its claim; this write was rejected")


class _Flows(_Repository):
    def create(self, spec: FlowSpec, *, origin: Literal["code", "spec"] = "spec",
               paused: bool = False) -> FlowRecord:
        stored = spec.to_dict()
        with self._t.lock:
            if any(f["name"] == spec.name for f in self._t.flows.values()):
                raise FlowExists(f"a flow named {spec.name!r} already exists", option="name")
            now = self.now()
            flow_id = self._t.next_id("flows")
            row = self._t.flows[flow_id] = {
                "id": flow_id, "name": spec.name, "origin": origin, "spec": stored,
                "spec_hash": spec.digest(),
                "status": (FlowStatus.PAUSED if paused else FlowStatus.ACTIVE).value,
                "cursor": None, "cursor_updated_at": None, "rerun_requested": False,
                "last_run_id": None, "last_run_status": None, "last_run_at": None,
                "last_error": None, "code_error": None, "created_at": now, "updated_at": now}
            if not paused:
                self._schedule_first(row, now)
            return self._flow_record(row)

    def update(self, name: str, spec: FlowSpec) -> FlowRecord:
        with self._t.lock:
            row = self._flow_row(name)
            old, now = row["spec"], self.now()
            row.update(spec=spec.to_dict(), spec_hash=spec.digest(), code_error=None,
                       updated_at=now)
            self._reschedule(row, old, now)
            return self._flow_record(row)

    def delete(self, name: str) -> None:
        with self._t.lock:
            row = self._flow_row(name)
            live = self._live(row["id"])
            if live is not None and live["status"] == _RUNNING:
                raise FlowBusy(f"flow {name!r} is running (run {live['id']}); pause it and "
                               "let the run end before deleting it")
            for table in (self._t.runs, self._t.partitions):
                for key in [k for k, r in table.items() if r["flow_id"] == row["id"]]:
                    del table[key]
            for letters in (self._t.letters, self._t.inbox):
                for key in [k for k, r in letters.items() if r["flow"] == name]:
                    del letters[key]
            del self._t.flows[row["id"]]

    def get(self, name: str) -> FlowRecord:
        with self._t.lock:
            return self._flow_record(self._flow_row(name))

    def page(self, *, status: str | None = None, search: str | None = None,
             offset: int = 0, limit: int = 50) -> Page[FlowRecord]:
        check_page(offset, limit)
        check_search(search)
        if status is not None and status not in (s.value for s in FlowStatus):
            raise ConfigurationError(f"unknown flow status {status!r}", option="status")
        with self._t.lock:
            rows = sorted((r for r in self._t.flows.values()
                           if (status is None or r["status"] == status)
                           and (not search or search.lower() in r["name"].lower())),
                          key=lambda r: str(r["name"]))
            items = [self._flow_record(r) for r in rows[offset:offset + limit]]
        return Page(items=items, total=len(rows), offset=offset, limit=limit)

    def pause(self, name: str) -> FlowRecord:
        with self._t.lock:
            row, now = self._flow_row(name), self.now()
            row.update(status=FlowStatus.PAUSED.value, rerun_requested=False, updated_at=now)
            live = self._live(row["id"])
            if live is not None and live["status"] == _PENDING:
                self._cancel(live, now, "cancelled: the flow was paused")
            return self._flow_record(row)

    def resume(self, name: str) -> FlowRecord:
        with self._t.lock:
            row, now = self._flow_row(name), self.now()
            row.update(status=FlowStatus.ACTIVE.value, updated_at=now)
            if self._live(row["id"]) is None:
                self._schedule_first(row, now)
            return self._flow_record(row)

    def trigger(self, name: str, *, reason: str = "manual") -> RunRecord:
        with self._t.lock:
            run_id = self._trigger(self._flow_row(name), reason, self.now())
            if run_id is None:
                raise paused_chain(name)
            return self._run_record(self._t.runs[run_id])

    def reset_cursor(self, name: str, cursor: Any = None) -> FlowRecord:
        check_json_value(cursor, "cursor")
        with self._t.lock:
            row = self._flow_row(name)
            live = self._live(row["id"])
            if live is not None and live["status"] == _RUNNING:
                raise FlowBusy(f"flow {name!r} is running (run {live['id']}); reset its "
                               "cursor when the run has ended")
            now = self.now()
            row.update(cursor=_json(cursor), cursor_updated_at=now, updated_at=now)
            return self._flow_record(row)

    def cursor(self, flow_id: int) -> Any:
        with self._t.lock:
            row = self._t.flows.get(flow_id)  # like SQL: no such flow, no cursor
            return None if row is None else _json(row["cursor"])

    def register_code(self, spec: FlowSpec) -> Outcome:
        check_trigger_cycle(spec, self._triggers_of)
        with self._t.lock:
            try:
                row = self._flow_row(spec.name)
            except FlowNotFound:
                self.create(spec, origin="code")
                return "created"
            if row["origin"] != "code":
                raise FlowExists(f"a flow named {spec.name!r} was created from a spec; rename "
                                 "the code flow or delete the stored one", option="name")
            if row["spec_hash"] == spec.digest():
                row["code_error"] = None
                return "unchanged"
            self.update(spec.name, spec)
            return "updated"

    def _triggers_of(self, name: str) -> tuple[str, ...]:
        try:
            return self.get(name).spec.triggers
        except FlowNotFound:
            return ()

    def set_code_error(self, name: str, message: str | None) -> None:
        with self._t.lock:
            for row in self._t.flows.values():
                if row["name"] == name and row["origin"] == "code":
                    row["code_error"] = message

    def code_flow_names(self) -> list[str]:
        with self._t.lock:
            return [r["name"] for r in self._t.flows.values() if r["origin"] == "code"]

    def overdue(self, *, grace_seconds: float = OVERDUE_GRACE_SECONDS) -> list[FlowRecord]:
        with self._t.lock:
            limit = self.now() - timedelta(seconds=grace_seconds)
            late = {r["flow_id"] for r in self._t.runs.values()
                    if r["status"] == _PENDING and r["due_at"] < limit}
            rows = sorted((self._t.flows[i] for i in late), key=lambda r: str(r["name"]))
            return [self._flow_record(r) for r in rows]

    def count_by_status(self) -> dict[str, int]:
        with self._t.lock:
            counts: dict[str, int] = {}
            for row in self._t.flows.values():
                counts[row["status"]] = counts.get(row["status"], 0) + 1
            return counts


class _Runs(_Repository):
    def _held(self, claim: ClaimedRun) -> Row | None:
        run = self._t.runs.get(claim.run_id)
        if run is None or run["status"] != _RUNNING or run["claim_token"] != claim.token:
            return None
        return run

    def _hold(self, claim: ClaimedRun) -> Row:
        run = self._held(claim)
        if run is None:
            raise _lost(claim)
        return run

    def _start(self, run: Row, token: str, worker_id: str, now: datetime) -> None:
        flow = self._t.flows[run["flow_id"]]
        run.update(status=_RUNNING, claim_token=token, worker_id=worker_id,
                   attempt=run["attempt"] + 1, started_at=run["started_at"] or now,
                   cursor_start=run["cursor_start"] if run["started_at"] is not None
                   else flow["cursor"], heartbeat_at=now,
                   lease_expires_at=self._settings.lease_until(now), error=None,
                   error_type=None, traceback=None)

    def _claimed(self, run: Row, token: str, worker_id: str) -> ClaimedRun:
        flow = self._flow_record(self._t.flows[run["flow_id"]])
        return ClaimedRun(run_id=run["id"], token=token, worker_id=worker_id, flow=flow,
                          attempt=run["attempt"], trigger=run["trigger"], cursor=flow.cursor,
                          counts=RunCounts(*(run[c] for c in _COUNTS)))

    def claim_due(self, worker_id: str, *, limit: int | None = None,
                  due_by: datetime | None = None) -> list[ClaimedRun]:
        with self._t.lock:
            now = self.now()
            cutoff = now if due_by is None else min(now, due_by)
            due = sorted((r for r in self._t.runs.values()
                          if r["status"] == _PENDING and r["due_at"] <= cutoff),
                         key=lambda r: (r["due_at"], r["id"]))[:limit]
            token = uuid.uuid4().hex
            for run in due:
                self._start(run, token, worker_id, now)
            return [self._claimed(run, token, worker_id) for run in due]

    def claim(self, run_id: int, worker_id: str) -> ClaimedRun | None:
        with self._t.lock:
            run = self._t.runs.get(run_id)
            if run is None or run["status"] != _PENDING:
                return None
            token = uuid.uuid4().hex
            self._start(run, token, worker_id, self.now())
            return self._claimed(run, token, worker_id)

    def adopt(self, run_id: int, token: str, worker_id: str) -> ClaimedRun | None:
        with self._t.lock:
            run = self._t.runs.get(run_id)
            if run is None or run["status"] != _RUNNING or run["claim_token"] != token:
                return None
            now = self.now()
            run.update(worker_id=worker_id, heartbeat_at=now,
                       lease_expires_at=self._settings.lease_until(now))
            return self._claimed(run, token, worker_id)

    def dispatched(self, run_id: int, token: str) -> ClaimedRun | None:
        with self._t.lock:
            run = self._t.runs.get(run_id)
            if run is None or run["status"] != _RUNNING or run["claim_token"] != token:
                return None
            # Like SQL: the claim that dispatched the run, without the run's counts.
            return replace(self._claimed(run, token, run["worker_id"] or ""),
                           counts=RunCounts())

    def hold_dispatched(self, claim: ClaimedRun, seconds: float) -> bool:
        with self._t.lock:
            run = self._held(claim)
            if run is None:
                return False
            now = self.now()
            run.update(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=seconds))
            return True

    def renew(self, claims: Iterable[ClaimedRun]) -> set[int]:
        with self._t.lock:
            now = self.now()
            gone = set()
            for claim in claims:
                run = self._held(claim)
                if run is None:
                    gone.add(claim.run_id)
                else:
                    run.update(heartbeat_at=now, lease_expires_at=self._settings.lease_until(now))
            return gone

    def begin_attempt(self, claim: ClaimedRun, attempt: int) -> tuple[Any, RunCounts]:
        with self._t.lock:
            run, now = self._hold(claim), self.now()
            cursor = _json(self._t.flows[run["flow_id"]]["cursor"])
            run.update(attempt=attempt, heartbeat_at=now,
                       lease_expires_at=self._settings.lease_until(now))
            return cursor, RunCounts(*(run[c] for c in _COUNTS))

    def progress(self, claim: ClaimedRun, counts: RunCounts, *, error: str | None = None,
                 error_type: str | None = None) -> bool:
        with self._t.lock:
            run = self._held(claim)
            if run is None:
                return False
            now = self.now()
            run.update(**counts.values(), heartbeat_at=now,
                       lease_expires_at=self._settings.lease_until(now))
            if error is not None:
                run.update(error=truncate(error, MAX_ERROR), error_type=error_type)
            return True

    def checkpoint(self, claim: ClaimedRun, cursor: Any, conn: Any = None, *,
                   counts: RunCounts | None = None) -> None:
        with self._t.lock:
            run, now = self._hold(claim), self.now()
            run.update(cursor_end=_json(cursor), heartbeat_at=now,
                       lease_expires_at=self._settings.lease_until(now),
                       **(counts.values() if counts is not None else {}))
            self._t.flows[run["flow_id"]].update(cursor=_json(cursor), cursor_updated_at=now)

    def finish(self, claim: ClaimedRun, status: RunStatus, counts: RunCounts, *,
               duration_s: float | None = None, error: BaseException | str | None = None,
               code_error: str | None = None) -> RunRecord:
        if status not in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
            raise ConfigurationError(f"cannot finish a run as {status!r}", option="status")
        error_type, message, trace = describe(error)
        with self._t.lock:
            run, now = self._hold(claim), self.now()
            run.update(status=status.value, claim_token=None, ended_at=now, heartbeat_at=now,
                       lease_expires_at=None, duration_s=duration_s, error_type=error_type,
                       error=message, traceback=trace, **counts.values())
            flow = self._t.flows[run["flow_id"]]
            flow["code_error"] = code_error
            self._end(flow, run, status.value, message, now)
            return self._run_record(run)

    def release(self, claim: ClaimedRun, counts: RunCounts | None = None, *,
                reason: str, retry_in: float = 0.0,
                unclaim: bool = False) -> RunRecord | None:
        with self._t.lock:
            run = self._held(claim)
            if run is None:
                return None
            now = self.now()
            if self._t.flows[run["flow_id"]]["status"] == FlowStatus.PAUSED.value:
                run.update(status=RunStatus.CANCELLED.value, ended_at=now)
            else:
                run.update(status=_PENDING, due_at=now + timedelta(seconds=retry_in))
            if unclaim:
                run.update(attempt=max(run["attempt"] - 1, 0))
                if claim.attempt <= 1:
                    run.update(started_at=None, cursor_start=None)
            run.update(claim_token=None, heartbeat_at=now, lease_expires_at=None, error=reason,
                       error_type=None, **(counts.values() if counts else {}))
            return self._run_record(run)

    def next_lease_expiry(self) -> datetime | None:
        with self._t.lock:
            return min((r["lease_expires_at"] for r in self._t.runs.values()
                        if r["status"] == _RUNNING and r["lease_expires_at"] is not None),
                       default=None)

    def reclaim_expired(self, *, limit: int = 100) -> list[int]:
        with self._t.lock:
            now = self.now()
            expired = sorted((r for r in self._t.runs.values()
                              if r["status"] == _RUNNING and r["lease_expires_at"] < now),
                             key=lambda r: r["lease_expires_at"])[:limit]
            for run in expired:
                error_type, message, _trace = describe(WorkerLost(
                    f"worker {run['worker_id']!r} stopped renewing its lease (expired at "
                    f"{run['lease_expires_at']:%Y-%m-%d %H:%M:%S} UTC); the run was reclaimed "
                    "and the flow resumes from its last checkpoint"))
                run.update(status=RunStatus.FAILED.value, claim_token=None, ended_at=now,
                           lease_expires_at=None, error_type=error_type, error=message)
                flow = self._t.flows[run["flow_id"]]
                rerun = flow["rerun_requested"]
                flow.update(last_run_id=run["id"], last_run_status=RunStatus.FAILED.value,
                            last_run_at=now, last_error=message, rerun_requested=False)
                if flow["status"] == FlowStatus.ACTIVE.value or rerun:
                    self._insert_pending(flow["id"], "recovery", now, now)
            return [run["id"] for run in expired]

    def get(self, run_id: int) -> RunRecord:
        with self._t.lock:
            run = self._t.runs.get(run_id)
            if run is None:
                raise RunNotFound(f"no run with id {run_id} in the store")
            return self._run_record(run)

    def page(self, flow: str | None = None, status: str | None = None, *, offset: int = 0,
             limit: int = 50, count_limit: int | None = 10_000) -> Page[RunRecord]:
        check_page(offset, limit)
        if status is not None and status not in {s.value for s in RunStatus}:
            raise ConfigurationError(f"unknown run status {status!r}", option="status")
        with self._t.lock:
            flow_id = None if flow is None else self._flow_row(flow)["id"]
            rows = sorted((r for r in self._t.runs.values()
                           if (flow_id is None or r["flow_id"] == flow_id)
                           and (status is None or r["status"] == status)),
                          key=lambda r: -int(r["id"]))
            items = [self._run_record(r) for r in rows[offset:offset + limit]]
        total = len(rows) if count_limit is None else min(len(rows), count_limit)
        return Page(items=items, total=total, offset=offset, limit=limit,
                    total_is_exact=count_limit is None or len(rows) <= count_limit)

    def stats(self, flow: str, *, window: int = 100) -> FlowStats:
        if not 1 <= window <= 10_000:
            raise ConfigurationError(f"window must be 1..10000, got {window}", option="window")
        with self._t.lock:
            flow_id = self._flow_row(flow)["id"]
            ended = sorted((r for r in self._t.runs.values()
                            if r["flow_id"] == flow_id and r["ended_at"] is not None),
                           key=lambda r: -int(r["id"]))[:window]
            ok = [r["ended_at"] for r in self._t.runs.values()
                  if r["flow_id"] == flow_id and r["status"] == RunStatus.SUCCEEDED.value]
        durations = [r["duration_s"] for r in ended if r["duration_s"] is not None]

        def count(status: str) -> int:
            return sum(1 for r in ended if r["status"] == status)

        return FlowStats(
            flow=flow, window=window, runs=len(ended), succeeded=count("succeeded"),
            failed=count("failed"), cancelled=count("cancelled"),
            read=sum(r["read"] for r in ended), written=sum(r["written"] for r in ended),
            skipped=sum(r["skipped"] for r in ended),
            failed_records=sum(r["failed"] for r in ended),
            avg_duration_s=sum(durations) / len(durations) if durations else None,
            max_duration_s=max(durations) if durations else None,
            last_success_at=max(ok) if ok else None)

    def count_live(self, *, overdue_after: datetime) -> dict[str, int]:
        with self._t.lock:
            rows = list(self._t.runs.values())
        return {"pending": sum(r["status"] == _PENDING for r in rows),
                "running": sum(r["status"] == _RUNNING for r in rows),
                "overdue": sum(r["status"] == _PENDING and r["due_at"] < overdue_after
                               for r in rows)}


class _Partitions(_Repository):
    def _held(self, claim: ClaimedPartition) -> Row | None:
        part = self._t.partitions.get(claim.partition_id)
        if part is None or part["status"] != _RUNNING or part["claim_token"] != claim.token:
            return None
        return part

    def _run_holds(self, run_id: int, token: str) -> Row | None:
        run = self._t.runs.get(run_id)
        if run is None or run["status"] != _RUNNING or run["claim_token"] != token:
            return None
        return run

    def _record(self, part: Row) -> PartitionRecord:
        return PartitionRecord(**{k: v for k, v in part.items()
                                  if k not in ("claim_token", "run_token")})

    def open(self, claim: ClaimedRun, parts: Sequence[tuple[dict[str, Any], Any]], *,
             cursor_start: Any, hold_seconds: float, concurrency_limit: int | None = None,
             concurrency_group: str | None = None,
             group_limit: int | None = None) -> list[int] | None:
        with self._t.lock:
            run = self._run_holds(claim.run_id, claim.token)
            if run is None:
                return None
            existing = sorted((p for p in self._t.partitions.values()
                               if p["run_id"] == claim.run_id), key=lambda p: int(p["part"]))
            if existing:
                return [p["id"] for p in existing if p["status"] in LIVE_STATUSES]
            now = self.now()
            ids = []
            for index, (source, cursor) in enumerate(parts):
                part_id = self._t.next_id("partitions")
                ids.append(part_id)
                self._t.partitions[part_id] = {
                    "id": part_id, "run_id": claim.run_id, "flow_id": claim.flow.id,
                    "part": index, "status": _PENDING, "source": _json(source),
                    "cursor_start": _json(cursor), "cursor": _json(cursor),
                    "run_token": claim.token, "claim_token": None, "worker_id": None,
                    "attempt": 0, "concurrency_limit": concurrency_limit,
                    "concurrency_group": concurrency_group, "group_limit": group_limit,
                    "hold_seconds": hold_seconds, "started_at": None, "heartbeat_at": None,
                    "lease_expires_at": None, "ended_at": None, **dict.fromkeys(_COUNTS, 0),
                    "duration_s": None, "error_type": None, "error": None, "traceback": None,
                    "created_at": now}
            run.update(cursor_start=_json(cursor_start), heartbeat_at=now, started_at=now,
                       lease_expires_at=now + timedelta(seconds=hold_seconds))
            return ids

    def claim(self, partition_id: int,
              worker_id: str) -> ClaimedPartition | PartitionBusy | None:
        with self._t.lock:
            part = self._t.partitions.get(partition_id)
            if part is None or part["status"] in TERMINAL_STATUSES:
                return None
            now = self.now()
            run = self._run_holds(part["run_id"], part["run_token"])
            flow = self._flow_record(self._t.flows[part["flow_id"]])
            if run is None:
                part.update(status=RunStatus.CANCELLED.value, claim_token=None, ended_at=now,
                            lease_expires_at=None,
                            error="cancelled: its run ended or was reclaimed")
                return None
            if part["status"] == _RUNNING and part["lease_expires_at"] >= now:
                wait = (part["lease_expires_at"] - now).total_seconds()
                return PartitionBusy(wait + 0.2, f"part held by {part['worker_id']} (lease "
                                     f"expires in {wait:.1f}s)", flow)
            busy = self._at_limit(part, now)
            if busy is not None:
                return PartitionBusy(_LIMIT_RETRY_SECONDS, busy, flow)
            token = uuid.uuid4().hex
            part.update(status=_RUNNING, claim_token=token, worker_id=worker_id,
                        attempt=part["attempt"] + 1, started_at=part["started_at"] or now,
                        heartbeat_at=now, lease_expires_at=self._settings.lease_until(now))
            run.update(heartbeat_at=now,
                       lease_expires_at=now + timedelta(seconds=part["hold_seconds"]))
            return ClaimedPartition(
                partition_id=partition_id, run_id=part["run_id"], part=part["part"],
                token=token, run_token=part["run_token"], worker_id=worker_id,
                attempt=part["attempt"], source=_json(part["source"]),
                cursor=_json(part["cursor"]), counts=RunCounts(*(part[c] for c in _COUNTS)),
                flow=flow, hold_seconds=part["hold_seconds"])

    def _at_limit(self, part: Row, now: datetime) -> str | None:
        live = [p for p in self._t.partitions.values() if p["status"] == _RUNNING
                and p["lease_expires_at"] >= now and p["id"] != part["id"]]
        limit, group = part["concurrency_limit"], part["concurrency_group"]
        if limit is not None:
            n = sum(p["flow_id"] == part["flow_id"] for p in live)
            if n >= limit:
                return f"flow at its concurrency limit ({n} of {limit} running)"
        if group is not None and part["group_limit"] is not None:
            n = sum(p["concurrency_group"] == group for p in live)
            if n >= part["group_limit"]:
                return (f"group {group!r} at its concurrency limit ({n} of "
                        f"{part['group_limit']} running)")
        return None

    def renew(self, claims: Iterable[ClaimedPartition]) -> set[int]:
        with self._t.lock:
            now = self.now()
            gone = set()
            for claim in claims:
                part = self._held(claim)
                run = self._run_holds(claim.run_id, claim.run_token)
                if part is not None:
                    part.update(heartbeat_at=now,
                                lease_expires_at=self._settings.lease_until(now))
                if run is not None:
                    run.update(heartbeat_at=now,
                               lease_expires_at=now + timedelta(seconds=claim.hold_seconds))
                if part is None or run is None:
                    gone.add(claim.partition_id)
            return gone

    def checkpoint(self, claim: ClaimedPartition, cursor: Any, conn: Any = None, *,
                   counts: RunCounts | None = None) -> None:
        with self._t.lock:
            part = self._held(claim)
            if part is None:
                raise _lost(claim)
            now = self.now()
            part.update(cursor=_json(cursor), heartbeat_at=now,
                        lease_expires_at=self._settings.lease_until(now),
                        **(counts.values() if counts is not None else {}))

    def progress(self, claim: ClaimedPartition, counts: RunCounts) -> bool:
        with self._t.lock:
            part = self._held(claim)
            if part is not None:
                part.update(**counts.values())
            return part is not None

    def retry(self, claim: ClaimedPartition, counts: RunCounts, *, error: str,
              error_type: str | None = None) -> bool:
        with self._t.lock:
            part = self._held(claim)
            if part is None:
                return False
            part.update(status=_PENDING, claim_token=None, heartbeat_at=self.now(),
                        lease_expires_at=None, error=truncate(error, MAX_ERROR),
                        error_type=error_type, **counts.values())
            return True

    def finish(self, claim: ClaimedPartition, status: RunStatus, counts: RunCounts, *,
               duration_s: float | None = None,
               error: BaseException | str | None = None) -> PartitionOutcome:
        error_type, message, trace = describe(error)
        with self._t.lock:
            part = self._held(claim)
            if part is None:
                raise _lost(claim)
            now = self.now()
            part.update(status=status.value, claim_token=None, ended_at=now, heartbeat_at=now,
                        lease_expires_at=None, duration_s=duration_s, error_type=error_type,
                        error=message, traceback=trace, **counts.values())
            record = self._record(part)
            run = self._run_holds(claim.run_id, claim.run_token)
            if run is None:
                return PartitionOutcome(record, None)
            parts = sorted((p for p in self._t.partitions.values()
                            if p["run_id"] == claim.run_id), key=lambda p: int(p["part"]))
            so_far = {c: sum(p[c] for p in parts) for c in _COUNTS}
            if any(p["status"] in LIVE_STATUSES for p in parts):
                run.update(heartbeat_at=now, **so_far,
                           lease_expires_at=now + timedelta(seconds=claim.hold_seconds))
                return PartitionOutcome(record, None)
            self._end_run(run, parts, so_far, now)
            return PartitionOutcome(record, self._run_record(run))

    def _end_run(self, run: Row, parts: list[Row], counts: dict[str, int],
                 now: datetime) -> None:
        failed = [p for p in parts if p["status"] != RunStatus.SUCCEEDED.value]
        flow = self._t.flows[run["flow_id"]]
        cursor = next((p["cursor"] for p in reversed(parts) if p["cursor"] is not None),
                      run["cursor_start"])
        status, error = RunStatus.SUCCEEDED.value, None
        if failed:
            first = failed[0]
            status = RunStatus.FAILED.value
            error = (f"{len(failed)} of {len(parts)} partition(s) failed "
                     f"({', '.join(str(p['part']) for p in failed)}); partition "
                     f"{first['part']}: {first['error'] or first['status']}")
            run.update(error_type=first["error_type"], traceback=first["traceback"])
        else:
            run.update(error_type=None, traceback=None)
            flow.update(cursor=cursor, cursor_updated_at=now)
        run.update(status=status, claim_token=None, ended_at=now, heartbeat_at=now,
                   lease_expires_at=None, error=truncate(error, MAX_ERROR),
                   duration_s=(now - (run["started_at"] or now)).total_seconds(),
                   cursor_end=run["cursor_start"] if failed else cursor, **counts)
        self._end(flow, run, status, truncate(error, MAX_ERROR), now)

    def get(self, partition_id: int) -> PartitionRecord:
        with self._t.lock:
            part = self._t.partitions.get(partition_id)
            if part is None:
                raise RunNotFound(f"no partition with id {partition_id} in the store")
            return self._record(part)

    def of_run(self, run_id: int) -> list[PartitionRecord]:
        with self._t.lock:
            return [self._record(p) for p in sorted(
                (p for p in self._t.partitions.values() if p["run_id"] == run_id),
                key=lambda p: int(p["part"]))]


class _DeadLetters(_Repository):
    def _record(self, row: Row) -> DeadLetter:
        values = {k: v for k, v in row.items() if k != "meta"}
        values.update(position=decode(row["position"]), message=decode(row["message"]))
        return DeadLetter(**values, metadata=decode(row["meta"]) or {})

    def add(self, letters: Sequence[Mapping[str, Any]], run_id: int | None) -> None:
        with self._t.lock:
            now = self.now()
            for letter in letters:
                letter_id = self._t.next_id("letters")
                values = letter_values(letter, run_id, now)
                values.update(position=_json(values["position"]),
                              message=_json(values["message"]), meta=_json(values["meta"]))
                self._t.letters[letter_id] = {"id": letter_id, **values,
                                              "replayed_at": None, "replay_error": None}

    def page(self, flow: str, *, offset: int = 0, limit: int = 50,
             include_replayed: bool = False) -> Page[DeadLetter]:
        check_page(offset, limit)
        with self._t.lock:
            rows = sorted((r for r in self._t.letters.values() if r["flow"] == flow
                           and (include_replayed or r["replayed_at"] is None)),
                          key=lambda r: -int(r["id"]))
            items = [self._record(r) for r in rows[offset:offset + limit]]
        return Page(items=items, total=len(rows), offset=offset, limit=limit)

    def for_replay(self, flow: str, ids: Iterable[int] | None = None, *,
                   limit: int = 10_000) -> list[DeadLetter]:
        wanted = None if ids is None else set(ids)
        with self._t.lock:
            rows = sorted((r for r in self._t.letters.values() if r["flow"] == flow
                           and r["replayed_at"] is None
                           and (wanted is None or r["id"] in wanted)),
                          key=lambda r: int(r["id"]))[:limit]
            return [self._record(r) for r in rows]

    def mark_replayed(self, ids: Sequence[int]) -> None:
        with self._t.lock:
            now = self.now()
            for letter_id in ids:
                row = self._t.letters.get(letter_id)
                if row is not None:  # like SQL: an unknown (deleted) letter changes nothing
                    row.update(replayed_at=now, replay_error=None,
                               replay_attempts=row["replay_attempts"] + 1)

    def mark_failed(self, failures: Mapping[int, str]) -> None:
        with self._t.lock:
            for letter_id, error in failures.items():
                row = self._t.letters.get(letter_id)
                if row is not None:
                    row.update(replay_error=truncate(error, MAX_ERROR),
                               replay_attempts=row["replay_attempts"] + 1)

    def discard(self, flow: str, ids: Iterable[int] | None = None) -> int:
        wanted = None if ids is None else set(ids)
        with self._t.lock:
            gone = [letter_id for letter_id, r in self._t.letters.items()
                    if r["flow"] == flow and r["replayed_at"] is None
                    and (wanted is None or letter_id in wanted)]
            for letter_id in gone:
                del self._t.letters[letter_id]
        return len(gone)


class _Workers(_Repository):
    def record_beat(self, worker_id: str, claimed: int) -> None:
        with self._t.lock:
            now = self.now()
            row = self._t.workers.get(worker_id)
            if row is None:
                host, pid = host_and_pid(worker_id)
                row = self._t.workers[worker_id] = {
                    "id": worker_id, "hostname": host, "pid": pid, "started_at": now,
                    "beats": 0}
            row.update(last_beat_at=now, last_claimed=claimed, beats=row["beats"] + 1)

    def recent(self, *, seen_within: float | None = None) -> list[WorkerRecord]:
        with self._t.lock:
            since = None if seen_within is None else self.now() - timedelta(
                seconds=seen_within)
            rows = sorted((r for r in self._t.workers.values()
                           if since is None or r["last_beat_at"] >= since),
                          key=lambda r: r["last_beat_at"], reverse=True)[:1000]
            return [WorkerRecord(**r) for r in rows]

    def last_beat(self) -> datetime | None:
        with self._t.lock:
            return max((r["last_beat_at"] for r in self._t.workers.values()), default=None)


class _Inbox(_Repository):
    def push(self, flow: str, records: Sequence[tuple[str | None, Mapping[str, Any]]],
             ) -> InboxReceipt:
        with self._t.lock:
            self._flow_row(flow)
            taken = {r["key"] for r in self._t.inbox.values()
                     if r["flow"] == flow and r["key"] is not None}
            fresh, duplicates = new_entries(records, taken)
            now = self.now()
            last = None
            for key, record in fresh:
                last = entry_id = self._t.next_id("inbox")
                self._t.inbox[entry_id] = {"id": entry_id, "flow": flow, "key": key,
                                           "payload": _json(dict(record)), "received_at": now}
            return InboxReceipt(accepted=len(fresh), duplicates=duplicates, last_id=last)

    def read(self, flow: str, after: int | None, limit: int) -> list[InboxEntry]:
        with self._t.lock:
            rows = [r for r in self._t.inbox.values()
                    if r["flow"] == flow and (after is None or r["id"] > after)]
            return [InboxEntry(**r) for r in sorted(rows, key=lambda r: int(r["id"]))[:limit]]

    def count(self, flow: str, after: int | None = None) -> int:
        with self._t.lock:
            return sum(1 for r in self._t.inbox.values()
                       if r["flow"] == flow and (after is None or r["id"] > after))

    def purge(self, flow: str, upto: int, received_before: datetime) -> int:
        with self._t.lock:
            gone = [i for i, r in self._t.inbox.items() if r["flow"] == flow
                    and r["id"] <= upto and r["received_at"] < received_before]
            for entry_id in gone:
                del self._t.inbox[entry_id]
            return len(gone)


class MemoryStore(Store):
    """The flow store in this process's memory (see the module docstring).

    Args:
        lease_seconds, renew_seconds, clock: as for :class:`~.sql.FlowStore`.
    """

    def __init__(self, *, lease_seconds: float | None = None,
                 renew_seconds: float | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.settings = StoreSettings(
            lease_seconds=float(default_lease_seconds() if lease_seconds is None
                                else lease_seconds),
            renew_seconds=renew_seconds, clock=clock or utcnow)
        tables = _Tables()
        self.flows = _Flows(tables, self.settings)
        self.runs = _Runs(tables, self.settings)
        self.partitions = _Partitions(tables, self.settings)
        self.dead_letters = _DeadLetters(tables, self.settings)
        self.workers = _Workers(tables, self.settings)
        self.inbox = _Inbox(tables, self.settings)

    def __repr__(self) -> str:
        return "MemoryStore()"
