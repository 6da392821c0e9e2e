"""The Celery runtime on the project's own Celery app.

In ``proj/celery.py``, as Django's Celery guide has it, then one more line::

    app = Celery("proj")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.autodiscover_tasks()

    from active_data_flow.contrib.django.celery import install
    install(app)            # the runtime's tasks, its safety check; flows enqueue through it

and ``ACTIVE_DATA_FLOW["CELERY_APP"] = "proj.celery:app"`` so that ``manage.py adf`` (a
heartbeat dispatching Celery flows) uses it too. The project's ``CELERY_*`` settings must
keep late acknowledgement on (the worker refuses to start otherwise).
"""

from __future__ import annotations

import importlib
from typing import Any

from active_data_flow.errors import ConfigurationError

__all__ = ["install", "load_app"]


def install(app: Any) -> Any:
    """Register the runtime's tasks and start-up check on ``app`` and make it the app flows
    are enqueued through. Returns ``app``."""
    from active_data_flow.runtimes.celery.app import SafetyCheck, set_default_app
    from active_data_flow.runtimes.celery.tasks import register_tasks

    if not getattr(app, "_adf_installed", False):
        register_tasks(app)
        app.steps["worker"].add(SafetyCheck)
        app._adf_installed = True
    set_default_app(app)
    return app


def load_app(target: str) -> Any:
    """The Celery app named by ``"module:attribute"`` (``ACTIVE_DATA_FLOW["CELERY_APP"]``),
    installed.

    Raises:
        ConfigurationError: it cannot be imported.
    """
    module, _, name = target.partition(":")
    try:
        app = getattr(importlib.import_module(module), name or "app")
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"ACTIVE_DATA_FLOW['CELERY_APP']: cannot load {target!r}: "
                                 f"{exc}", option="CELERY_APP") from None
    return install(app)
