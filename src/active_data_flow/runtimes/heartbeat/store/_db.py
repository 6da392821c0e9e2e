"""The store's database handle: the shared database layer, set up for the flow store.

Engines, SQLite set-up, transactions and bounded retries all come from
:mod:`active_data_flow.connectors.sqlalchemy._db` (profile ``"store"``):

* PostgreSQL and MariaDB run at READ COMMITTED: guarded updates then re-check their condition
  against the latest committed row, and InnoDB does not lock rows that a condition rejects
  (which would otherwise deadlock pausing against finishing).
* SQLite write transactions begin with ``BEGIN IMMEDIATE``: the write lock is taken up front,
  so concurrent heartbeats queue behind the busy timeout instead of failing to upgrade a read
  lock. WAL lets readers (the web pages) go on meanwhile.
* Every pooled connection is pinged on checkout (``pool_pre_ping``), so the first query after
  a database restart gets a fresh connection.
* Transient failures (lost connection, deadlock, lock timeout, SQLite busy) are retried with
  backoff for a bounded time (:class:`StoreUnavailable` after it); integrity errors never are;
  missing tables raise :class:`StoreNotMigrated`.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, Engine

from active_data_flow.connectors.sqlalchemy import _db
from active_data_flow.connectors.sqlalchemy._db import (
    DEFAULT_URL,
    is_transient_db_error,
    same_database,
)
from active_data_flow.errors import ConfigurationError
from active_data_flow.masking import mask_url
from active_data_flow.runtimes.heartbeat.store.records import StoreNotMigrated, StoreUnavailable

__all__ = ["DEFAULT_URL", "Database", "is_transient_db_error", "resolve_url", "same_database"]


def resolve_url(url: str | URL | None) -> URL:
    """The store URL: ``url``, else ``ADF_DATABASE_URL``, else SQLite in the working directory.

    Raises:
        ConfigurationError: not a database URL, or an in-memory SQLite database (workers and
            threads must share the store).
    """
    parsed = _db.resolve_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigurationError(
            "the flow store needs a SQLite file (workers and threads share it), not an "
            f"in-memory database: {mask_url(parsed)!r}",
            option="ADF_DATABASE_URL",
        )
    return parsed


class Database(_db.Database):
    """One engine on the store's database, with transaction helpers.

    Args:
        url: the database URL (see :func:`resolve_url`).
        engine: use this engine instead of creating one (it is not disposed by :meth:`close`;
            a SQLite engine gets the store's connection set-up).
        retry_seconds: how long transient failures are retried before giving up.
    """

    def __init__(
        self, url: str | URL | None = None, *, engine: Engine | None = None,
        retry_seconds: float = 20.0,
    ) -> None:
        if engine is None:
            # An engine of its own: closing a store releases its connections (processes that
            # open stores often share one through engine_for(url, profile="store")).
            engine = _db.make_engine(resolve_url(url), profile="store")
            owned = True
        else:
            _db.configure_sqlite(engine, profile="store")
            owned = False
        super().__init__(
            engine, name="flow store", owned=owned, retry_seconds=retry_seconds,
            unavailable_error=StoreUnavailable, schema_error=StoreNotMigrated,
        )
