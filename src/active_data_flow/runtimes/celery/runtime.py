"""The ``celery`` runtime: flows claimed by a heartbeat, executed by Celery workers.

A flow whose runtime is :class:`Celery` is scheduled and claimed exactly like a heartbeat
flow; :meth:`Celery.dispatch` then enqueues the claimed run instead of running it in the
heartbeat's process. A worker splits the flow's source into ``partitions`` parts and enqueues
one task per part; every part is claimed, leased, checkpointed and retried on its own in the
store, and the run ends when all of its parts have (see :mod:`.execution`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Self

from pydantic import Field, model_validator

from active_data_flow.registry import register_runtime
from active_data_flow.runtimes.heartbeat.runtime import Heartbeat, HeartbeatConfig

if TYPE_CHECKING:
    from active_data_flow.runtimes.heartbeat.records import ClaimedRun
    from active_data_flow.runtimes.heartbeat.runtime import Dispatch

__all__ = ["Celery", "CeleryConfig"]

log = logging.getLogger(__name__)

_NAME = r"^[A-Za-z0-9_.:\-]{1,200}$"


class CeleryConfig(HeartbeatConfig):
    """Options of the Celery runtime (besides the heartbeat's schedule and retries).

    Attributes:
        queue: the Celery queue the flow's tasks go to (default: the app's default queue,
            ``active_data_flow``); start workers with ``-Q`` to dedicate them.
        priority: 0-9, higher runs first among tasks waiting in the same queue.
        partitions: how many parts the flow's source is split into, each a task of its own
            (a source that cannot split runs as one part).
        concurrency: at most this many tasks of the flow execute at once, across all
            workers (``None``: as many as there are parts and free workers).
        concurrency_group: a name shared by flows that together may run at most
            ``group_concurrency`` tasks at once (e.g. flows writing to one database).
        group_concurrency: the limit of ``concurrency_group``.
        queue_timeout: seconds a dispatched run may wait for workers without any of its
            parts making progress before the heartbeat declares it lost and recovers it.
        max_attempts: executions of one part before a transient failure fails it (and the
            run); other parts are not re-run.
    """

    queue: str | None = Field(default=None, pattern=_NAME)
    priority: int = Field(default=5, ge=0, le=9)
    partitions: int = Field(default=1, ge=1, le=1024)
    concurrency: int | None = Field(default=None, ge=1, le=100_000)
    concurrency_group: str | None = Field(default=None, pattern=_NAME)
    group_concurrency: int | None = Field(default=None, ge=1, le=100_000)
    queue_timeout: float = Field(default=3600.0, gt=0, le=7 * 86_400)

    @model_validator(mode="after")
    def _group_has_a_limit(self) -> Self:
        if (self.concurrency_group is None) != (self.group_concurrency is None):
            missing = "group_concurrency" if self.group_concurrency is None else (
                "concurrency_group")
            raise ValueError(f"concurrency_group and group_concurrency go together; set "
                             f"{missing} too")
        return self


@register_runtime("celery")
class Celery(Heartbeat):
    """Run flows on Celery workers, in parallel partitions, recorded in the flow store.

    The heartbeat (``adf heartbeat`` from cron, ``adf worker``, or the web engine) claims due
    runs as usual and enqueues them; ``adf celery-worker`` processes execute them.

    Example:
        >>> from active_data_flow.runtimes.celery import Celery
        >>> Celery(interval=300, partitions=4, concurrency=2).to_dict()
        {'type': 'celery', 'config': {'interval': 300.0, 'partitions': 4, 'concurrency': 2}}
    """

    Config = CeleryConfig
    config: CeleryConfig

    def dispatch(self, claim: ClaimedRun, context: Dispatch) -> None:
        """Enqueue a claimed run for the Celery workers (in place of running it here).

        The run's lease is first stretched to ``queue_timeout``, so that it does not expire
        while the task waits in the queue; the run's parts renew it as they progress.
        """
        from active_data_flow.runtimes.celery.app import default_app, send_start

        context.store.hold_dispatched(claim, self.config.queue_timeout)
        send_start(default_app(), claim.run_id, claim.token, self)
        context.hand_off(claim)
        log.info("run %s of %s enqueued on Celery (queue %s, %d partition(s))",
                 claim.run_id, claim.flow.name, self.config.queue or "default",
                 self.config.partitions, extra={"action": "celery_dispatched",
                                                "run_id": claim.run_id})
