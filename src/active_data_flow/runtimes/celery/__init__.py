"""The Celery runtime: flows claimed by a heartbeat, executed in parallel partitions by Celery
workers, recorded in the flow store (DESIGN §2; docs/celery.md).

Install with ``pip install "active-data-flow[celery]"``. A flow opts in with its runtime::

    from active_data_flow.runtimes.celery import Celery

    class CopyOrders(DataFlow):
        source = SqlAlchemySource(model=Order)
        sink = SqlAlchemySink(model=ReportOrder, upsert=True)
        runtime = Celery(interval=300, partitions=4, concurrency=2, queue="etl")

The heartbeat (cron ``adf heartbeat``, ``adf worker`` or the web engine) claims it when due and
enqueues it; ``adf celery-worker`` processes split it and run the parts.

Public names: :class:`Celery` (runtime type ``celery``), :class:`CeleryConfig`,
:class:`CelerySettings`, :func:`create_app`, :func:`default_app`, :func:`set_default_app`,
:func:`check_app`.
"""

from __future__ import annotations

from active_data_flow.runtimes.celery.app import create_app, default_app, set_default_app
from active_data_flow.runtimes.celery.config import CeleryConfig
from active_data_flow.runtimes.celery.runtime import Celery
from active_data_flow.runtimes.celery.settings import BROKER_ENV, CelerySettings, check_app

__all__ = [
    "BROKER_ENV",
    "Celery",
    "CeleryConfig",
    "CelerySettings",
    "check_app",
    "create_app",
    "default_app",
    "set_default_app",
]
