"""What a Celery worker does with a dispatched run: split it, then execute its parts.

:func:`start_run` turns a claimed run into parts: it builds the flow from its record, splits
the source after the flow's cursor (``Source.split``) and records the parts in the store.
:func:`run_partition` executes one part like the heartbeat executes a run: resumed from the
part's own checkpoint, the lease renewed while it works, every batch checkpointed (in the
sink's transaction when the sink writes to the store's database), transient failures retried
(only this part), and the outcome recorded; the last part to end ends the run, moves the
flow's cursor and schedules its next run.

Both return what the task must do next; they never enqueue anything themselves.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

from active_data_flow.errors import (
    ConfigurationError,
    FlowRunError,
    RunClaimLost,
    caused_by,
    is_transient,
)
from active_data_flow.flow import DataFlow, RunResult
from active_data_flow.registry import untrusted_specs
from active_data_flow.runtime import Runtime, call_hook
from active_data_flow.runtimes.celery.runtime import Celery
from active_data_flow.runtimes.heartbeat._faults import crash_point
from active_data_flow.runtimes.heartbeat.models import RunStatus
from active_data_flow.runtimes.heartbeat.records import (
    ClaimedPartition,
    ClaimedRun,
    FlowCodeError,
    FlowNotFound,
    FlowRecord,
    PartitionBusy,
    PartitionOutcome,
    RunCounts,
    StoreError,
)
from active_data_flow.runtimes.heartbeat.registration import build_flow
from active_data_flow.runtimes.heartbeat.runtime import RunContext, StoreCheckpoint, running
from active_data_flow.runtimes.heartbeat.store import FlowStore

__all__ = [
    "Next",
    "PartitionCheckpoint",
    "celery_runtime",
    "partition_flow",
    "run_partition",
    "start_run",
]

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class Next:
    """What the task does after a step: enqueue ``partitions``, and/or enqueue itself again
    after ``again_in`` seconds (``None``: it is done)."""

    runtime: Celery
    partitions: list[int] = field(default_factory=list)
    again_in: float | None = None


def celery_runtime(record: FlowRecord) -> Celery:
    """The Celery runtime a flow record names (defaults when its runtime changed since)."""
    guard = untrusted_specs() if record.origin == "spec" else nullcontext()
    try:
        with guard:
            runtime = Runtime.from_dict(record.runtime)
    except ConfigurationError:
        return Celery()
    return runtime if isinstance(runtime, Celery) else Celery()


def _trust(record: FlowRecord) -> AbstractContextManager[None]:
    return untrusted_specs() if record.origin == "spec" else nullcontext()


# -- splitting -------------------------------------------------------------------------
def start_run(store: FlowStore, run_id: int, token: str) -> Next | None:
    """Split a dispatched run into parts and record them.

    Returns the parts to enqueue (all that have not ended, when a redelivered task finds
    them recorded already), or ``None`` when the run is no longer held under ``token``
    (reclaimed, or finished): a redelivered task then has nothing to do.
    """
    claim = store.dispatched_run(run_id, token)
    if claim is None:
        log.info("run %s: no longer held under its dispatch claim; nothing to start", run_id,
                 extra={"action": "celery_start_skipped", "run_id": run_id})
        return None
    runtime = celery_runtime(claim.flow)
    existing = store.list_partitions(run_id)
    if existing:  # a redelivered start: the split is done, make sure every part is queued
        return Next(runtime, [p.id for p in existing if p.status in ("pending", "running")])
    try:
        cursor = store.flow_cursor(claim.flow.id)
        flow = build_flow(claim.flow)
        with _trust(claim.flow):
            source = flow.build_source()
            try:
                parts = source.split(runtime.config.partitions, cursor)
                specs = [(p.source.to_dict(), p.cursor) for p in parts] or [
                    (source.to_dict(), cursor)]
            finally:
                source.close()
    except Exception as exc:
        if is_transient(exc):
            log.warning("run %s: splitting failed transiently, retrying: %s", run_id, exc,
                        extra={"action": "celery_split_retry", "run_id": run_id})
            return Next(runtime, again_in=runtime.retry_delay(1))
        _fail_run(store, claim, exc)
        return None
    ids = store.open_partitions(
        claim, specs, cursor_start=cursor, hold_seconds=runtime.config.queue_timeout,
        concurrency_limit=runtime.config.concurrency,
        concurrency_group=runtime.config.concurrency_group,
        group_limit=runtime.config.group_concurrency,
    )
    if ids is None:
        return None
    log.info("run %s of %s split into %d partition(s)", run_id, claim.flow.name, len(ids),
             extra={"action": "celery_split", "run_id": run_id})
    return Next(runtime, ids)


def _fail_run(store: FlowStore, claim: ClaimedRun, exc: Exception) -> None:
    log.error("run %s: flow %s cannot be split: %s", claim.run_id, claim.flow.name, exc,
              extra={"action": "celery_split_failed", "flow": claim.flow.name})
    with suppress(RunClaimLost):
        store.finish(claim, RunStatus.FAILED, RunCounts(), duration_s=0.0, error=exc,
                     traceback="".join(traceback.format_exception(exc)),
                     code_error=str(exc) if isinstance(exc, FlowCodeError) else None)


# -- executing one part ----------------------------------------------------------------
def partition_flow(flow: DataFlow, source: dict[str, Any]) -> DataFlow:
    """``flow`` reading one part: the same class (transform, sinks, hooks), another source."""
    cls = type(flow)
    part_cls = type(cls.__name__, (cls,), {
        "__module__": cls.__module__, "__qualname__": cls.__qualname__,
        "name": flow.name, "source": source,
    })
    return cast("DataFlow", part_cls())


class PartitionCheckpoint(StoreCheckpoint):
    """Saves a held part's cursor after each durable batch, in the sink's own transaction
    when the sink writes to the store's database (then batch and cursor commit together)."""

    def __init__(self, store: FlowStore, claim: ClaimedPartition) -> None:
        self.store = store
        self.part = claim

    def save(self, cursor: Any, conn: Any = None) -> None:
        self.store.checkpoint_partition(self.part, cursor, conn=conn)


class PartitionLease:
    """Renews a held part's lease (and its run's) in a thread; ``lost`` is set once the part
    was taken over or its run reclaimed, so the loop stops after its current batch."""

    def __init__(self, store: FlowStore, claim: ClaimedPartition) -> None:
        self.store = store
        self.claim = claim
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True,
                                        name=f"adf-partition-lease-{claim.partition_id}")

    def __enter__(self) -> PartitionLease:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def _renew(self) -> None:
        while not self._done.wait(self.store.renew_seconds):
            try:
                if self.store.renew_partitions([self.claim]):
                    log.warning("partition %s of run %s: claim lost", self.claim.part,
                                self.claim.run_id, extra={"action": "partition_lost"})
                    self.lost.set()
                    return
            except Exception as exc:  # the next tick tries again; the lease has slack
                log.warning("partition lease renewal failed: %s", exc,
                            extra={"action": "partition_renew_failed"})


class _Progress:
    """Records a part's counts after its batches, at most once a second."""

    def __init__(self, store: FlowStore, claim: ClaimedPartition) -> None:
        self.store, self.claim = store, claim
        self.last = time.monotonic()

    def __call__(self, result: RunResult) -> None:
        crash_point("after_cursor_commit")
        now = time.monotonic()
        if now - self.last >= 1.0:
            self.last = now
            self.store.partition_progress(self.claim, self.claim.counts + RunCounts.of(result))


def run_partition(store: FlowStore, partition_id: int, worker_id: str) -> Next | None:
    """Claim and execute one part; see the module docstring.

    Returns ``None`` when the part is done with (ended, voided, or lost to another worker),
    or a :class:`Next` asking to run this task again later: the part is busy (held by a live
    worker, or its flow or group is at its concurrency limit) or failed transiently and is
    retried from its checkpoint.
    """
    got = store.claim_partition(partition_id, worker_id)  # errors: the task retries
    if got is None:
        return None
    if isinstance(got, PartitionBusy):
        log.info("partition %s busy: %s", partition_id, got.reason,
                 extra={"action": "partition_busy", "partition_id": partition_id})
        return Next(celery_runtime(got.flow), again_in=got.retry_in)
    runtime = celery_runtime(got.flow)
    try:
        with PartitionLease(store, got) as lease:
            try:
                return _execute(store, got, runtime, lease)
            except (RunClaimLost, StoreError):
                raise
            except Exception as exc:  # a bug, not a data error: fail the part, visibly
                log.exception("partition %s: unexpected error", partition_id,
                              extra={"action": "partition_crashed"})
                outcome = store.finish_partition(
                    got, RunStatus.FAILED, got.counts, error=f"{type(exc).__name__}: {exc}",
                    error_type=_type_name(exc),
                    traceback="".join(traceback.format_exception(exc)))
                _after_run(store, None, outcome)
                return None
    except RunClaimLost as exc:
        log.warning("partition %s: %s", partition_id, exc, extra={"action": "partition_lost"})
        return None
    except StoreError as exc:  # the lease expires and a redelivery takes the part over
        log.error("partition %s: the flow store failed (%s); retrying after its lease",
                  partition_id, exc, extra={"action": "partition_store_failed"})
        return Next(runtime, again_in=store.lease_seconds)


def _execute(
    store: FlowStore, claim: ClaimedPartition, runtime: Celery, lease: PartitionLease
) -> Next | None:
    started = time.monotonic()
    try:
        flow = build_flow(claim.flow)
        with _trust(claim.flow):
            part = partition_flow(flow, claim.source)
    except (FlowCodeError, ConfigurationError) as exc:
        outcome = store.finish_partition(
            claim, RunStatus.FAILED, claim.counts, duration_s=0.0, error=str(exc),
            error_type=_type_name(exc), traceback="".join(traceback.format_exception(exc)))
        _after_run(store, None, outcome)
        return None
    context = RunContext(claim.run_id, flow.name, claim.worker_id, claim.attempt, store)
    try:
        with _trust(claim.flow), running(context):
            result = runtime.runner().run(
                part, cursor=claim.cursor, checkpoint=PartitionCheckpoint(store, claim),
                on_progress=_Progress(store, claim), stop=lease.lost, hooks=False)
    except FlowRunError as error:
        return _failed(store, claim, runtime, lease, flow, error, started)
    if result.interrupted:  # only a lost claim stops a part early
        return None
    outcome = store.finish_partition(claim, RunStatus.SUCCEEDED,
                                     claim.counts + RunCounts.of(result),
                                     duration_s=time.monotonic() - started)
    _after_run(store, flow, outcome)
    return None


def _failed(
    store: FlowStore, claim: ClaimedPartition, runtime: Celery,
    lease: PartitionLease, flow: DataFlow, error: FlowRunError, started: float,
) -> Next | None:
    counts = claim.counts + RunCounts.of(error.result or RunResult(flow.name))
    if lease.lost.is_set() or caused_by(error, RunClaimLost):
        return None
    cause = error.__cause__ or error
    if error.transient and claim.attempt < runtime.config.max_attempts:
        delay = runtime.retry_delay(claim.attempt)
        log.warning("partition %s of run %s: transient failure, retry %d in %.1fs: %s",
                    claim.part, claim.run_id, claim.attempt + 1, delay, error,
                    extra={"action": "partition_retry", "run_id": claim.run_id})
        note = f"attempt {claim.attempt} failed, retrying in {delay:.1f}s: {error}"
        if store.retry_partition(claim, counts, error=note, error_type=_type_name(cause)):
            return Next(runtime, again_in=delay)
        return None
    outcome = store.finish_partition(
        claim, RunStatus.FAILED, counts, duration_s=time.monotonic() - started, error=str(error),
        error_type=_type_name(cause), traceback="".join(traceback.format_exception(cause)))
    _after_run(store, flow, outcome, error)
    return None


def _after_run(
    store: FlowStore, flow: DataFlow | None, outcome: PartitionOutcome,
    error: FlowRunError | None = None,
) -> None:
    """When this part ended its run: chain the flows it triggers, call the flow's hooks."""
    run = outcome.run
    if run is None or flow is None:
        return
    log.info("run %s of %s %s (%d read, %d written)", run.id, run.flow, run.status, run.read,
             run.written, extra={"action": "celery_run_ended", "run_id": run.id})
    result = RunResult(flow=flow.name, read=run.read, written=run.written, skipped=run.skipped,
                       failed=run.failed, duration_s=run.duration_s or 0.0,
                       cursor=run.cursor_end, batches=run.batches)
    if run.status == RunStatus.SUCCEEDED.value:
        for name in flow.triggers:
            try:
                store.trigger(name, reason="chain")
            except FlowNotFound:
                log.error("flow %s triggers %r, which is not in the store", flow.name, name)
        call_hook(flow.after_success, result)
    else:
        call_hook(flow.after_failure, error or FlowRunError(run.error, flow=flow.name,
                                                         result=result))


def _type_name(exc: BaseException) -> str:
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}"[-200:]
