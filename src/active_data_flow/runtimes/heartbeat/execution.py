"""Executing claimed runs: the one path every executor takes (inline heartbeat, background
threads, a task queue's worker process).

:func:`execute_claimed` holds the claim's lease while it works, builds the flow from its
record (a flow whose code cannot be loaded fails its own run, with the reason on the flow's
record), and hands it to the runtime's :class:`~.runtime.HeartbeatRunner`.
:func:`execute_run` does the same for a run known only by id, in another process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from contextlib import nullcontext

from active_data_flow.errors import ConfigurationError, RunClaimLost
from active_data_flow.registry import untrusted_specs
from active_data_flow.runtime import Runtime
from active_data_flow.runtimes.heartbeat.models import RunStatus
from active_data_flow.runtimes.heartbeat.records import (
    ClaimedRun,
    FlowCodeError,
    RunCounts,
    RunRecord,
    StoreError,
)
from active_data_flow.runtimes.heartbeat.registration import build_flow
from active_data_flow.runtimes.heartbeat.runtime import HeartbeatRunner
from active_data_flow.runtimes.heartbeat.store import FlowStore

__all__ = ["default_worker_id", "execute_claimed", "execute_run", "runtime_for"]

log = logging.getLogger(__name__)


def default_worker_id() -> str:
    """``hostname:pid``: unique per process, readable in run records."""
    return f"{socket.gethostname()}:{os.getpid()}"


def runtime_for(claim: ClaimedRun) -> Runtime:
    """The runtime a claimed run's flow record names (spec flows' runtimes are untrusted)."""
    guard = untrusted_specs() if claim.flow.origin == "spec" else nullcontext()
    with guard:
        return Runtime.from_dict(claim.flow.runtime)


def execute_claimed(
    store: FlowStore, claim: ClaimedRun, *, stop: threading.Event | None = None
) -> RunRecord | None:
    """Execute a run this process holds, record the outcome, and release its lease.

    Args:
        store: the flow store holding the run.
        claim: the claim (from :meth:`FlowStore.claim_due`, ``claim_run`` or ``adopt_run``).
        stop: when set, the run stops after its current batch and becomes pending again.

    Returns:
        The run's final record (succeeded, failed, or pending again after a stop), or
        ``None`` when the claim was lost to another worker or the store became unreachable
        (the run is then reclaimed once its lease expires).
    """
    held = store.leases.hold(claim)
    try:
        if stop is not None and stop.is_set():
            return store.release(claim, reason="released unstarted: the worker is stopping")
        try:
            flow = build_flow(claim.flow)
        except (FlowCodeError, ConfigurationError) as exc:
            return _fail_unbuildable(store, claim, exc)
        guard = untrusted_specs() if claim.flow.origin == "spec" else nullcontext()
        with guard:  # a stored spec's connectors are built, at run time too, as untrusted
            runtime = flow.get_runtime()
            runner = runtime.runner()
            if not isinstance(runner, HeartbeatRunner):
                runner = HeartbeatRunner(runtime)
            return runner.run_claimed(store, claim, flow, held=held, stop=stop)
    except RunClaimLost as exc:
        log.warning("run %s: %s", claim.run_id, exc, extra={"action": "run_lost"})
        return None
    except StoreError as exc:
        log.error("run %s of %s: the flow store failed (%s); the run will be reclaimed when "
                  "its lease expires", claim.run_id, claim.flow.name, exc,
                  extra={"action": "run_store_failed"})
        return None
    finally:
        store.leases.release(claim)


def _fail_unbuildable(store: FlowStore, claim: ClaimedRun, exc: Exception) -> RunRecord:
    log.error("run %s: flow %s cannot be built: %s", claim.run_id, claim.flow.name, exc,
              extra={"action": "flow_unbuildable", "flow": claim.flow.name})
    return store.finish(
        claim, RunStatus.FAILED, RunCounts(), duration_s=0.0, error=exc,
        traceback="".join(traceback.format_exception(exc)),
        code_error=str(exc) if isinstance(exc, FlowCodeError) else None,
    )


def execute_run(
    store: FlowStore, run_id: int, worker_id: str | None = None, *, token: str | None = None,
    stop: threading.Event | None = None,
) -> RunRecord | None:
    """Execute a run by id, with the same recording, lease, fencing and checkpoints as a
    heartbeat: what a task queue's worker process calls for a run a heartbeat dispatched.

    Args:
        run_id: the run.
        worker_id: this executor's id (default ``hostname:pid``).
        token: the claim's token, when a heartbeat claimed the run and dispatched it here;
            the run is adopted only while that claim is still valid. Without a token the run
            must be pending, and is claimed here.

    Returns:
        The final record, or ``None`` when the run could not be claimed or adopted (already
        executed, reclaimed, cancelled) or the claim was lost.
    """
    worker_id = worker_id or default_worker_id()
    claim = (store.adopt_run(run_id, token, worker_id) if token is not None
             else store.claim_run(run_id, worker_id))
    if claim is None:
        log.info("run %s: not claimable by %s (already taken, finished or reclaimed)",
                 run_id, worker_id, extra={"action": "run_not_claimable"})
        return None
    return execute_claimed(store, claim, stop=stop)

