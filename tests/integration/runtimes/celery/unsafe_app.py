"""A host's Celery app that turned late acknowledgement off (for the start-up check test)."""

from __future__ import annotations

from active_data_flow.runtimes.celery import create_app

app = create_app()
app.conf.task_acks_late = False
