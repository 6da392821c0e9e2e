"""Options both Django connectors share: ``model`` and ``database`` (a DATABASES alias)."""

from __future__ import annotations

from typing import Any

from pydantic import field_serializer, field_validator

from active_data_flow.connector import ConnectorConfig
from active_data_flow.connectors._table_options import names
from active_data_flow.contrib.django.connectors._models import check_alias, label, resolve_model
from active_data_flow.registry import specs_trusted

__all__ = ["DjangoModelOptions", "names"]



class DjangoModelOptions(ConnectorConfig):
    """``model``: a model class, ``"app_label.Model"`` or an import string (stored specs:
    allowed ``app_label.Model`` only); ``database``: a ``DATABASES`` alias (default: the
    router's choice for the model)."""

    model: type
    database: str | None = None

    @field_validator("model", mode="before")
    @classmethod
    def _resolve(cls, value: Any) -> type:
        return resolve_model(value, trusted=specs_trusted())

    @field_serializer("model", when_used="json")
    def _model_spec(self, model: Any) -> str:
        return label(model)

    def check(self, what: str) -> None:
        """Checks raising ConfigurationError themselves."""
        check_alias(self.database, what)
