"""What a Celery worker does with a dispatched run: split it into parts, then run each part.

:func:`start_run` builds the flow from its record, splits its source after the flow's cursor
(``Source.split``) and records the parts in the store; the tasks then enqueue one
``run_partition`` per part, and :func:`run_partition` claims it and hands it to the engine's
executor, which runs parts and whole runs alike. Both return what the task must do next;
they never enqueue anything themselves.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from active_data_flow.catalog import FlowCatalog
from active_data_flow.errors import RunClaimLost, is_transient
from active_data_flow.registry import untrusted_specs
from active_data_flow.runtime import Runtime
from active_data_flow.runtimes.celery.config import CeleryConfig
from active_data_flow.runtimes.heartbeat.engine.executor import Executor, trust
from active_data_flow.runtimes.heartbeat.engine.flows import flow_for
from active_data_flow.runtimes.heartbeat.store import (
    ClaimedRun,
    FlowCodeError,
    FlowRecord,
    PartitionBusy,
    RunCounts,
    RunStatus,
    Store,
)

__all__ = ["Next", "celery_config", "run_partition", "start_run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Next:
    """What the task does after a step: enqueue ``partitions``, and/or enqueue itself again
    after ``again_in`` seconds (``None``: it is done)."""

    config: CeleryConfig
    partitions: list[int] = field(default_factory=list)
    again_in: float | None = None


def celery_config(record: FlowRecord) -> CeleryConfig:
    """The Celery options a flow record's runtime names (defaults when its runtime is no
    longer a Celery runtime, or no longer builds)."""
    try:
        with untrusted_specs():
            runtime: Runtime = Runtime.from_dict(record.spec.runtime.to_dict())
    except Exception:
        return CeleryConfig()
    config: Any = runtime.config
    return config if isinstance(config, CeleryConfig) else CeleryConfig()


def start_run(store: Store, run_id: int, token: str, *,
              flows: FlowCatalog | None = None) -> Next | None:
    """Split a dispatched run into parts and record them.

    Returns the parts to enqueue (all that have not ended, when a redelivered task finds
    them recorded already), or ``None`` when the run is no longer held under ``token``
    (reclaimed, or finished): a redelivered task then has nothing to do.
    """
    claim = store.runs.dispatched(run_id, token)
    if claim is None:
        log.info("run %s: no longer held under its dispatch claim; nothing to start", run_id,
                 extra={"action": "celery_start_skipped", "run_id": run_id})
        return None
    config = celery_config(claim.flow)
    existing = store.partitions.of_run(run_id)
    if existing:  # a redelivered start: the split is done, make sure every part is queued
        return Next(config, [p.id for p in existing if p.status in ("pending", "running")])
    try:
        cursor = store.flows.cursor(claim.flow.id)
        flow = flow_for(claim.flow, flows=flows)
        with trust(claim.flow):
            source = flow.spec.build_source()
            try:
                parts = source.split(config.partitions, cursor)
                specs = [(p.source.to_dict(), p.cursor) for p in parts] or [
                    (source.to_dict(), cursor)]
            finally:
                source.close()
    except Exception as exc:
        if is_transient(exc):
            log.warning("run %s: splitting failed transiently, retrying: %s", run_id, exc,
                        extra={"action": "celery_split_retry", "run_id": run_id})
            return Next(config, again_in=config.retry_delay(1))
        _fail_run(store, claim, exc)
        return None
    ids = store.partitions.open(
        claim, specs, cursor_start=cursor, hold_seconds=config.queue_timeout,
        concurrency_limit=config.concurrency, concurrency_group=config.concurrency_group,
        group_limit=config.group_concurrency)
    if ids is None:
        return None
    log.info("run %s of %s split into %d partition(s)", run_id, claim.flow.name, len(ids),
             extra={"action": "celery_split", "run_id": run_id})
    return Next(config, ids)


def _fail_run(store: Store, claim: ClaimedRun, exc: Exception) -> None:
    log.error("run %s: flow %s cannot be split: %s", claim.run_id, claim.flow.name, exc,
              extra={"action": "celery_split_failed", "flow": claim.flow.name})
    with suppress(RunClaimLost):
        store.runs.finish(claim, RunStatus.FAILED, RunCounts(), duration_s=0.0, error=exc,
                          code_error=str(exc) if isinstance(exc, FlowCodeError) else None)


def run_partition(executor: Executor, partition_id: int, worker_id: str) -> Next | None:
    """Claim one part and execute it through the engine's executor.

    Returns ``None`` when the part is done with (ended, voided, or lost to another worker),
    or a :class:`Next` asking to run this task again later: the part is busy (held by a live
    worker, or its flow or group is at its concurrency limit) or failed transiently and is
    retried from its checkpoint.
    """
    got = executor.store.partitions.claim(partition_id, worker_id)  # errors: task retries
    if got is None:
        return None
    if isinstance(got, PartitionBusy):
        log.info("partition %s busy: %s", partition_id, got.reason,
                 extra={"action": "partition_busy", "partition_id": partition_id})
        return Next(celery_config(got.flow), again_in=got.retry_in)
    outcome = executor.execute_part(got)
    if outcome.record is not None:
        log.info("run %s of %s %s (%d read, %d written)", outcome.record.id,
                 outcome.record.flow, outcome.record.status, outcome.record.read,
                 outcome.record.written, extra={"action": "celery_run_ended",
                                                "run_id": outcome.record.id})
    if outcome.again_in is None:
        return None
    return Next(celery_config(got.flow), again_in=outcome.again_in)
