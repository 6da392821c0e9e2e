"""One heartbeat: reclaim runs of dead workers, claim every due run, dispatch each claimed run
through its flow's runtime, and (unless asked to return at once) execute them.

:func:`beat` is what ``adf heartbeat`` runs, what :class:`~.worker.Worker` runs in a loop,
and what the web engine's ``POST /heartbeat`` calls with ``background=True`` (claimed runs
then execute in daemon threads this module manages, see :class:`BackgroundRuns`).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from active_data_flow.errors import ConfigurationError
from active_data_flow.runtimes.heartbeat.execution import (
    default_worker_id,
    execute_claimed,
    runtime_for,
)
from active_data_flow.runtimes.heartbeat.models import RunStatus
from active_data_flow.runtimes.heartbeat.records import (
    BeatSummary,
    ClaimedRun,
    RunCounts,
    RunRecord,
    StoreError,
)

if TYPE_CHECKING:
    from active_data_flow.runtimes.heartbeat.store import FlowStore

__all__ = ["BackgroundRuns", "beat"]

log = logging.getLogger(__name__)


class _Context:
    """The :class:`~.runtime.Dispatch` a runtime's ``dispatch`` receives during a beat."""

    def __init__(self, store: FlowStore, worker_id: str, background: bool) -> None:
        self.store = store
        self.worker_id = worker_id
        self.background = background
        self.here: list[ClaimedRun] = []
        self.elsewhere: list[ClaimedRun] = []

    def run_here(self, claim: ClaimedRun) -> None:
        self.here.append(claim)

    def hand_off(self, claim: ClaimedRun) -> None:
        self.store.leases.release(claim)
        self.elsewhere.append(claim)


def beat(
    store: FlowStore,
    *,
    worker_id: str | None = None,
    background: bool = False,
    limit: int | None = None,
    concurrency: int = 1,
    stop: threading.Event | None = None,
) -> BeatSummary:
    """Run one heartbeat.

    Args:
        store: the flow store.
        worker_id: who beats (default ``hostname:pid``); recorded on claimed runs and in
            the store's list of workers.
        background: return right after claiming and dispatching; runs claimed for this
            process execute in :attr:`FlowStore.background` threads (the web engine's mode).
        limit: claim at most this many due runs.
        concurrency: with ``background=False``, how many runs execute at once (threads).
        stop: when set, running runs stop after their current batch and become pending
            again; claimed runs not yet started are released.

    Returns:
        What the beat did; ``exit_code`` is 1 when a run failed.
    """
    worker_id = worker_id or default_worker_id()
    started_at = store.now()
    t0 = time.monotonic()
    reclaimed = store.reclaim_expired()
    claims = store.claim_due(worker_id, limit=limit)
    for claim in claims:
        store.leases.hold(claim)  # queued claims must not expire while others run
    try:
        store.record_beat(worker_id, len(claims))
    except StoreError as exc:
        log.warning("could not record the heartbeat: %s", exc, extra={"action": "beat_record"})
    context = _Context(store, worker_id, background)
    records: list[RunRecord] = []
    for claim in claims:
        record = _dispatch(store, claim, context)
        if record is not None:
            records.append(record)
    if background:
        for claim in context.here:
            store.background.submit(claim)
    else:
        records.extend(r for r in _execute_all(store, context.here, concurrency, stop) if r)
    lost = [c.run_id for c in context.here if c.run_id not in {r.id for r in records}]
    return BeatSummary(
        worker_id=worker_id, started_at=started_at, duration_s=time.monotonic() - t0,
        reclaimed=reclaimed, claimed=[c.run_id for c in claims],
        succeeded=[r.id for r in records if r.status == RunStatus.SUCCEEDED.value],
        failed=[r.id for r in records if r.status == RunStatus.FAILED.value],
        interrupted=[r.id for r in records if r.status in (RunStatus.PENDING.value,
                                                           RunStatus.CANCELLED.value)],
        lost=[] if background else lost,
        dispatched=[c.run_id for c in context.elsewhere]
        + ([c.run_id for c in context.here] if background else []),
        runs=records,
    )


def _dispatch(store: FlowStore, claim: ClaimedRun, context: _Context) -> RunRecord | None:
    """Hand one claim to its runtime; a run that cannot even be dispatched is settled here."""
    try:
        runtime = runtime_for(claim)
    except ConfigurationError as exc:
        store.leases.release(claim)
        try:
            return store.finish(
                claim, RunStatus.FAILED, RunCounts(), duration_s=0.0,
                error=f"flow {claim.flow.name!r}: its runtime cannot be built: {exc}",
                error_type=type(exc).__qualname__,
                traceback="".join(traceback.format_exception(exc)))
        except Exception:
            log.exception("run %s: could not record its failure; it will be reclaimed",
                          claim.run_id)
            return None
    dispatch = getattr(runtime, "dispatch", None)
    try:
        if callable(dispatch):
            dispatch(claim, context)
        else:  # runtimes that know nothing of heartbeats run here, like the heartbeat's own
            context.run_here(claim)
    except Exception as exc:
        log.exception("run %s: dispatch through %r failed; released for the next beat",
                      claim.run_id, runtime, extra={"action": "dispatch_failed"})
        store.leases.release(claim)
        try:
            return store.release(claim, reason=(
                f"dispatch failed, released: {type(exc).__name__}: {exc}"))
        except Exception:
            log.exception("run %s: could not release it; it will be reclaimed", claim.run_id)
            return None
    return None


def _execute_all(
    store: FlowStore, claims: list[ClaimedRun], concurrency: int, stop: threading.Event | None
) -> list[RunRecord | None]:
    def execute(claim: ClaimedRun) -> RunRecord | None:
        try:
            return execute_claimed(store, claim, stop=stop)
        except Exception:  # one run's trouble must not keep the others from running
            log.exception("run %s of %s: unexpected failure; it will be reclaimed when its "
                          "lease expires", claim.run_id, claim.flow.name,
                          extra={"action": "run_crashed", "run_id": claim.run_id})
            return None

    if concurrency <= 1 or len(claims) <= 1:
        return [execute(claim) for claim in claims]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="adf-run") as pool:
        return list(pool.map(execute, claims))


class BackgroundRuns:
    """Daemon threads that execute claimed runs after :func:`beat` returned.

    Each store has one (:attr:`FlowStore.background`). At interpreter exit, and on
    :meth:`shutdown`, running runs are asked to stop after their current batch; runs that do
    not stop in time are released (pending again), so none stays ``running`` until its lease
    expires.
    """

    def __init__(self, store: FlowStore, threads: int = 4) -> None:
        self.store = store
        self.threads = threads
        self.stop = threading.Event()
        self._queue: queue.Queue[ClaimedRun | None] = queue.Queue()
        self._workers: list[threading.Thread] = []
        self._pending = 0
        self._active: dict[int, ClaimedRun] = {}
        self._idle = threading.Condition()
        self._lock = threading.Lock()
        self._registered = False

    def submit(self, claim: ClaimedRun) -> None:
        """Execute ``claim`` in a background thread."""
        with self._lock:
            if self.stop.is_set():
                self.store.release(claim, reason="released: background runs are shut down")
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
        self._queue.put(claim)

    def _work(self) -> None:
        while True:
            claim = self._queue.get()
            if claim is None:
                return
            with self._idle:
                self._active[claim.run_id] = claim
            try:
                execute_claimed(self.store, claim, stop=self.stop)
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
                self.store.release(claim, reason=(
                    "released: the process stopped before the run reached a checkpoint"))
                self.store.leases.release(claim)
        for _ in self._workers:
            self._queue.put(None)
        return clean
