"""Applying the flow store's Alembic migrations to a database."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from active_data_flow.runtimes.heartbeat.store._db import Database

__all__ = [
    "BRANCH",
    "VERSION_TABLE",
    "current_revision",
    "downgrade",
    "head_revision",
    "migrations_path",
    "upgrade",
]

BRANCH = "active_data_flow"
VERSION_TABLE = "adf_alembic_version"


def migrations_path() -> Path:
    """The folder holding the flow store's revision files (for a host's ``version_locations``)."""
    return Path(str(resources.files("active_data_flow.runtimes.heartbeat.store") / "migrations"
                    / "versions"))


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location",
                           "active_data_flow.runtimes.heartbeat.store:migrations")
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision of the ``active_data_flow`` branch."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # only a broken installation has no revision files
        raise RuntimeError("the flow store's migrations are missing from the installation")
    return head


def current_revision(db: Database) -> str | None:
    """The revision the database is at (``None``: never migrated)."""
    with db.engine.connect() as conn:
        if not sa.inspect(conn).has_table(VERSION_TABLE):
            return None
        version = sa.table(VERSION_TABLE, sa.column("version_num"))
        return conn.execute(sa.select(version.c.version_num)).scalar()


def _run(db: Database, action: str, revision: str) -> None:
    config = _config()
    with db.engine.connect() as conn:
        # SQLite rebuilds a table to alter it (Alembic's batch mode): with foreign keys on,
        # dropping the old table would cascade-delete the rows that reference it. The pragma
        # only takes effect outside a transaction, so it goes to the driver before BEGIN.
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
        try:
            # On SQLite an immediate transaction makes concurrent auto-upgrades queue, and
            # the later ones find the schema current.
            conn.execution_options(adf_write=True)
            with conn.begin():
                config.attributes["connection"] = conn
                if action == "upgrade":
                    command.upgrade(config, revision)
                else:
                    command.downgrade(config, revision)
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
                    raise RuntimeError("the migration left rows whose foreign keys match "
                                       "nothing; it was rolled back")
        finally:
            if sqlite:
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = ON")  # type: ignore[union-attr]


def upgrade(db: Database, revision: str = "heads") -> None:
    """Apply migrations up to ``revision``."""
    _run(db, "upgrade", revision)


def downgrade(db: Database, revision: str) -> None:
    """Revert migrations down to ``revision`` (``"base"``: drop every table)."""
    _run(db, "downgrade", revision)
