"""One heartbeat: reclaim runs of dead workers, claim every due run, dispatch each claimed run
through its flow's runtime, and (unless background threads take them) execute them.

:func:`beat` is what ``adf heartbeat`` runs, what :class:`~.worker.Worker` runs in a loop,
and what the web engine's ``POST /heartbeat`` calls with a :class:`BackgroundRuns` (claimed
runs then execute in its threads, and the request is answered at once).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from datetime import datetime

from pydantic import Field

from active_data_flow.errors import ConfigurationError, is_transient
from active_data_flow.runtime import Runtime
from active_data_flow.runtimes.heartbeat.engine.executor import Executor, trust
from active_data_flow.runtimes.heartbeat.store import (
    ClaimedRun,
    RunCounts,
    RunRecord,
    RunStatus,
    Store,
    StoreError,
)
from active_data_flow.runtimes.heartbeat.store.records import Record

__all__ = ["BackgroundRuns", "BeatSummary", "beat"]

log = logging.getLogger(__name__)


class BeatSummary(Record):
    """What one heartbeat did.

    Attributes:
        worker_id: the caller.
        started_at: when the beat began.
        duration_s: wall time (in background mode, of the claim only).
        reclaimed: runs whose lease had expired, failed and replaced by a recovery run.
        claimed: runs claimed by this beat.
        succeeded, failed, interrupted, lost: how the runs executed here ended
            (``lost``: the claim was taken over by another worker).
        dispatched: runs handed to another executor (background threads, a task queue).
        runs: the final records of the runs executed here.
    """

    worker_id: str
    started_at: datetime
    duration_s: float = 0.0
    reclaimed: list[int] = Field(default_factory=list)
    claimed: list[int] = Field(default_factory=list)
    succeeded: list[int] = Field(default_factory=list)
    failed: list[int] = Field(default_factory=list)
    interrupted: list[int] = Field(default_factory=list)
    lost: list[int] = Field(default_factory=list)
    dispatched: list[int] = Field(default_factory=list)
    runs: list[RunRecord] = Field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when no run failed (what ``adf heartbeat`` exits with), else 1."""
        return 1 if self.failed else 0


class _Dispatch:
    """The :class:`~..runtime.Dispatch` a runtime's ``dispatch`` receives during a beat."""

    def __init__(self, executor: Executor, background: bool) -> None:
        self.store = executor.store
        self.worker_id = executor.worker_id
        self.background = background
        self._executor = executor
        self.here: list[tuple[ClaimedRun, Runtime]] = []
        self.elsewhere: list[ClaimedRun] = []
        self.claimed: list[int] = []
        self.runtime: Runtime | None = None

    def run_here(self, claim: ClaimedRun) -> None:
        assert self.runtime is not None
        self.here.append((claim, self.runtime))

    def hand_off(self, claim: ClaimedRun) -> None:
        self._executor.leases.release(claim)
        self.elsewhere.append(claim)


def beat(
    store: Store,
    *,
    executor: Executor | None = None,
    worker_id: str | None = None,
    background: BackgroundRuns | None = None,
    limit: int | None = None,
    concurrency: int = 1,
    stop: threading.Event | None = None,
) -> BeatSummary:
    """Run one heartbeat.

    Args:
        store: the flow store.
        executor: executes the claimed runs (default: one for this beat).
        worker_id: who beats (default: the executor's, ``hostname:pid``); recorded on
            claimed runs and in the store's list of workers.
        background: return right after claiming and dispatching; runs claimed for this
            process execute in these threads (the web engine's mode).
        limit: claim at most this many due runs.
        concurrency: without ``background``, how many runs execute at once (threads). The
            beat claims only as many runs as can start now, and more as runs end, until
            nothing is due (or ``limit`` runs were claimed).
        stop: when set, running runs stop after their current batch and become pending
            again, and nothing more is claimed.

    Returns:
        What the beat did; ``exit_code`` is 1 when a run failed.
    """
    owned = executor is None and background is None
    executor = executor or (background.executor if background is not None else
                            Executor(store, worker_id=worker_id))
    worker_id = worker_id or executor.worker_id
    try:
        return _beat(store, executor, worker_id, background, limit, concurrency, stop)
    finally:
        if owned:
            executor.close()


def _beat(store: Store, executor: Executor, worker_id: str, background: BackgroundRuns | None,
          limit: int | None, concurrency: int, stop: threading.Event | None) -> BeatSummary:
    started_at = store.now()
    t0 = time.monotonic()
    reclaimed = store.runs.reclaim_expired()
    # The beat runs what is due now, including the recovery runs it just created, but not
    # what falls due while it runs (so it ends).
    due_by = store.now()
    context = _Dispatch(executor, background is not None)
    if background is not None:
        records = []
        free = background.capacity()
        while free > 0 and _left(limit, context) != 0:
            before, started = len(context.claimed), len(context.here)
            settled = _claim_and_dispatch(store, executor, context, worker_id,
                                          _cap(_left(limit, context), free), due_by)
            records += settled
            if len(context.claimed) == before or _released(settled):
                break  # nothing more is due, or a dispatch failed: the next beat retries
            for claim, runtime in context.here[started:]:
                background.submit(claim, runtime)
            free -= len(context.here) - started  # runs handed elsewhere take no slot here
        claimed = context.claimed
    else:
        records = _run_due(store, executor, context, worker_id, limit, concurrency, stop,
                           due_by)
        claimed = context.claimed
    try:
        store.workers.record_beat(worker_id, len(claimed))
    except StoreError as exc:
        log.warning("could not record the heartbeat: %s", exc, extra={"action": "beat_record"})
    done = {r.id for r in records}
    here = [c.run_id for c, _ in context.here]
    return BeatSummary(
        worker_id=worker_id, started_at=started_at, duration_s=time.monotonic() - t0,
        reclaimed=reclaimed, claimed=claimed,
        succeeded=[r.id for r in records if r.status == RunStatus.SUCCEEDED],
        failed=[r.id for r in records if r.status == RunStatus.FAILED],
        interrupted=[r.id for r in records
                     if r.status in (RunStatus.PENDING, RunStatus.CANCELLED)],
        lost=[] if background is not None else [i for i in here if i not in done],
        dispatched=[c.run_id for c in context.elsewhere]
        + (here if background is not None else []),
        runs=records,
    )


def _cap(limit: int | None, capacity: int) -> int:
    return capacity if limit is None else min(limit, capacity)


def _left(limit: int | None, context: _Dispatch) -> int | None:
    """How many more runs this beat may claim (None: no limit)."""
    return None if limit is None else max(0, limit - len(context.claimed))


def _released(records: list[RunRecord]) -> bool:
    """Whether any of these settled runs was handed back (pending) after a failed dispatch."""
    return any(r.status == RunStatus.PENDING for r in records)


def _claim_and_dispatch(store: Store, executor: Executor, context: _Dispatch, worker_id: str,
                        limit: int, due_by: datetime) -> list[RunRecord]:
    """Claim at most ``limit`` runs due by ``due_by`` and hand each to its runtime; the
    records of runs settled here (not even dispatchable)."""
    if limit <= 0:
        return []
    claims = store.runs.claim_due(worker_id, limit=limit, due_by=due_by)
    for claim in claims:
        executor.leases.hold(claim)
        context.claimed.append(claim.run_id)
    return [r for r in (_dispatch(executor, claim, context) for claim in claims) if r]


def _run_due(store: Store, executor: Executor, context: _Dispatch, worker_id: str,
             limit: int | None, concurrency: int, stop: threading.Event | None,
             due_by: datetime) -> list[RunRecord]:
    """Run every run due when the beat started to its end, ``concurrency`` at a time,
    claiming only as many as can start now and more as slots free (a worker never holds runs
    it cannot run: if it dies, it strands only the runs it was executing). Runs that become
    due during the beat (a chained flow, a 1-second schedule) wait for the next beat, so a
    beat always ends."""
    slots = max(1, concurrency)
    pool = _DaemonPool(executor, slots, stop)
    records: list[RunRecord] = []
    exhausted = False  # nothing more was due when last asked
    while True:
        left = _left(limit, context)
        if not exhausted and (stop is None or not stop.is_set()) and left != 0:
            before, started = len(context.claimed), len(context.here)
            settled = _claim_and_dispatch(store, executor, context, worker_id,
                                          _cap(left, slots - pool.busy), due_by)
            records += settled
            # A run whose dispatch failed is pending again and still due: the next beat
            # retries it rather than this one claiming it over and over.
            exhausted = len(context.claimed) == before or _released(settled)
            for claim, runtime in context.here[started:]:
                pool.start(claim, runtime)
            if not exhausted and pool.busy < slots:
                continue  # more may be due (runs handed elsewhere take no slot here)
        if not pool.busy:
            break
        records += pool.wait_any()
    return records


def _dispatch(executor: Executor, claim: ClaimedRun, context: _Dispatch) -> RunRecord | None:
    """Hand one claim to its runtime; a run that cannot even be dispatched is settled here."""
    store = executor.store
    try:
        with trust(claim.flow):
            runtime = claim.flow.spec.build_runtime()
    except ConfigurationError as exc:
        executor.leases.release(claim)
        try:
            return store.runs.finish(claim, RunStatus.FAILED, RunCounts(), duration_s=0.0,
                                     error=ConfigurationError(
                                         f"flow {claim.flow.name!r}: its runtime cannot be "
                                         f"built: {exc}", option=exc.option))
        except Exception:
            log.exception("run %s: could not record its failure; it will be reclaimed",
                          claim.run_id)
            return None
    context.runtime = runtime
    dispatch = getattr(runtime, "dispatch", None)
    try:
        if callable(dispatch):
            dispatch(claim, context)
        else:  # runtimes that know nothing of heartbeats run here, like the heartbeat's own
            context.run_here(claim)
    except Exception as exc:
        executor.leases.release(claim)
        return _dispatch_failed(store, claim, runtime, exc)
    return None


def _dispatch_failed(store: Store, claim: ClaimedRun, runtime: Runtime,
                     exc: Exception) -> RunRecord | None:
    """A run its runtime could not dispatch (e.g. a task queue's broker is unreachable or not
    configured): one log line, and the cause recorded on the run. A transient cause leaves it
    pending, dispatched again after the runtime's ``backoff_max`` (the failed claim does not
    count as an attempt, nor start the run's clock); a permanent one fails the run."""
    name = claim.flow.name
    cause = f"{type(exc).__name__}: {exc}"
    try:
        if is_transient(exc):
            delay = _redispatch_delay(runtime)
            log.warning("run %s of %s: dispatch failed (%s); still pending, dispatched again "
                        "in %.0f s", claim.run_id, name, cause, delay,
                        extra={"action": "dispatch_failed", "run_id": claim.run_id})
            return store.runs.release(
                claim, reason=f"dispatch failed, retried in {delay:.0f} s: {cause}",
                retry_in=delay, unclaim=True)
        log.error("run %s of %s: dispatch failed, run failed: %s", claim.run_id, name, cause,
                  extra={"action": "dispatch_failed", "run_id": claim.run_id})
        text = f"flow {name!r}: its run could not be dispatched: {cause}"
        error: Exception | str = ConfigurationError(text, option=exc.option) if isinstance(
            exc, ConfigurationError) else text
        return store.runs.finish(claim, RunStatus.FAILED, RunCounts(), duration_s=0.0,
                                 error=error)
    except Exception as again:
        log.error("run %s of %s: dispatch failed (%s) and could not be recorded (%s: %s); "
                  "it will be reclaimed", claim.run_id, name, cause, type(again).__name__,
                  again, extra={"action": "dispatch_failed", "run_id": claim.run_id})
        return None


def _redispatch_delay(runtime: Runtime) -> float:
    """Seconds before a run whose dispatch failed transiently is dispatched again."""
    delay = getattr(runtime.config, "backoff_max", None)
    # At least a second: the beat claims due runs until none is left, not this one again.
    return max(1.0, float(delay) if isinstance(delay, (int, float)) else 60.0)


class _DaemonPool:
    """Runs executing in daemon threads: a process that must stop (its shutdown timeout
    passed) exits without waiting for a stuck run."""

    def __init__(self, executor: Executor, slots: int, stop: threading.Event | None) -> None:
        self.executor, self.slots, self.stop = executor, slots, stop
        self._done: queue.Queue[RunRecord | None] = queue.Queue()
        self.busy = 0

    def start(self, claim: ClaimedRun, runtime: Runtime) -> None:
        self.busy += 1
        if self.slots == 1:  # one at a time: in the calling thread
            self._run(claim, runtime)
            return
        threading.Thread(target=self._run, args=(claim, runtime), daemon=True,
                         name=f"adf-run-{claim.run_id}").start()

    def _run(self, claim: ClaimedRun, runtime: Runtime) -> None:
        record = None
        try:
            record = self.executor.execute(claim, stop=self.stop, runtime=runtime)
        except Exception:  # one run's trouble must not keep the others from running
            log.exception("run %s of %s: unexpected failure; it will be reclaimed when its "
                          "lease expires", claim.run_id, claim.flow.name,
                          extra={"action": "run_crashed", "run_id": claim.run_id})
        finally:
            self._done.put(record)

    def wait_any(self) -> list[RunRecord]:
        """Wait for a run to end (and collect any others that did); their records."""
        ended = [self._done.get()]
        while True:
            try:
                ended.append(self._done.get_nowait())
            except queue.Empty:
                break
        self.busy -= len(ended)
        return [r for r in ended if r is not None]


class BackgroundRuns:
    """Threads that execute claimed runs after :func:`beat` returned (the web engine's).

    At interpreter exit, and on :meth:`shutdown`, running runs are asked to stop after their
    current batch; runs that do not stop in time are released (pending again), so none stays
    ``running`` until its lease expires.

    Args:
        executor: executes the runs (and renews their leases).
        threads: how many runs execute at once.
    """

    def __init__(self, executor: Executor, threads: int = 4) -> None:
        self.executor = executor
        self.threads = threads
        self.stop = threading.Event()
        self._queue: queue.Queue[tuple[ClaimedRun, Runtime | None] | None] = queue.Queue()
        self._workers: list[threading.Thread] = []
        self._pending = 0
        self._active: dict[int, ClaimedRun] = {}
        self._idle = threading.Condition()
        self._lock = threading.Lock()
        self._registered = False

    def capacity(self) -> int:
        """How many more runs can start now (a beat claims no more than this; none once
        shut down)."""
        with self._idle:
            return 0 if self.stop.is_set() else max(0, self.threads - self._pending)

    def submit(self, claim: ClaimedRun, runtime: Runtime | None = None) -> None:
        """Execute ``claim`` in a background thread."""
        with self._lock:
            if self.stop.is_set():
                self.executor.store.runs.release(
                    claim, reason="released: background runs are shut down")
                self.executor.leases.release(claim)
                return
            if not self._registered:
                atexit.register(self.shutdown)
                self._registered = True
            self._workers = [t for t in self._workers if t.is_alive()]
            while len(self._workers) < self.threads:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"adf-background-{len(self._workers)}")
                thread.start()
                self._workers.append(thread)
        with self._idle:
            self._pending += 1
        self._queue.put((claim, runtime))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            claim, runtime = item
            with self._idle:
                self._active[claim.run_id] = claim
            try:
                self.executor.execute(claim, stop=self.stop, runtime=runtime)
            except Exception:
                log.exception("background run %s failed unexpectedly", claim.run_id)
            finally:
                with self._idle:
                    self._active.pop(claim.run_id, None)
                    self._pending -= 1
                    self._idle.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every submitted run has ended; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stop gracefully: runs stop after their batch; stragglers are released after
        ``timeout`` seconds. Returns True when every run ended by itself."""
        self.stop.set()
        clean = self.wait(timeout)
        if not clean:
            with self._idle:
                stragglers = list(self._active.values())
            for claim in stragglers:  # their late writes will be fenced off
                self.executor.store.runs.release(claim, reason=(
                    "released: the process stopped before the run reached a checkpoint"))
                self.executor.leases.release(claim)
        for _ in self._workers:
            self._queue.put(None)
        self.executor.close()
        return clean

