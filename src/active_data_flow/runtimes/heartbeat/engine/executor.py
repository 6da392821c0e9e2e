"""The one executor of claimed work: whole runs (heartbeat) and parts of runs (Celery).

:class:`Executor` takes a claim, holds its lease while it works, builds the flow from its
record once (a flow whose code cannot be loaded fails its own run, with the reason on the
flow's record), runs the :class:`~active_data_flow.runner.Runner` loop from the claim's
cursor with a fenced checkpoint after every durable batch (in the sink's own transaction
when the sink writes to the store's database), retries transient failures, records the
outcome, and calls the flow's hooks once the run has ended. Whole runs and parts differ only
in what they write to the store (:class:`_RunWork`, :class:`_PartWork`) and in how a retry
waits: a run retries here, a part goes back to its queue so the other parts carry on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from active_data_flow.catalog import FlowCatalog, catalog
from active_data_flow.connectors.sqlalchemy._db import engine_for
from active_data_flow.errors import (
    ConfigurationError,
    FlowRunError,
    RunClaimLost,
    caused_by,
    error_type,
)
from active_data_flow.flow import DataFlow
from active_data_flow.formatting import count, throughput
from active_data_flow.registry import untrusted_specs
from active_data_flow.runner import Checkpoint, Runner, RunResult, call_hook
from active_data_flow.runtime import Runtime
from active_data_flow.runtimes.heartbeat.engine.flows import flow_for
from active_data_flow.runtimes.heartbeat.engine.leases import Claim, Held, LeaseRenewer
from active_data_flow.runtimes.heartbeat.store import (
    ClaimedPartition,
    ClaimedRun,
    FlowCodeError,
    FlowRecord,
    FlowStore,
    RunCounts,
    RunRecord,
    RunStatus,
    Store,
    StoreError,
)
from active_data_flow.runtimes.heartbeat.store._db import resolve_url

__all__ = ["Executor", "RunContext", "current_run", "default_worker_id", "run_store", "trust"]

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    """``hostname:pid``: unique per process, readable in run records."""
    return f"{socket.gethostname()}:{os.getpid()}"


def trust(record: FlowRecord) -> AbstractContextManager[None]:
    """The context a flow's connectors are built in: a flow created from JSON (the web, the
    store) is untrusted, so it may only name what the application registered."""
    return untrusted_specs() if record.origin == "spec" else nullcontext()


# -- the run in progress ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunContext:
    """The stored run the current thread executes (see :func:`current_run`)."""

    run_id: int
    flow: str
    worker_id: str
    attempt: int
    store: Store


_current: ContextVar[RunContext | None] = ContextVar("adf_current_run", default=None)


def current_run() -> RunContext | None:
    """The stored run this thread is executing, or ``None`` outside one.

    Connectors may use it: the ``dead_letters`` sink files letters under the run's id, in
    the run's store.
    """
    return _current.get()


def run_store(database: str | None = None) -> Store:
    """The flow store a store-backed connector (dead letters, the inbox) works with: that
    of the run being executed, else the store at ``database`` (else ``ADF_DATABASE_URL``),
    on the one cached engine of that database."""
    run = current_run()
    if database is None and run is not None:
        return run.store
    engine = engine_for(resolve_url(database), profile="store").engine
    return FlowStore(engine=engine, auto_upgrade=False)


@contextmanager
def _running(context: RunContext) -> Iterator[None]:
    token = _current.set(context)
    try:
        yield
    finally:
        _current.reset(token)


# -- what a run and a part write -------------------------------------------------------
class _Ending:
    """Marks the claim's lease as ending once the work writes its outcome: a renewal that
    finds the run ended meanwhile then knows it was not taken over."""

    held: Held | None = None

    def _ending(self) -> None:
        if self.held is not None:
            self.held.ending.set()


class _RunWork(_Ending):
    """A whole run: checkpoints move the flow's cursor; retries happen in this process."""

    retries_here = True

    def __init__(self, store: Store, claim: ClaimedRun) -> None:
        self.store, self.claim = store, claim
        self.cursor, self.counts = claim.cursor, claim.counts

    def flow(self, flow: DataFlow) -> DataFlow:
        return flow

    def checkpoint(self, cursor: Any, conn: Any, counts: RunCounts) -> None:
        self.store.runs.checkpoint(self.claim, cursor, conn, counts=counts)

    def retry_later(self, counts: RunCounts, note: str, kind: str) -> bool:
        """Note the failed attempt on the run (it retries here, after the backoff)."""
        return self.store.runs.progress(self.claim, counts, error=note, error_type=kind)

    def begin_attempt(self, attempt: int) -> None:
        self.cursor, self.counts = self.store.runs.begin_attempt(self.claim, attempt)

    def end(self, status: RunStatus, counts: RunCounts, duration_s: float,
            error: BaseException | None = None, code_error: str | None = None) -> RunRecord:
        self._ending()
        return self.store.runs.finish(self.claim, status, counts, duration_s=duration_s,
                                      error=error, code_error=code_error)

    def give_back(self, counts: RunCounts, reason: str) -> RunRecord | None:
        self._ending()
        return self.store.runs.release(self.claim, counts, reason=reason)


class _PartWork(_Ending):
    """One part of a partitioned run: it reads its own range and keeps its own checkpoint;
    a retry gives it back to its queue; the last part to end ends the run."""

    retries_here = False

    def __init__(self, store: Store, claim: ClaimedPartition) -> None:
        self.store, self.claim = store, claim
        self.cursor, self.counts = claim.cursor, claim.counts

    def flow(self, flow: DataFlow) -> DataFlow:
        return type(flow)(flow.spec.replace(source=self.claim.source))

    def checkpoint(self, cursor: Any, conn: Any, counts: RunCounts) -> None:
        self.store.partitions.checkpoint(self.claim, cursor, conn, counts=counts)

    def retry_later(self, counts: RunCounts, note: str, kind: str) -> bool:
        """Give the part back, pending: its task runs it again after the backoff."""
        return self.store.partitions.retry(self.claim, counts, error=note, error_type=kind)

    def begin_attempt(self, attempt: int) -> None:
        raise NotImplementedError("a part retries in a new task, not in this one")

    def end(self, status: RunStatus, counts: RunCounts, duration_s: float,
            error: BaseException | None = None, code_error: str | None = None) -> RunRecord | None:
        self._ending()
        return self.store.partitions.finish(self.claim, status, counts, duration_s=duration_s,
                                            error=error).run

    def give_back(self, counts: RunCounts, reason: str) -> RunRecord | None:
        # A part stops early only when its claim was lost: nothing to give back.
        return None


_Work = _RunWork | _PartWork


@dataclass(frozen=True, slots=True)
class Outcome:
    """What executing a claim did.

    Attributes:
        record: the run's final record when the run ended here (succeeded, failed, or
            pending again after a stop); ``None`` while other parts of it still run, or when
            the claim was lost.
        again_in: for a part that failed transiently: seconds until it should be retried.
        lost: the claim was taken over by another worker (nothing more was written).
    """

    record: RunRecord | None = None
    again_in: float | None = None
    lost: bool = False


class StoreCheckpoint(Checkpoint):
    """Saves a held claim's cursor, with the run's counts, after each durable batch: inside
    the sink's transaction when the sink writes to the store's own database (batch, cursor
    and counts commit together), else right after the flush. Fenced: a lost claim's
    checkpoint raises ``RunClaimLost`` (rolling the sink's transaction back), and no batch is
    written once the claim is known lost."""

    def __init__(self, work: _Work, held: Held) -> None:
        self.work, self.held = work, held
        self.base = work.counts  # earlier attempts' and claims' counts

    def check(self) -> None:
        if self.held.lost.is_set():
            raise RunClaimLost("the claim was taken over by another worker; this batch was "
                               "not written")

    def __call__(self, cursor: Any) -> None:
        self.work.checkpoint(cursor, None, self._counts())

    def within(self, handle: Any, cursor: Any) -> bool:
        if not self.work.store.shares_database_with(handle):
            return False
        self.work.checkpoint(cursor, handle, self._counts())
        return True

    def _counts(self) -> RunCounts:
        return self.base + RunCounts.of(self.totals()) if self.totals else self.base


class _Halt(threading.Event):
    """Set when any of its events is: the worker stops, or the claim was lost."""

    def __init__(self, *events: threading.Event | None) -> None:
        super().__init__()
        self._events = [e for e in events if e is not None]

    def is_set(self) -> bool:
        return super().is_set() or any(e.is_set() for e in self._events)

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
            if left <= 0:
                return False
            super().wait(left)
        return True


# -- the executor ----------------------------------------------------------------------
class Executor:
    """Executes the claims of one process (see the module docstring).

    Args:
        store: the flow store holding the claims.
        worker_id: this process's id in run records (default ``hostname:pid``).
        flows: the catalog of code-defined flows (default: the process-wide one).
    """

    def __init__(self, store: Store, *, worker_id: str | None = None,
                 flows: FlowCatalog | None = None) -> None:
        self.store = store
        self.worker_id = worker_id or default_worker_id()
        self.flows = flows or catalog
        self.leases = LeaseRenewer(store)

    # -- entry points --------------------------------------------------------------------
    def execute(self, claim: ClaimedRun, *, stop: threading.Event | None = None,
                runtime: Runtime | None = None) -> RunRecord | None:
        """Execute a whole run this process holds, record the outcome, release its lease.

        Args:
            claim: the claim (from ``store.runs.claim_due``, ``claim`` or ``adopt``).
            stop: when set, the run stops after its current batch and becomes pending again.
            runtime: the flow's runtime, when the caller built it already.

        Returns:
            The run's final record (succeeded, failed, or pending again after a stop), or
            ``None`` when the claim was lost or the store became unreachable (the run is then
            reclaimed once its lease expires).
        """
        return self._execute(_RunWork(self.store, claim), stop, runtime).record

    def execute_part(self, claim: ClaimedPartition, *,
                     stop: threading.Event | None = None) -> Outcome:
        """Execute one part of a partitioned run this process holds (see :class:`Outcome`)."""
        return self._execute(_PartWork(self.store, claim), stop, None)

    def execute_run(self, run_id: int, *, token: str | None = None,
                    stop: threading.Event | None = None) -> RunRecord | None:
        """Claim a run by id (or adopt it with the ``token`` of the claim that dispatched it)
        and execute it; ``None`` when it cannot be claimed (already taken, finished or
        reclaimed) or the claim was lost."""
        claim = (self.store.runs.adopt(run_id, token, self.worker_id) if token is not None
                 else self.store.runs.claim(run_id, self.worker_id))
        if claim is None:
            log.info("run %s: not claimable by %s (already taken, finished or reclaimed)",
                     run_id, self.worker_id, extra={"action": "run_not_claimable"})
            return None
        return self.execute(claim, stop=stop)

    def close(self) -> None:
        """Stop renewing leases."""
        self.leases.close()

    # -- the one path --------------------------------------------------------------------
    def _execute(self, work: _Work, stop: threading.Event | None,
                 runtime: Runtime | None) -> Outcome:
        claim: Claim = work.claim
        held = work.held = self.leases.hold(claim)
        try:
            if stop is not None and stop.is_set():
                return Outcome(work.give_back(work.counts, "released unstarted: the worker "
                                                           "is stopping"))
            try:
                flow = work.flow(flow_for(claim.flow, flows=self.flows))
                with trust(claim.flow):
                    runtime = runtime or flow.spec.build_runtime()
            except ConfigurationError as exc:
                return self._unbuildable(work, exc)
            return self._attempts(work, flow, runtime, held, stop)
        except RunClaimLost as exc:
            log.warning("%s: %s", _what(claim), exc, extra={"action": "run_lost"})
            return Outcome(lost=True)
        except StoreError as exc:
            log.error("%s of %s: the flow store failed (%s); it will be reclaimed when its "
                      "lease expires", _what(claim), claim.flow.name, exc,
                      extra={"action": "run_store_failed"})
            # A part's task tries again once the lease has expired (and takes the part over).
            again = self.store.lease_seconds if isinstance(work, _PartWork) else None
            return Outcome(again_in=again, lost=True)
        finally:
            self.leases.release(claim)

    def _attempts(self, work: _Work, flow: DataFlow, runtime: Runtime, held: Held,
                  stop: threading.Event | None) -> Outcome:
        halt = _Halt(stop, held.lost)
        started = time.monotonic()
        attempt = work.claim.attempt
        _log_start(work.claim, flow.spec.name)
        while True:
            try:
                result = self._run_once(work, flow, runtime, held, halt, attempt)
            except FlowRunError as error:
                done = error.result or RunResult(flow.spec.name)
                counts = work.counts + RunCounts.of(done)
                if caused_by(error, RunClaimLost) or held.lost.is_set():
                    raise RunClaimLost(str(error)) from error
                limit, delay = _retry_options(runtime, attempt)
                if not error.transient or attempt >= limit or halt.is_set():
                    return self._failed(work, flow, error, counts, time.monotonic() - started)
                note = f"attempt {attempt} failed, retrying in {delay:.1f}s: {error}"
                kind = error_type(error.__cause__ or error)
                log.warning("%s of %s: transient failure, retry %d in %.1fs: %s",
                            _what(work.claim), flow.spec.name, attempt + 1, delay, error,
                            extra={"action": "run_retry", "run_id": work.claim.run_id})
                # The failed batch is read again by the retry: count its messages once.
                counts = replace(counts, read=counts.read - done.uncommitted)
                if not work.retry_later(counts, note, kind):
                    raise RunClaimLost("the claim was taken over by another worker") from error
                if not work.retries_here:
                    return Outcome(again_in=delay)
                if halt.wait(delay):
                    return self._give_back(work, counts, held)
                attempt += 1
                work.begin_attempt(attempt)
                continue
            counts = work.counts + RunCounts.of(result)
            if result.interrupted:
                return self._give_back(work, counts, held)
            duration = time.monotonic() - started
            record = work.end(RunStatus.SUCCEEDED, counts, duration)
            _log_end(work.claim, flow.spec.name, "succeeded", counts, duration)
            _after(flow, record, result)
            return Outcome(record)

    def _run_once(self, work: _Work, flow: DataFlow, runtime: Runtime, held: Held,
                  halt: _Halt, attempt: int) -> RunResult:
        claim = work.claim
        context = RunContext(claim.run_id, flow.spec.name, claim.worker_id, attempt, self.store)
        with trust(claim.flow), _running(context):
            return Runner(runtime).run(flow, cursor=work.cursor,
                                       checkpoint=StoreCheckpoint(work, held), stop=halt,
                                       hooks=False)

    def _failed(self, work: _Work, flow: DataFlow, error: FlowRunError, counts: RunCounts,
                duration_s: float) -> Outcome:
        """The one place a failure is recorded (then the flow's hook, once the run ended)."""
        record = work.end(RunStatus.FAILED, counts, duration_s, error)
        _log_end(work.claim, flow.spec.name, "failed", counts, duration_s, error)
        _after(flow, record, error)
        return Outcome(record)

    def _unbuildable(self, work: _Work, exc: ConfigurationError) -> Outcome:
        log.error("%s: flow %s cannot be built: %s", _what(work.claim), work.claim.flow.name,
                  exc, extra={"action": "flow_unbuildable", "flow": work.claim.flow.name})
        code_error = str(exc) if isinstance(exc, FlowCodeError) else None
        return Outcome(work.end(RunStatus.FAILED, work.counts, 0.0, exc, code_error))

    def _give_back(self, work: _Work, counts: RunCounts, held: Held) -> Outcome:
        if held.lost.is_set():
            raise RunClaimLost("the claim was taken over by another worker")
        return Outcome(work.give_back(counts, "interrupted: the worker stopped; the run "
                                              "resumes from its last checkpoint"))


def _retry_options(runtime: Runtime, attempt: int) -> tuple[int, float]:
    """``(max attempts, seconds before the next)`` after failed attempt ``attempt``: the
    runtime's retry options (the heartbeat runtime's), else 3 attempts, 1 s, 2 s..."""
    limit = getattr(runtime.config, "max_attempts", 3)
    delay = getattr(runtime, "retry_delay", None)
    seconds = delay(attempt) if callable(delay) else min(2.0 ** (attempt - 1), 60.0)
    return int(limit), float(seconds)


def _after(flow: DataFlow, record: RunRecord | None, last: RunResult | FlowRunError) -> None:
    """Call the flow's hook once its run has ended (a part ends it only when it is the last),
    with the run's totals over all parts and attempts."""
    if record is None:
        return
    result = RunResult(flow=record.flow, read=record.read, written=record.written,
                       skipped=record.skipped, failed=record.failed,
                       duration_s=record.duration_s or 0.0, cursor=record.cursor_end,
                       batches=record.batches)
    if record.status == RunStatus.SUCCEEDED:
        call_hook(flow.after_success, result)
    else:
        error = last if isinstance(last, FlowRunError) else FlowRunError(
            record.error, flow=record.flow, result=result)
        call_hook(flow.after_failure, error)


def _log_start(claim: Claim, flow: str) -> None:
    trigger = getattr(claim, "trigger", None)
    log.info("%s of %s started (%sattempt %d, worker %s)", _what(claim), flow,
             f"trigger {trigger}, " if trigger else "", claim.attempt, claim.worker_id,
             extra={"action": "run_start", "flow": flow, "run_id": claim.run_id})


def _log_end(claim: Claim, flow: str, status: str, counts: RunCounts, duration_s: float,
             error: BaseException | None = None) -> None:
    """One line when a run (or part) ends here: its counts and throughput, or its error."""
    text = (f"read {count(counts.read)}, written {count(counts.written)}"
            + (f", failed {count(counts.failed)}" if counts.failed else "")
            + f" in {duration_s:.2f}s ({throughput(counts.read, duration_s, empty='-')})")
    extra = {"action": f"run_{status}", "flow": flow, "run_id": claim.run_id}
    if error is None:
        log.info("%s of %s %s: %s", _what(claim), flow, status, text, extra=extra)
    else:
        log.warning("%s of %s %s: %s; %s", _what(claim), flow, status, text, error,
                    extra=extra)


def _what(claim: Claim) -> str:
    if isinstance(claim, ClaimedPartition):
        return f"partition {claim.part} of run {claim.run_id}"
    return f"run {claim.run_id}"

