"""The app's configuration: registers the ``django`` connectors and the allowed models."""

from __future__ import annotations

from django.apps import AppConfig


class ActiveDataFlowConfig(AppConfig):
    """``INSTALLED_APPS += ["active_data_flow.contrib.django"]``."""

    name = "active_data_flow.contrib.django"
    label = "active_data_flow"
    verbose_name = "Data flows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from active_data_flow.contrib.django import conf, connectors

        connectors.register_models(*conf.adf_settings().models)
