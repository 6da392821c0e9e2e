"""Options both SQLAlchemy connectors share: the model and the database it lives in."""

from __future__ import annotations

from typing import Any

from pydantic import field_serializer, field_validator
from sqlalchemy.engine import Engine

from active_data_flow.connector import ConnectorConfig
from active_data_flow.connectors._table_options import names
from active_data_flow.connectors.sqlalchemy import _db
from active_data_flow.connectors.sqlalchemy._models import import_string, resolve_model
from active_data_flow.errors import ConfigurationError
from active_data_flow.registry import specs_trusted

__all__ = ["ModelOptions", "names"]



class ModelOptions(ConnectorConfig):
    """``model`` (resolved at construction, safely for untrusted specs) and ``database``.

    In a spec (``to_dict()``) a model is its import string and a database its registered
    name or URL.
    """

    model: type
    database: str | Engine | None = None

    @field_validator("model", mode="before")
    @classmethod
    def _resolve_model(cls, value: Any) -> type:
        return resolve_model(value, trusted=specs_trusted())

    @field_serializer("model", when_used="json")
    def _model_spec(self, model: type) -> str:
        return import_string(model)

    def check(self, what: str) -> None:
        """Checks that must raise ConfigurationError itself (pydantic would echo the input,
        and a URL may hold a password)."""
        _db.check_reference(self.database, trusted=specs_trusted(), what=what)

    def check_storable(self) -> None:
        """Raise ``ConfigurationError`` if the options cannot be written as a spec."""
        if isinstance(self.database, Engine) and _db.registered_name(self.database) is None:
            raise ConfigurationError(
                "an Engine passed as `database` has no name to store in a spec; register it "
                "with register_database(name, engine) and pass the name",
                option="database",
            )

    @field_serializer("database", when_used="json")
    def _database_spec(self, database: str | Engine | None) -> str | None:
        if isinstance(database, Engine):
            return _db.registered_name(database)
        if database is not None and "://" in database:
            # A URL of a registered database is stored as its name: stored specs may only
            # name registered databases.
            return _db.registered_name_of_url(database) or database
        return database
