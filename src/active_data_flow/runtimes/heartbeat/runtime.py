"""The ``heartbeat`` runtime: flows that run themselves when a heartbeat finds them due.

:class:`Heartbeat` carries the options (schedule, retries); :class:`HeartbeatRunner` runs a
claimed run: it resumes from the flow's stored cursor, checkpoints every batch through the
store (in the sink's own transaction when they share a database), retries transient failures
with backoff, and records the outcome; :meth:`Heartbeat.dispatch` is where a claimed run is
handed to whatever executes it (this process by default; a task queue in a subclass).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from active_data_flow.errors import FlowRunError, RunClaimLost, caused_by
from active_data_flow.flow import DataFlow, RunResult
from active_data_flow.registry import register_runtime
from active_data_flow.runtime import Checkpoint, Runner, Runtime, RuntimeConfig, call_hook
from active_data_flow.runtimes.heartbeat._faults import crash_point
from active_data_flow.runtimes.heartbeat.models import RunStatus
from active_data_flow.runtimes.heartbeat.records import (
    ClaimedRun,
    FlowNotFound,
    RunCounts,
    RunRecord,
)

if TYPE_CHECKING:
    from active_data_flow.runtimes.heartbeat.leases import Held
    from active_data_flow.runtimes.heartbeat.store import FlowStore

__all__ = [
    "Dispatch",
    "Heartbeat",
    "HeartbeatConfig",
    "HeartbeatRunner",
    "RunContext",
    "StoreCheckpoint",
    "current_run",
]

log = logging.getLogger(__name__)


# -- the run in progress ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunContext:
    """The stored run the current thread executes (see :func:`current_run`)."""

    run_id: int
    flow: str
    worker_id: str
    attempt: int
    store: FlowStore


_current: ContextVar[RunContext | None] = ContextVar("adf_current_run", default=None)


def current_run() -> RunContext | None:
    """The stored run this thread is executing, or ``None`` outside one.

    Connectors may use it: the ``dead_letters`` sink files letters under the run's id, in
    the run's store.
    """
    return _current.get()


@contextmanager
def running(context: RunContext) -> Iterator[None]:
    """Make ``context`` the current run for the duration of the block."""
    token = _current.set(context)
    try:
        yield
    finally:
        _current.reset(token)


# -- the runtime -----------------------------------------------------------------------
class HeartbeatConfig(RuntimeConfig):
    """Options of the heartbeat runtime.

    Attributes:
        interval: seconds between runs, or a cron expression; ``None``: on demand only.
        timezone: the zone a cron expression is read in (IANA name, default UTC).
        max_attempts: executions of a run before a transient failure (lost connection,
            timeout, deadlock) fails it; permanent errors fail at once.
        backoff: seconds before the first retry; doubled for each next one...
        backoff_max: ...up to this.
    """

    timezone: str = "UTC"
    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff: float = Field(default=1.0, ge=0, le=3600)
    backoff_max: float = Field(default=60.0, ge=0, le=86_400)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value


class Dispatch(Protocol):
    """What a runtime's :meth:`Heartbeat.dispatch` receives besides the claimed run."""

    store: FlowStore
    worker_id: str
    background: bool

    def run_here(self, claim: ClaimedRun) -> None:
        """Execute the run in this process (now, or in background threads)."""

    def hand_off(self, claim: ClaimedRun) -> None:
        """Note that the run went elsewhere (a queue); this process stops renewing it."""


@register_runtime("heartbeat")
class Heartbeat(Runtime):
    """Run flows when they are due, from heartbeats (``adf heartbeat``, ``adf worker``, or
    the web engine's ``POST /heartbeat``); record every run in the flow store.

    Example:
        >>> from active_data_flow.runtimes.heartbeat import Heartbeat
        >>> Heartbeat(interval=300, max_attempts=5).to_dict()
        {'type': 'heartbeat', 'config': {'interval': 300.0, 'max_attempts': 5}}
        >>> Heartbeat(interval="0 2 * * *", timezone="Europe/Paris").interval
        '0 2 * * *'
    """

    Config = HeartbeatConfig
    config: HeartbeatConfig

    def runner(self) -> HeartbeatRunner:
        return HeartbeatRunner(self)

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next."""
        return float(min(self.config.backoff * 2 ** (attempt - 1), self.config.backoff_max))

    def dispatch(self, claim: ClaimedRun, context: Dispatch) -> None:
        """Hand a claimed run to its executor. The heartbeat runtime runs it in the process
        that claimed it; a distributed runtime overrides this to enqueue
        ``(claim.run_id, claim.token)`` for :func:`~.execution.execute_run` and calls
        ``context.hand_off(claim)``."""
        context.run_here(claim)

    def execute(self, flow: DataFlow, **options: Any) -> RunRecord:
        """Register ``flow``'s class in the store (``store=``, default: ``FlowStore()``) and
        trigger it: the next heartbeat runs it. Returns the pending run."""
        from active_data_flow.runtimes.heartbeat.store import FlowStore

        store = options.get("store") or FlowStore()
        store.sync(type(flow))
        return store.trigger(flow.name)


# -- checkpoints -----------------------------------------------------------------------
class StoreCheckpoint(Checkpoint):
    """Saves a held run's cursor in the store after each durable batch.

    When the sink flushes through a SQLAlchemy connection to the store's own database,
    :meth:`within` writes the cursor through that connection, so batch and cursor commit
    together (exactly once); otherwise the cursor commits right after the batch.
    Both writes are fenced: a reclaimed run's checkpoint raises
    :class:`~active_data_flow.errors.RunClaimLost` (rolling the sink's transaction back).
    """

    def __init__(self, store: FlowStore, claim: ClaimedRun) -> None:
        self.store = store
        self.claim = claim

    def save(self, cursor: Any, conn: Any = None) -> None:
        """The fenced cursor write (through ``conn`` when given); subclasses change what
        is checkpointed (a partition instead of a run)."""
        self.store.checkpoint(self.claim, cursor, conn=conn)

    def __call__(self, cursor: Any) -> None:
        crash_point("after_sink_commit")
        self.save(cursor)

    def within(self, handle: Any, cursor: Any) -> bool:
        if not self.store.shares_database_with(handle):
            return False
        crash_point("mid_batch")  # the batch is written, not committed
        self.save(cursor, conn=handle)
        return True


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


class _Progress:
    """Records counts after each batch, at most once a second (and renews the lease)."""

    def __init__(self, store: FlowStore, claim: ClaimedRun, base: RunCounts) -> None:
        self.store, self.claim, self.base = store, claim, base
        self.last = time.monotonic()

    def __call__(self, result: RunResult) -> None:
        crash_point("after_cursor_commit")
        now = time.monotonic()
        if now - self.last >= 1.0:
            self.last = now
            self.store.progress(self.claim, self.base + RunCounts.of(result))


# -- the runner ------------------------------------------------------------------------
class HeartbeatRunner(Runner):
    """Runs claimed runs: the core loop plus recording, retries, fencing and hooks."""

    def run_claimed(
        self, store: FlowStore, claim: ClaimedRun, flow: DataFlow, *, held: Held,
        stop: threading.Event | None = None,
    ) -> RunRecord | None:
        """Execute a held run to its end and record it.

        Returns the final record: succeeded, failed, or pending again (the worker stopped;
        the run resumes later from its last checkpoint). ``None`` when the claim was lost to
        another worker: then nothing more was written.
        """
        halt = _Halt(stop, held.lost)
        started = time.monotonic()
        attempt = claim.attempt
        context = RunContext(claim.run_id, claim.flow.name, claim.worker_id, attempt, store)
        cursor, base = claim.cursor, claim.counts  # as of the claim: no query needed
        while True:
            if attempt != claim.attempt:  # a retry resumes from the last checkpoint
                cursor, base = store.begin_attempt(claim, attempt)
            try:
                with running(context):
                    result = self.run(flow, cursor=cursor, checkpoint=StoreCheckpoint(store, claim),
                                      on_progress=_Progress(store, claim, base), stop=halt,
                                      hooks=False)
            except FlowRunError as error:
                counts = base + RunCounts.of(error.result or RunResult(flow.name))
                if caused_by(error, RunClaimLost) or held.lost.is_set():
                    _log_lost(claim)
                    return None
                if error.transient and attempt < self._max_attempts() and not halt.is_set():
                    delay = self._delay(attempt)
                    store.progress(claim, counts, error_type=_cause_type(error), error=(
                        f"attempt {attempt} failed, retrying in {delay:.1f}s: {error}"))
                    log.warning("run %s of %s: transient failure, retry %d in %.1fs: %s",
                                claim.run_id, flow.name, attempt + 1, delay, error,
                                extra={"action": "run_retry", "run_id": claim.run_id})
                    if halt.wait(delay):
                        return self._release(store, claim, counts, held)
                    attempt += 1
                    continue
                record = store.finish(
                    claim, RunStatus.FAILED, counts, duration_s=time.monotonic() - started,
                    error=str(error), error_type=_cause_type(error),
                    traceback=_traceback(error))
                call_hook(flow.after_failure, error)
                return record
            counts = base + RunCounts.of(result)
            if result.interrupted:
                if held.lost.is_set():
                    _log_lost(claim)
                    return None
                return self._release(store, claim, counts, held)
            record = store.finish(claim, RunStatus.SUCCEEDED, counts,
                                  duration_s=time.monotonic() - started)
            self._chain(store, flow)
            call_hook(flow.after_success, result)
            return record

    def _max_attempts(self) -> int:
        config = self.runtime.config
        return config.max_attempts if isinstance(config, HeartbeatConfig) else 3

    def _delay(self, attempt: int) -> float:
        if isinstance(self.runtime, Heartbeat):
            return self.runtime.retry_delay(attempt)
        return float(min(2 ** (attempt - 1), 60))

    def _release(
        self, store: FlowStore, claim: ClaimedRun, counts: RunCounts, held: Held
    ) -> RunRecord | None:
        if held.lost.is_set():
            _log_lost(claim)
            return None
        return store.release(claim, counts, reason=(
            "interrupted: the worker stopped; the run resumes from its last checkpoint"))

    def _chain(self, store: FlowStore, flow: DataFlow) -> None:
        for name in flow.triggers:
            try:
                store.trigger(name, reason="chain")
            except FlowNotFound:
                log.error("flow %s triggers %r, which is not in the store", flow.name, name,
                          extra={"action": "chain_missing", "flow": flow.name})


def _log_lost(claim: ClaimedRun) -> None:
    log.warning("run %s of %s: claim lost to another worker; stopped without writing",
                claim.run_id, claim.flow.name, extra={"action": "run_lost"})


def _cause_type(error: FlowRunError) -> str:
    cause = error.__cause__ or error
    kind = type(cause)
    return f"{kind.__module__}.{kind.__qualname__}"


def _traceback(error: FlowRunError) -> str:
    cause = error.__cause__ or error
    return "".join(traceback.format_exception(cause))


