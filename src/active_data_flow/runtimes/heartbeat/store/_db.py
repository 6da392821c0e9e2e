"""The store's database handle: engine set-up per dialect, transactions, bounded retries.

* PostgreSQL and MariaDB run at READ COMMITTED: guarded updates then re-check their condition
  against the latest committed row, and InnoDB does not lock rows that a condition rejects
  (which would otherwise deadlock pausing against finishing).
* SQLite write transactions begin with ``BEGIN IMMEDIATE``: the write lock is taken up front,
  so concurrent heartbeats queue behind the busy timeout instead of failing to upgrade a read
  lock. WAL lets readers (the web pages) go on meanwhile.
* Every pooled connection is pinged on checkout (``pool_pre_ping``), so the first query after
  a database restart gets a fresh connection.
* Transient failures (lost connection, deadlock, lock timeout, SQLite busy) are retried with
  backoff for a bounded time; integrity errors never are.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from active_data_flow._sql import is_transient_db_error
from active_data_flow.errors import ConfigurationError
from active_data_flow.runtimes.heartbeat.store.records import StoreNotMigrated, StoreUnavailable

__all__ = ["DEFAULT_URL", "Database", "is_transient_db_error", "resolve_url", "same_database"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_URL = "sqlite:///active_data_flow.db"

# MySQL/MariaDB error numbers worth retrying: deadlock, lock wait timeout, server gone away,
# lost connection, cannot connect, connection killed, server shutting down, query interrupted.


def resolve_url(url: str | URL | None) -> URL:
    """The store URL: ``url``, else ``ADF_DATABASE_URL``, else SQLite in the working directory."""
    raw = url if url is not None else os.environ.get("ADF_DATABASE_URL") or DEFAULT_URL
    try:
        parsed = make_url(raw)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
        raise ConfigurationError(
            f"not a database URL: {str(raw)!r} ({exc})", option="ADF_DATABASE_URL"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigurationError(
            "the flow store needs a SQLite file (workers and threads share it), not an "
            f"in-memory database: {parsed.render_as_string(hide_password=True)!r}",
            option="ADF_DATABASE_URL",
        )
    return parsed


def _backend(url: URL) -> str:
    name = url.get_backend_name()
    return "mysql" if name == "mariadb" else name


def _server_key(url: URL) -> tuple[str, str, int | None, str | None]:
    backend = _backend(url)
    if backend == "sqlite":
        path = os.path.realpath(url.database or "")
        return backend, "", None, path
    host = (url.host or "localhost").lower()
    if host in ("localhost", "127.0.0.1", "::1"):
        host = "localhost"
    default_port = {"postgresql": 5432, "mysql": 3306}.get(backend)
    return backend, host, url.port or default_port, url.database


def same_database(a: URL, b: URL) -> bool:
    """Whether two URLs point at the same database (same server and database, or same file)."""
    return _server_key(a) == _server_key(b)


class Database:
    """One engine on the store's database, with transaction helpers.

    Args:
        url: the database URL (see :func:`resolve_url`).
        engine: use this engine instead of creating one (it is not disposed by :meth:`close`).
        retry_seconds: how long transient failures are retried before giving up.
    """

    def __init__(
        self, url: str | URL | None = None, *, engine: Engine | None = None,
        retry_seconds: float = 20.0,
    ) -> None:
        self.url = engine.url if engine is not None else resolve_url(url)
        self.backend = _backend(self.url)
        self.retry_seconds = retry_seconds
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else self._create_engine()
        if self.backend == "sqlite" and not self._owns_engine:
            _install_sqlite_hooks(self.engine)
        self._lock = threading.Lock()

    @property
    def display_url(self) -> str:
        """The URL with its password hidden."""
        return self.url.render_as_string(hide_password=True)

    def _create_engine(self) -> Engine:
        if self.backend == "sqlite":
            engine = sa.create_engine(
                self.url, pool_pre_ping=True,
                connect_args={"check_same_thread": False, "timeout": 30},
            )
            _install_sqlite_hooks(engine)
            return engine
        return sa.create_engine(
            self.url, pool_pre_ping=True, isolation_level="READ COMMITTED",
            pool_size=5, max_overflow=20, pool_recycle=3600,
        )

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on success."""
        with self.engine.connect() as conn:
            conn.execution_options(adf_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def transact(self, work: Callable[[Connection], T], *, write: bool = True) -> T:
        """Run ``work(conn)`` in a transaction, retrying it whole on transient failures.

        ``work`` must be safe to repeat: the store's are guarded updates.

        Raises:
            StoreUnavailable: transient failures went on for ``retry_seconds``.
        """
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.write() if write else self.read() as conn:
                    return work(conn)
            except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
                if _missing_table(exc):
                    raise StoreNotMigrated(
                        f"the flow store's tables are missing or outdated in {self.display_url}"
                        f" ({_first_line(exc)}); run `adf db upgrade` (FlowStore.upgrade())"
                    ) from exc
                if not is_transient_db_error(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(
                        f"flow store {self.display_url} unavailable after {attempt} "
                        f"attempt(s): {type(exc).__name__}: {_first_line(exc)}"
                    ) from exc
                log.info(
                    "flow store: transient %s, retrying in %.2fs: %s",
                    type(exc).__name__, delay, _first_line(exc),
                    extra={"action": "store_retry"},
                )
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)

    def close(self) -> None:
        """Dispose of the engine's connections (only when this object created the engine)."""
        if self._owns_engine:
            self.engine.dispose()


def _missing_table(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "adf_" in text and any(w in text for w in (
        "no such table", "does not exist", "doesn't exist", "no such column", "unknown column"))


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _install_sqlite_hooks(engine: Engine) -> None:
    """Let this engine, not pysqlite, decide where transactions begin, and tune the file."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # autocommit at the driver; we emit BEGIN
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout = 30000")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("adf_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
