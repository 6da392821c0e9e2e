"""The built-in worker loop (``adf worker``): beat every few seconds until told to stop.

Stopping is graceful: on SIGTERM or SIGINT (or :meth:`Worker.stop`), running runs finish
their current batch, checkpoint, and become pending again; runs claimed but not started are
released. If that takes longer than ``shutdown_timeout``, the runs still held are released
anyway (the stuck thread's later writes are fenced off), so no run is left ``running``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from active_data_flow.catalog import FlowTarget, load_flows
from active_data_flow.errors import ActiveDataFlowError
from active_data_flow.runtimes.heartbeat.engine.beat import BeatSummary, beat
from active_data_flow.runtimes.heartbeat.engine.executor import Executor
from active_data_flow.runtimes.heartbeat.store import ClaimedRun

if TYPE_CHECKING:
    from active_data_flow.runtimes.heartbeat.store import Store

__all__ = ["Worker", "install_stop_handlers", "stopping_on_signals"]

log = logging.getLogger(__name__)
#: how long after a lease expires a waiting worker beats to reclaim it (and at least how long
#: it waits between beats when leases keep expiring)
_EXPIRY_MARGIN = 0.2


class Worker:
    """Beat every ``interval`` seconds, executing due runs, until stopped.

    Args:
        store: the flow store.
        interval: seconds between the end of one beat and the start of the next.
        worker_id: recorded on claimed runs (default ``hostname:pid``).
        concurrency: runs executed at once within a beat.
        shutdown_timeout: seconds a stop waits for running runs to reach a checkpoint.
        flows: code-defined flows to load first (module, folder, classes; see
            :func:`~.catalog.load_flows`); by default ``ADF_FLOWS`` is loaded lazily.
        on_beat: called with each beat's summary (the CLI prints it).
        on_start: called once the loop runs (signal handlers, if any, installed).

    Example:
        >>> worker = Worker(FlowStore(), interval=5)   # doctest: +SKIP
        >>> worker.run()            # blocks; SIGTERM or Ctrl-C stops it gracefully
        >>> worker.start(); ...; worker.stop()         # or in a background thread
    """

    def __init__(
        self,
        store: Store,
        *,
        interval: float = 5.0,
        worker_id: str | None = None,
        concurrency: int = 1,
        shutdown_timeout: float = 30.0,
        flows: FlowTarget | None = None,
        on_beat: Callable[[BeatSummary], object] | None = None,
        on_start: Callable[[Worker], object] | None = None,
    ) -> None:
        self.store = store
        self.interval = interval
        self.executor = Executor(store, worker_id=worker_id)
        self.worker_id = self.executor.worker_id
        self.concurrency = concurrency
        self.shutdown_timeout = shutdown_timeout
        self.on_beat = on_beat
        self.on_start = on_start
        self.beats = 0
        self.last_summary: BeatSummary | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._loop_thread: threading.Thread | None = None
        self._runner: threading.Thread | None = None
        if flows is not None:
            load_flows(flows)

    @property
    def stopping(self) -> bool:
        """Whether a stop was requested."""
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        """Whether the loop is running."""
        thread = self._loop_thread
        return thread is not None and thread.is_alive()

    def request_stop(self) -> None:
        """Ask the loop to stop (returns at once; :meth:`run` returns when it has)."""
        self._stop.set()

    def run(self, *, install_signal_handlers: bool | None = None) -> bool:
        """Beat until stopped; block meanwhile.

        Args:
            install_signal_handlers: stop on SIGTERM/SIGINT (default: when called from the
                main thread).

        Returns:
            True when every run ended by itself within ``shutdown_timeout``; False when runs
            had to be released after the timeout.
        """
        install = (threading.current_thread() is threading.main_thread()
                   if install_signal_handlers is None else install_signal_handlers)
        self._stop.clear()
        self._done.clear()
        return self._serve(install)

    def _serve(self, install: bool) -> bool:
        previous = self._install_handlers() if install else {}
        self._loop_thread = threading.Thread(target=self._loop, name="adf-worker-loop",
                                             daemon=True)
        self._loop_thread.start()
        if self.on_start is not None:
            self.on_start(self)
        try:
            while not self._stop.wait(0.2):
                if not self._loop_thread.is_alive():
                    break
            self._loop_thread.join(self.shutdown_timeout)
            clean = not self._loop_thread.is_alive()
            if not clean:
                self._release_held()
            return clean
        finally:
            self.executor.close()
            self._done.set()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def start(self) -> None:
        """Run the loop in a background thread (stop it with :meth:`stop`)."""
        if self._runner is not None and self._runner.is_alive():
            return
        self._stop.clear()
        self._done.clear()
        self._runner = threading.Thread(target=self._serve, args=(False,), name="adf-worker",
                                        daemon=True)
        self._runner.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop gracefully and wait (up to ``shutdown_timeout`` plus a little); True when the
        worker stopped with every run ended by itself."""
        self.request_stop()
        runner = self._runner
        if runner is None:
            return self._done.wait(timeout if timeout is not None else self.shutdown_timeout)
        runner.join(timeout if timeout is not None else self.shutdown_timeout + 5)
        return not runner.is_alive() and not (
            self._loop_thread is not None and self._loop_thread.is_alive())

    # -- internals -----------------------------------------------------------------------
    def _loop(self) -> None:
        log.info("worker %s: started (beat every %ss)", self.worker_id, self.interval,
                 extra={"action": "worker_start"})
        while not self._stop.is_set():
            try:
                summary = beat(self.store, executor=self.executor,
                               concurrency=self.concurrency, stop=self._stop)
                self.beats += 1
                self.last_summary = summary
                if self.on_beat is not None:
                    self.on_beat(summary)
            except ActiveDataFlowError as exc:  # the store is down, say: one line per beat
                log.warning("worker %s: heartbeat failed (%s); trying again in %gs",
                            self.worker_id, " ".join(str(exc).split()), self.interval,
                            extra={"action": "beat_failed"})
            except Exception:
                log.exception("worker %s: heartbeat failed; trying again in %ss",
                              self.worker_id, self.interval)
            self._stop.wait(self._pause())
        log.info("worker %s: stopped", self.worker_id, extra={"action": "worker_stop"})

    def _pause(self) -> float:
        """Seconds until the next beat: ``interval``, or less when a running run's lease
        expires sooner (its worker may be dead: the beat right after the expiry reclaims it
        and starts its recovery run, so recovery does not wait up to a whole interval more)."""
        try:
            expiry = self.store.runs.next_lease_expiry()
        except Exception:  # the store is down: the next beat says so
            return self.interval
        if expiry is None:
            return self.interval
        until = (expiry - self.store.now()).total_seconds() + _EXPIRY_MARGIN
        return min(self.interval, max(_EXPIRY_MARGIN, until))

    def _release_held(self) -> None:
        """Give back the runs still going at the shutdown timeout: each is first revoked (its
        thread writes no further batch: the next check before a write refuses it), then
        released, so another worker may take it at once; the run threads are daemons, so the
        process does not wait for a stuck one."""
        claims = [h.claim for h in self.executor.leases.held()
                  if isinstance(h.claim, ClaimedRun) and h.claim.worker_id == self.worker_id]
        log.warning("worker %s: %d run(s) did not reach a checkpoint within %ss; released",
                    self.worker_id, len(claims), self.shutdown_timeout,
                    extra={"action": "worker_force_release"})
        for claim in claims:
            self.executor.leases.revoke(claim)
            try:
                self.store.runs.release(claim, reason=(
                    "released: the worker stopped before the run reached a checkpoint"))
            finally:
                self.executor.leases.release(claim)

    def _install_handlers(self) -> dict[int, Any]:
        return install_stop_handlers(self._stop, f"worker {self.worker_id}")


def install_stop_handlers(stop: threading.Event, who: str) -> dict[int, Any]:
    """Make SIGTERM and SIGINT set ``stop`` (running runs then end at their next checkpoint
    and go back to pending); return the handlers they replace, to put back afterwards."""
    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: received %s, stopping gracefully", who, signal.Signals(signum).name,
                 extra={"action": "stop_signal"})
        stop.set()

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, handle)
    return previous


@contextmanager
def stopping_on_signals(who: str) -> Iterator[threading.Event]:
    """An Event that SIGTERM and SIGINT set while the block runs (in the main thread)."""
    stop = threading.Event()
    previous = install_stop_handlers(stop, who)
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
