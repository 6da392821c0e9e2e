"""The Celery application: created from :class:`~.settings.CelerySettings`, with the runtime's
two tasks and a start-up check that refuses unsafe settings.

Tasks are sent by name, so the process that enqueues (a heartbeat, the web engine) needs only
the broker URL; workers need the broker, the flow store, and the application's flows.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import TYPE_CHECKING, Any

from active_data_flow.runtimes.celery.settings import CelerySettings, check_app
from celery import Celery, bootsteps  # type: ignore[import-untyped]

if TYPE_CHECKING:
    from active_data_flow.runtimes.celery.config import CeleryConfig

__all__ = [
    "PARTITION_TASK",
    "START_TASK",
    "create_app",
    "default_app",
    "send_partition",
    "send_start",
    "set_default_app",
]

log = logging.getLogger(__name__)

START_TASK = "active_data_flow.start_run"
PARTITION_TASK = "active_data_flow.run_partition"

_default: Celery | None = None
_default_lock = threading.Lock()


class SafetyCheck(bootsteps.Step):  # type: ignore[misc]
    """Worker bootstep: refuse to start with settings that could lose or duplicate runs."""

    label = "active_data_flow settings check"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        check_app(worker.app, prefetch_multiplier=worker.prefetch_multiplier)
        super().__init__(worker, **kwargs)


def create_app(
    settings: CelerySettings | None = None, /, *, main: str = "active_data_flow", **options: Any
) -> Celery:
    """A Celery app configured for the runtime, with its tasks registered.

    Args:
        settings: the settings; or give them as keyword ``options`` (``broker_url=...``,
            ``store_url=...``, ``visibility_timeout=...``; see :class:`CelerySettings`).
        main: the app's name.

    Raises:
        ConfigurationError: a bad or missing option (e.g. no broker URL).
    """
    from active_data_flow.runtimes.celery.tasks import register_tasks

    settings = settings or CelerySettings.build(**options)
    app = Celery(main, set_as_current=False)
    app.conf.update(settings.celery_config())
    register_tasks(app)
    app.steps["worker"].add(SafetyCheck)
    return app


def settings_of(app: Celery) -> CelerySettings:
    """The runtime settings an app was created with."""
    stored = app.conf.get("adf_settings")
    if isinstance(stored, dict):
        return CelerySettings.build(**stored)
    return CelerySettings.build(broker_url=str(app.conf.broker_url or "") or None)


def default_app() -> Celery:
    """The app this process enqueues through: the one given to :func:`set_default_app`,
    else one created from the environment (``ADF_CELERY_BROKER_URL``) on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = create_app()
        return _default


def set_default_app(app: Celery | None) -> None:
    """Make ``app`` the one :func:`default_app` returns (``None``: back to the environment)."""
    global _default
    with _default_lock:
        _default = app


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
