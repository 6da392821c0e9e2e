"""FlowStore: the flow store on a SQL database (SQLite, PostgreSQL, MariaDB/MySQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import URL, Connection, Engine

from active_data_flow.runtimes.heartbeat.store import schema
from active_data_flow.runtimes.heartbeat.store._db import Database, same_database
from active_data_flow.runtimes.heartbeat.store.base import (
    Store,
    StoreSettings,
    default_lease_seconds,
    utcnow,
)
from active_data_flow.runtimes.heartbeat.store.dead_letters import SqlDeadLetters
from active_data_flow.runtimes.heartbeat.store.flows import SqlFlows
from active_data_flow.runtimes.heartbeat.store.inbox import SqlInbox
from active_data_flow.runtimes.heartbeat.store.partitions import SqlPartitions
from active_data_flow.runtimes.heartbeat.store.runs import SqlRuns
from active_data_flow.runtimes.heartbeat.store.workers import SqlWorkers

__all__ = ["FlowStore"]


class FlowStore(Store):
    """Flows and their runs, in the database at ``url``.

    Args:
        url: a SQLAlchemy URL. Default: ``ADF_DATABASE_URL``, else
            ``sqlite:///active_data_flow.db`` in the working directory.
        engine: an existing engine to use instead (not disposed by :meth:`close`).
        lease_seconds: how long a claimed run stays claimed without a renewal; a run whose
            worker died is reclaimed at the first heartbeat after this. Default:
            ``ADF_LEASE_SECONDS``, else 10. Renewals happen every ``renew_seconds`` (default:
            a fifth of the lease), one statement per worker however many runs it holds.
        auto_upgrade: apply pending migrations now. Default: yes for SQLite (the embedded
            default), no for server databases (run ``adf db upgrade``, or :meth:`upgrade`).
        retry_seconds: how long transient database failures are retried.
        clock: a function giving the current aware datetime (tests travel in time with it).

    Example:
        >>> store = FlowStore("sqlite:///flows.db")                    # doctest: +SKIP
        >>> store.create_flow({"name": "copy", "source": {...}, "sink": {...}})  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        engine: Engine | None = None,
        lease_seconds: float | None = None,
        renew_seconds: float | None = None,
        auto_upgrade: bool | None = None,
        retry_seconds: float = 20.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = StoreSettings(
            lease_seconds=float(default_lease_seconds() if lease_seconds is None
                                else lease_seconds),
            renew_seconds=renew_seconds, clock=clock or utcnow)
        self._db = Database(url, engine=engine, retry_seconds=retry_seconds)
        self.flows = SqlFlows(self._db, self.settings)
        self.runs = SqlRuns(self._db, self.settings)
        self.partitions = SqlPartitions(self._db, self.settings)
        self.dead_letters = SqlDeadLetters(self._db, self.settings)
        self.workers = SqlWorkers(self._db, self.settings)
        self.inbox = SqlInbox(self._db, self.settings)
        auto = auto_upgrade if auto_upgrade is not None else self._db.backend == "sqlite"
        if auto and not self.is_current():
            self.upgrade()

    # -- the database --------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self._db.display_url

    @property
    def engine(self) -> Engine:
        """The store's SQLAlchemy engine."""
        return self._db.engine

    @property
    def database(self) -> Database:
        """The store's database handle (engine plus transaction helpers)."""
        return self._db

    def upgrade(self, revision: str = "heads") -> None:
        """Apply the store's migrations up to ``revision`` (``adf db upgrade``)."""
        schema.upgrade(self._db, revision)

    def downgrade(self, revision: str) -> None:
        """Revert the store's migrations to ``revision`` (``"base"`` drops the tables)."""
        schema.downgrade(self._db, revision)

    def current(self) -> str | None:
        """The revision the database is at (``None``: not migrated)."""
        return schema.current_revision(self._db)

    def is_current(self) -> bool:
        """Whether the database is at the newest revision."""
        return self.current() == schema.head_revision()

    def shares_database_with(self, handle: Any) -> bool:
        """Whether ``handle`` (a SQLAlchemy Connection or Engine, or a transaction handle
        naming its ``database_url``, as a Django sink's does) points at this store's
        database, so writes through it can join the store's rows in one transaction."""
        if isinstance(handle, (Connection, Engine)):
            return same_database(handle.engine.url, self._db.url)
        url = getattr(handle, "database_url", None)
        if isinstance(url, URL):
            return same_database(url, self._db.url)
        return False

    def close(self) -> None:
        """Release the connections (of an engine the store created)."""
        self._db.close()

    def __repr__(self) -> str:
        return f"FlowStore({self.url!r})"
