"""The Celery application: created from :class:`~.settings.CelerySettings`, with the runtime's
two tasks and a start-up check that refuses unsafe settings.

Tasks are sent by name, so the process that enqueues (a heartbeat, the web engine) needs only
the broker URL; workers need the broker, the flow store, and the application's flows.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, bootsteps  # type: ignore[import-untyped]

from active_data_flow.runtimes.celery.settings import CelerySettings, check_app
from active_data_flow.runtimes.celery.tasks import register_tasks

__all__ = ["create_app", "default_app", "set_default_app"]

log = logging.getLogger(__name__)

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
    settings = settings or CelerySettings.build(**options)
    app = Celery(main, set_as_current=False)
    app.conf.update(settings.celery_config())
    register_tasks(app)
    app.steps["worker"].add(SafetyCheck)
    return app


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
