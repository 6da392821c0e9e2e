"""The app for ``celery -A active_data_flow.runtimes.celery.worker worker``.

Configured from the environment: ``ADF_CELERY_BROKER_URL`` (required), ``ADF_DATABASE_URL``
(the flow store) and ``ADF_FLOWS`` (the modules or folders defining the application's code
flows, and registering the models and databases its spec flows name). They are loaded here,
before Celery forks its pool. ``adf celery-worker`` is the same worker with options on its
command line.
"""

from __future__ import annotations

import logging

from active_data_flow.catalog import catalog
from active_data_flow.runtimes.celery.app import default_app

__all__ = ["app"]

app = default_app()

for _where, _why in catalog.load_defaults(quiet=True).errors.items():
    logging.getLogger(__name__).error("cannot load flows from %s: %s", _where, _why)
