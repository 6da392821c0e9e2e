"""Django migrations of the flow store: they apply the store's Alembic revisions."""

from __future__ import annotations

__all__ = ["store_downgrade", "store_upgrade"]


def _database(alias: str):  # type: ignore[no-untyped-def]
    from active_data_flow.contrib.django.conf import sqlalchemy_url
    from active_data_flow.runtimes.heartbeat.store._db import Database

    return Database(sqlalchemy_url(alias))


def store_upgrade(alias: str, revision: str = "heads") -> None:
    """Apply the flow store's Alembic migrations on the ``DATABASES`` alias."""
    from active_data_flow.runtimes.heartbeat.store import schema

    db = _database(alias)
    try:
        schema.upgrade(db, revision)
    finally:
        db.close()


def store_downgrade(alias: str, revision: str = "base") -> None:
    """Revert the flow store's Alembic migrations on the ``DATABASES`` alias."""
    from active_data_flow.runtimes.heartbeat.store import schema

    db = _database(alias)
    try:
        schema.downgrade(db, revision)
    finally:
        db.close()
