"""The Celery runtime on the project's own Celery app (configured from Django settings)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from active_data_flow.contrib.django.celery import install, load_app
from active_data_flow.errors import ConfigurationError
from active_data_flow.runtimes.celery import tasks
from active_data_flow.runtimes.celery.app import default_app, set_default_app
from active_data_flow.runtimes.celery.settings import check_app

CELERY = {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/9", "CELERY_TASK_ACKS_LATE": True,
          "CELERY_TASK_REJECT_ON_WORKER_LOST": True, "CELERY_WORKER_PREFETCH_MULTIPLIER": 1}


def test_install_puts_the_runtime_on_the_projects_app() -> None:
    from tests.contrib.django.celery_app import app

    try:
        with override_settings(**CELERY):
            assert install(app) is app
            assert install(app) is app  # idempotent
            assert tasks.START_TASK in app.tasks
            assert default_app() is app
            assert app.conf.broker_url == "redis://127.0.0.1:6379/9"  # CELERY_BROKER_URL
            check_app(app)
    finally:
        set_default_app(None)


def test_the_celery_app_setting_is_loaded_by_manage_py_adf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from active_data_flow.contrib.django.management.commands.adf import configure

    # configure() exports ADF_* into this process's environment: give it back afterwards.
    for name in ("ADF_DATABASE_URL", "ADF_FLOWS", "ADF_HEARTBEAT_TOKEN", "ADF_LEASE_SECONDS"):
        monkeypatch.setenv(name, "")
    try:
        with override_settings(ACTIVE_DATA_FLOW={
                "CELERY_APP": "tests.contrib.django.celery_app:app"}, **CELERY):
            configure()
            from tests.contrib.django.celery_app import app

            assert default_app() is app
        with pytest.raises(ConfigurationError) as err:
            load_app("tests.contrib.django.nope:app")
        assert err.value.option == "CELERY_APP"
    finally:
        set_default_app(None)
