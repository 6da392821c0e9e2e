"""Django models for the connectors: resolving ``model``, the allow-list, field codecs."""

from __future__ import annotations

import datetime as dt
import fnmatch
import importlib
import uuid
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.db import connections, models

from active_data_flow.errors import ConfigurationError

__all__ = ["decode", "encode", "label", "register_models", "resolve_model"]

_allowed: set[str] = set()  # "app_label.Model" or "app_label.*" (patterns)


def register_models(*names: str | type[models.Model]) -> None:
    """Allow models in specs from outside the application (the flow store, the web API):
    ``"app_label.Model"``, ``"app_label.*"`` or a model class."""
    for name in names:
        _allowed.add(label(name) if isinstance(name, type) else name.lower())


def label(model: type[models.Model]) -> str:
    """``"app_label.modelname"``, as a spec stores a model."""
    return model._meta.label_lower


def _allowed_label(text: str) -> bool:
    return any(fnmatch.fnmatchcase(text.lower(), pattern) for pattern in _allowed)


def resolve_model(value: Any, *, trusted: bool) -> type[models.Model]:
    """A model class from a class, ``"app_label.Model"`` or an import string.

    Untrusted specs may only name models allowed with :func:`register_models` (or
    ``ACTIVE_DATA_FLOW["MODELS"]``) by their ``app_label.Model``; nothing is imported.

    Raises:
        ValueError: the model cannot be found or is not allowed (the option is ``model``).
    """
    if isinstance(value, type) and issubclass(value, models.Model):
        if not trusted and not _allowed_label(label(value)):
            raise ValueError(f"{label(value)!r} is not a registered model")
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a Django model class or 'app_label.Model', got {value!r}")
    if value.count(".") == 1 and ":" not in value:
        if not trusted and not _allowed_label(value):
            raise ValueError(f"{value!r} is not a registered model (allow it with "
                             "ACTIVE_DATA_FLOW['MODELS'] or register_models())")
        try:
            return apps.get_model(value)
        except (LookupError, ValueError) as exc:
            if not trusted:
                raise ValueError(f"{value!r} is not a registered model") from None
            if ":" not in value:
                raise ValueError(f"no model {value!r}: {exc}") from None
    if not trusted:
        raise ValueError(f"{value!r} is not a registered model ('app_label.Model' only)")
    module, _, name = value.partition(":") if ":" in value else value.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import model {value!r}: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, models.Model)):
        raise ValueError(f"{value!r} is not a Django model")
    return found


def check_alias(alias: str | None, what: str) -> None:
    """``database`` must be a ``DATABASES`` alias (all of them are the application's own)."""
    if alias is not None and alias not in connections:
        raise ConfigurationError(
            f"{what}: option 'database': {alias!r} is not a DATABASES alias "
            f"(aliases: {', '.join(connections)})", option="database")


# -- positions: JSON-safe values of key fields --------------------------------------------
def encode(value: Any) -> Any:
    """A field value as JSON: dates and times as ISO text, decimals and UUIDs as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return str(value)


def decode(field: models.Field[Any, Any], value: Any, what: str) -> Any:
    """A JSON value given back (a cursor) as a value of ``field``.

    Raises:
        ConfigurationError: the value does not fit the field (option ``cursor``).
    """
    if value is None:
        return None
    try:
        if isinstance(field, models.DateTimeField):
            return dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        if isinstance(field, models.DateField):
            return dt.date.fromisoformat(value) if isinstance(value, str) else value
        if isinstance(field, models.TimeField):
            return dt.time.fromisoformat(value) if isinstance(value, str) else value
        if isinstance(field, models.DecimalField):
            return Decimal(str(value))
        if isinstance(field, models.UUIDField):
            return uuid.UUID(str(value))
        if isinstance(field, (models.IntegerField, models.AutoField, models.ForeignKey)):
            if isinstance(value, bool):
                raise ValueError("a boolean")
            return int(value)
        return field.to_python(value)
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise ConfigurationError(
            f"{what}: cursor value {value!r} does not fit field {field.name!r}: {exc}",
            option="cursor") from None
