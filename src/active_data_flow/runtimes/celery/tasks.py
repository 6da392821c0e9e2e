"""The runtime's two Celery tasks, and the per-process state workers keep for them.

``active_data_flow.start_run(run_id, token)``
    splits a dispatched run into parts and enqueues one ``run_partition`` task per part.
``active_data_flow.run_partition(partition_id)``
    claims and executes one part; re-enqueues itself (with a countdown) when the part is busy
    or failed transiently.

Both are late-acknowledged and rejected (so redelivered) when their worker process dies. A
task delivered twice is harmless: the store's claim decides which delivery works, and the
other finds the part claimed (it checks again once the holder's lease would have expired)
or ended (it exits).
"""

from __future__ import annotations

import logging
import os
import random
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery.signals import worker_process_init  # type: ignore[import-untyped]

from active_data_flow.runtimes.celery import split
from active_data_flow.runtimes.celery.config import CeleryConfig
from active_data_flow.runtimes.celery.settings import settings_of
from active_data_flow.runtimes.heartbeat.engine.executor import Executor
from active_data_flow.runtimes.heartbeat.store import FlowStore

if TYPE_CHECKING:
    from celery import Celery  # type: ignore[import-untyped]

__all__ = [
    "PARTITION_TASK",
    "START_TASK",
    "WorkerState",
    "register_tasks",
    "send_partition",
    "send_start",
    "worker_state",
]

START_TASK = "active_data_flow.start_run"
PARTITION_TASK = "active_data_flow.run_partition"

log = logging.getLogger(__name__)

_UNEXPECTED_RETRIES = 5


@dataclass
class WorkerState:
    """What a worker process keeps between tasks: its store connection pool, and the
    executor (with its lease renewer) that runs the parts."""

    pid: int
    store: FlowStore
    executor: Executor


_states: dict[int, WorkerState] = {}
_lock = threading.Lock()


def worker_state(app: Celery) -> WorkerState:
    """This process's state for ``app`` (created after fork, on first use)."""
    pid = os.getpid()
    with _lock:
        state = _states.get(id(app))
        if state is None or state.pid != pid:  # a forked pool process makes its own pool
            settings = settings_of(app)
            store = FlowStore(settings.store_url, lease_seconds=settings.lease_seconds,
                                     renew_seconds=settings.renew_seconds)
            state = _states[id(app)] = WorkerState(pid, store, Executor(store))
        return state


def _worker_id(request: Any) -> str:
    """``celery-node-name:pid``: which worker process ran a part, as the web pages show."""
    node = getattr(request, "hostname", None) or "celery"
    return f"{node}:{os.getpid()}"


def _cap(app: Celery, countdown: float) -> float:
    """Keep a countdown well inside Redis's visibility timeout: a task waiting in a worker
    for its countdown is unacknowledged, and Redis would redeliver it."""
    options = app.conf.broker_transport_options or {}
    timeout = options.get("visibility_timeout")
    return min(countdown, float(timeout) / 2) if timeout else countdown


def register_tasks(app: Celery) -> None:
    """Register the runtime's tasks on ``app``."""
    # shared=False: each app gets its own tasks (Celery otherwise adds them to every app).
    options: dict[str, Any] = {"bind": True, "acks_late": True, "reject_on_worker_lost": True,
                               "ignore_result": True, "shared": False}

    @app.task(name=START_TASK, **options)  # type: ignore[untyped-decorator]
    def start_run(self: Any, run_id: int, token: str) -> None:
        store = worker_state(app).store
        step = split.start_run(store, run_id, token)
        if step is None:
            return
        for partition_id in step.partitions:
            send_partition(app, partition_id, step.config)
        if step.again_in is not None:
            send_start(app, run_id, token, step.config, countdown=_cap(app, step.again_in))

    def warm_up(**_: Any) -> None:
        # A pool process opens its store when it starts, not inside its first task.
        worker_state(app)

    worker_process_init.connect(warm_up, weak=False)

    @app.task(name=PARTITION_TASK, **options)  # type: ignore[untyped-decorator]
    def run_partition(self: Any, partition_id: int) -> None:
        state = worker_state(app)
        store = state.store
        try:
            step = split.run_partition(state.executor, partition_id, _worker_id(self.request))
        except Exception as exc:
            # Not even the failure could be recorded (a bug, or the store kept failing):
            # try again once the part's lease has expired, a few times, then give up loudly
            # (the run is recovered by the heartbeat after its queue_timeout).
            log.exception("partition %s: could not be executed or recorded", partition_id)
            raise self.retry(exc=exc, countdown=_cap(app, store.lease_seconds),
                             max_retries=_UNEXPECTED_RETRIES) from exc
        if step is not None and step.again_in is not None:
            send_partition(app, partition_id, step.config, countdown=_cap(app, step.again_in))


def _route(app: Celery, config: CeleryConfig) -> dict[str, Any]:
    queue = config.queue or app.conf.task_default_queue
    priority = config.priority
    if str(app.conf.broker_url).startswith(("redis", "rediss")):
        priority = 9 - priority  # kombu's Redis transport serves lower numbers first
    return {"queue": queue, "priority": priority}


def send_start(
    app: Celery, run_id: int, token: str, config: CeleryConfig, *,
    countdown: float | None = None,
) -> None:
    """Enqueue the task that splits a claimed run into partitions."""
    options = _route(app, config)
    if countdown is not None and countdown > 0:
        options["countdown"] = countdown
    app.send_task(START_TASK, args=(run_id, token), **options)


def send_partition(
    app: Celery, partition_id: int, config: CeleryConfig, *, countdown: float | None = None
) -> None:
    """Enqueue (or re-enqueue, after ``countdown`` seconds) the task executing a partition."""
    options = _route(app, config)
    if countdown is not None and countdown > 0:
        options["countdown"] = countdown * (0.9 + 0.2 * random.random())  # spread retries
    app.send_task(PARTITION_TASK, args=(partition_id,), **options)
