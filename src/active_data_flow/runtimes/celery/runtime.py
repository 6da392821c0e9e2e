"""The ``celery`` runtime: flows claimed by a heartbeat, executed by Celery workers.

A flow whose runtime is :class:`Celery` is scheduled and claimed exactly like a heartbeat
flow; :meth:`Celery.dispatch` then enqueues the claimed run instead of running it in the
heartbeat's process. A worker splits the flow's source into ``partitions`` parts and enqueues
one task per part; every part is claimed, leased, checkpointed and retried on its own in the
store, and the run ends when all of its parts have (see :mod:`.split` and the engine's
executor, which runs parts and whole runs alike).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from active_data_flow.registry import register_runtime
from active_data_flow.runtimes.celery.config import CeleryConfig
from active_data_flow.runtimes.heartbeat.runtime import Heartbeat

if TYPE_CHECKING:
    from active_data_flow.runtimes.heartbeat.runtime import Dispatch
    from active_data_flow.runtimes.heartbeat.store import ClaimedRun

__all__ = ["Celery", "CeleryConfig"]

log = logging.getLogger(__name__)

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
        from active_data_flow.runtimes.celery.app import default_app
        from active_data_flow.runtimes.celery.tasks import send_start

        context.store.runs.hold_dispatched(claim, self.config.queue_timeout)
        send_start(default_app(), claim.run_id, claim.token, self.config)
        context.hand_off(claim)
        log.info("run %s of %s enqueued on Celery (queue %s, %d partition(s))",
                 claim.run_id, claim.flow.name, self.config.queue or "default",
                 self.config.partitions, extra={"action": "celery_dispatched",
                                                "run_id": claim.run_id})
