"""Alembic environment of the flow store's migrations.

Run through :meth:`FlowStore.upgrade` (``adf db upgrade``), which passes an open connection in
``config.attributes["connection"]``. Standalone use (``alembic -c ...``) reads
``sqlalchemy.url`` from the config, else ``ADF_DATABASE_URL``. The revisions are recorded in
their own version table, ``adf_alembic_version``, so they never collide with the host
application's Alembic history in the same database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection

from active_data_flow.runtimes.heartbeat.store.models import metadata

VERSION_TABLE = "adf_alembic_version"

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    from active_data_flow.runtimes.heartbeat.store._db import resolve_url

    configured = config.get_main_option("sqlalchemy.url")
    return configured or resolve_url(None).render_as_string(hide_password=False)


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, version_table=VERSION_TABLE,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    given = config.attributes.get("connection")
    if given is not None:
        _configure(given)
    else:
        engine = sa.create_engine(_url(), poolclass=sa.NullPool)
        try:
            with engine.connect() as conn:
                _configure(conn)
        finally:
            engine.dispose()
