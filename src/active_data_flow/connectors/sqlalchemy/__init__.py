"""SQLAlchemy connectors: read and write database tables through mapped models.

Install with ``pip install "active-data-flow[sqlalchemy]"`` (plus a driver, e.g. the
``postgresql`` or ``mysql`` extra). Both connectors are registered as type ``sqlalchemy``::

    from active_data_flow import DataFlow
    from active_data_flow.connectors.sqlalchemy import (
        SqlAlchemySink, SqlAlchemySource, register_database, register_models,
    )

    register_database("default", "postgresql+psycopg://app@db/app")
    register_models(Base)  # lets stored and web-submitted specs name these models

    class CopyUsers(DataFlow):
        source = SqlAlchemySource(model=User, cursor_column=["updated_at", "id"])
        sink = SqlAlchemySink(model=ReportUser, upsert=True)

See ``docs/sqlalchemy.md`` for every option and the delivery guarantees.
"""

from __future__ import annotations

from active_data_flow.connectors.sqlalchemy._db import (
    dispose_engines,
    register_database,
    registered_databases,
    unregister_database,
)
from active_data_flow.connectors.sqlalchemy._models import register_models, unregister_models
from active_data_flow.connectors.sqlalchemy.sink import SqlAlchemySink
from active_data_flow.connectors.sqlalchemy.source import SqlAlchemySource

__all__ = [
    "SqlAlchemySink",
    "SqlAlchemySource",
    "dispose_engines",
    "register_database",
    "register_models",
    "registered_databases",
    "unregister_database",
    "unregister_models",
]
