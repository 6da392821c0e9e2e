"""Child-process side of the concurrency and crash tests.

Children start from a fork server that has this module (and so SQLAlchemy, the drivers and
the package) preloaded: a child is ready in milliseconds, with no connection inherited from
the test process.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import time
from typing import Any

from active_data_flow.runtimes.heartbeat import FlowStore, Worker, beat
from tests.integration.runtimes.heartbeat import sqlkit  # noqa: F401  (registers the test connectors)

_ctx: Any = None


def context() -> Any:
    """The fork-server multiprocessing context, with this module preloaded."""
    global _ctx
    if _ctx is None:
        _ctx = multiprocessing.get_context("forkserver")
        _ctx.set_forkserver_preload([__name__])
    return _ctx


def beat_trials(url: str, index: int, trials: int, barrier: Any, results: Any,
                guard: bool) -> None:
    """Beat once per trial, all children released together by ``barrier``."""
    if not guard:
        os.environ["ADF_TEST_CLAIM_GUARD"] = "off"
    store = FlowStore(url, auto_upgrade=False, lease_seconds=60)
    try:
        for trial in range(trials):
            barrier.wait(timeout=120)
            try:
                summary = beat(store, worker_id=f"w{index}")
                results.put((index, trial, len(summary.claimed), None))
            except Exception as exc:  # reported, so the parent fails with the reason
                results.put((index, trial, 0, f"{type(exc).__name__}: {exc}"))
    finally:
        store.close()


def run_worker(url: str, lease: float, crash_at: str | None, ready: Any,
               interval: float = 0.02, concurrency: int = 1,
               shutdown_timeout: float = 5.0) -> None:
    """Run a worker loop until killed (or until ``ADF_TEST_CRASH_AT`` kills it)."""
    if crash_at:
        os.environ["ADF_TEST_CRASH_AT"] = crash_at
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
