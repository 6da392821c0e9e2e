"""FlowStore: the flow store on a SQL database (SQLite, PostgreSQL, MariaDB/MySQL)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from active_data_flow.connectors.sqlalchemy._db import describe, is_transient_db_error
from active_data_flow.errors import ConfigurationError
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
from active_data_flow.runtimes.heartbeat.store.records import StoreError, StoreUnavailable
from active_data_flow.runtimes.heartbeat.store.runs import SqlRuns
from active_data_flow.runtimes.heartbeat.store.workers import SqlWorkers

_T = TypeVar("_T")

__all__ = ["CONNECT_TIMEOUT_ENV", "DEFAULT_CONNECT_TIMEOUT", "FlowStore",
           "default_connect_timeout"]

#: Seconds :meth:`FlowStore.wait_reachable` retries an unreachable database by default.
DEFAULT_CONNECT_TIMEOUT = 10.0
CONNECT_TIMEOUT_ENV = "ADF_STORE_CONNECT_TIMEOUT"


def default_connect_timeout() -> float:
    """``ADF_STORE_CONNECT_TIMEOUT`` (``adf.toml``: ``store_connect_timeout``), else 10 s.

    Raises:
        ConfigurationError: the variable is not a number of seconds from 0 to 3600.
    """
    text = os.environ.get(CONNECT_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_CONNECT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise ConfigurationError(
            f"{CONNECT_TIMEOUT_ENV} (store_connect_timeout) must be a number of seconds from "
            f"0 to 3600, got {text!r}", option=CONNECT_TIMEOUT_ENV)
    return value


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
        connect_timeout: how long the store waits for an unreachable (or locked) database:
            :meth:`wait_reachable` at a command's start, and each transaction, retried whole
            on transient failures (default: ``ADF_STORE_CONNECT_TIMEOUT``, adf.toml
            ``store_connect_timeout``, else 10 s).
        retry_seconds: how long a transaction is retried, if not ``connect_timeout``.
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
        retry_seconds: float | None = None,
        connect_timeout: float | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.connect_timeout = (default_connect_timeout() if connect_timeout is None
                                else connect_timeout)
        self.settings = StoreSettings(
            lease_seconds=float(default_lease_seconds() if lease_seconds is None
                                else lease_seconds),
            renew_seconds=renew_seconds, clock=clock or utcnow)
        self._db = Database(url, engine=engine, retry_seconds=(
            self.connect_timeout if retry_seconds is None else retry_seconds))
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

    def wait_reachable(self, on_retry: Callable[[str, float], None] | None = None) -> None:
        """Connect once, retrying transient failures for :attr:`connect_timeout` seconds
        (``on_retry(reason, pause)`` before each pause); the commands call this first, so a
        database that is down or wrong is one clear error instead of a hang.

        Raises:
            ConfigurationError: the database does not exist, refuses the credentials, or
                cannot be opened (``option`` is ``ADF_DATABASE_URL``); not retried.
            StoreUnavailable: still unreachable after :attr:`connect_timeout` seconds.
        """
        self._db.wait_reachable(
            self.connect_timeout, on_retry=on_retry, option="ADF_DATABASE_URL",
            fix=" (fix database_url in adf.toml, or ADF_DATABASE_URL)")

    def upgrade(self, revision: str = "heads") -> None:
        """Apply the store's migrations up to ``revision`` (``adf db upgrade``)."""
        self._schema("migrating", lambda: schema.upgrade(self._db, revision))

    def downgrade(self, revision: str) -> None:
        """Revert the store's migrations to ``revision`` (``"base"`` drops the tables)."""
        self._schema("migrating", lambda: schema.downgrade(self._db, revision))

    def current(self) -> str | None:
        """The revision the database is at (``None``: not migrated)."""
        return self._schema("reading the schema revision",
                            lambda: schema.current_revision(self._db))

    def _schema(self, action: str, work: Callable[[], _T]) -> _T:
        """Run a schema operation; a database error becomes a store error naming the
        database (masked) instead of a driver traceback."""
        try:
            return work()
        except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
            detail = f"{self._db.label}: {action} failed: {self._db.mask(describe(exc))}"
            if is_transient_db_error(exc):
                raise StoreUnavailable(detail) from exc
            if isinstance(exc, sa.exc.OperationalError):  # cannot connect: a wrong database
                raise ConfigurationError(detail, option="ADF_DATABASE_URL") from exc
            raise StoreError(detail) from exc

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
