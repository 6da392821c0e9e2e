"""A project's Celery app, set up the way Django's Celery guide does (for test_celery.py)."""

from celery import Celery  # type: ignore[import-untyped]

app = Celery("testproject", set_as_current=False)
app.config_from_object("django.conf:settings", namespace="CELERY")
