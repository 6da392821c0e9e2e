"""Child-process side of the concurrency and crash tests.

Children start from a fork server that has this module (and so SQLAlchemy, the drivers and
the package) preloaded: a child is ready in milliseconds, with no connection inherited from
the test process. Faults are injected in the child, from here: crash points
(:mod:`.crash`) and, for the concurrency test's control run, :class:`UnguardedRuns`.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import time
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from active_data_flow.runtimes.heartbeat import FlowStore, Worker, beat
from active_data_flow.runtimes.heartbeat.store import ClaimedRun
from active_data_flow.runtimes.heartbeat.store.models import runs
from active_data_flow.runtimes.heartbeat.store.runs import SqlRuns
from tests.integration.runtimes.heartbeat import (
    crash,
    sqlkit,  # noqa: F401  (test connectors)
)

_ctx: Any = None


def context() -> Any:
    """The fork-server multiprocessing context, with this module preloaded."""
    global _ctx
    if _ctx is None:
        _ctx = multiprocessing.get_context("forkserver")
        _ctx.set_forkserver_preload([__name__])
    return _ctx


class UnguardedRuns(SqlRuns):
    """The runs repository without its claim guard (a test-only control): due runs are read
    without locking them and updated unconditionally, all under one shared token, so a
    second claimer does not fence the first off either. The race the guard prevents."""

    TOKEN = "unguarded".ljust(32, "-")

    def claim_due(self, worker_id: str, *, limit: int | None = None,
                  due_by: datetime | None = None) -> list[ClaimedRun]:
        def work(conn: Connection) -> list[ClaimedRun]:
            now = self.now()
            cutoff = now if due_by is None else min(now, due_by)
            query = (sa.select(runs.c.id).where(runs.c.status == "pending",
                                                runs.c.due_at <= cutoff)
                     .order_by(runs.c.due_at, runs.c.id))
            if limit is not None:
                query = query.limit(limit)
            ids = list(conn.execute(query).scalars())
            if not ids:
                return []
            conn.execute(runs.update().where(runs.c.id.in_(ids))
                         .ordered_values(*self._claim_values(worker_id, now, self.TOKEN)))
            return self._claimed(conn, ids, self.TOKEN, worker_id)

        return self._db.transact(work)


class Alarms(logging.Handler):
    """Counts the log records that must not happen in a fault-free run: a claim reported
    lost, a run reclaimed (nobody died, so no lease may expire)."""

    WATCHED = ("claim_lost", "run_reclaimed", "run_lost")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "action", None) in self.WATCHED:
            self.seen.append(record.getMessage())


def beat_trials(url: str, index: int, trials: int, barrier: Any, results: Any,
                guard: bool) -> None:
    """Beat once per trial, all children released together by ``barrier``, at the default
    lease; ``guard=False`` claims through :class:`UnguardedRuns`. Each report carries the
    alarms (lost claims, reclaims) the trial logged."""
    store = FlowStore(url, auto_upgrade=False)
    if not guard:
        store.runs = UnguardedRuns(store.database, store.settings)
    alarms = Alarms()
    logging.getLogger("active_data_flow").addHandler(alarms)
    try:
        for trial in range(trials):
            barrier.wait(timeout=120)
            try:
                summary = beat(store, worker_id=f"w{index}")
                results.put((index, trial, len(summary.claimed), None, list(alarms.seen)))
            except Exception as exc:  # reported, so the parent fails with the reason
                results.put((index, trial, 0, f"{type(exc).__name__}: {exc}",
                             list(alarms.seen)))
            alarms.seen.clear()
    finally:
        store.close()


def run_worker(url: str, lease: float, crash_at: tuple[str, int] | None, ready: Any,
               interval: float = 0.02, concurrency: int = 1,
               shutdown_timeout: float = 5.0) -> None:
    """Run a worker loop until killed, or until it reaches ``crash_at = (point, nth)``
    (see :mod:`.crash`) and kills itself."""
    if crash_at:
        crash.install(*crash_at)
    store = FlowStore(url, auto_upgrade=False, lease_seconds=lease, renew_seconds=lease / 5)
    # Ready once the loop runs: SIGTERM is then handled gracefully.
    worker = Worker(store, interval=interval, concurrency=concurrency,
                    shutdown_timeout=shutdown_timeout, on_start=lambda _worker: ready.set())
    worker.run(install_signal_handlers=True)
    store.close()


def drain(results: Any, count: int, timeout: float) -> list[Any]:
    """``count`` items from a multiprocessing queue, failing after ``timeout`` seconds."""
    items = []
    deadline = time.monotonic() + timeout
    while len(items) < count:
        try:
            items.append(results.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            raise AssertionError(f"only {len(items)} of {count} results in {timeout}s") from None
    return items
