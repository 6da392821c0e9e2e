"""The one database layer: engines, the engine cache, retries, transactions, SQLite set-up.

The SQLAlchemy connectors and the flow store make their engines and run their transactions
here. What it owns:

* **Transient errors** (:func:`is_transient_db_error`): which driver errors are worth
  retrying, and what a connector reports instead of a driver error (:func:`translate`).
* **Engines** (:func:`make_engine`, :func:`engine_for`): made per *profile*. ``"connector"``
  engines keep SQLite's ``synchronous=FULL``; ``"store"`` engines add what the flow store's
  claims need (``READ COMMITTED`` on servers, foreign keys and ``synchronous=NORMAL`` on
  SQLite). Every engine pings pooled connections on checkout (``pool_pre_ping``), so the
  first query after a database restart gets a fresh connection, and a forked process drops
  the pools it inherited. :func:`engine_for` keeps one engine per (URL, profile) and process.
* **SQLite**: files are switched to write-ahead logging (readers no longer block the writer,
  and a commit costs one fsync instead of four); transactions begin explicitly (the driver
  is put in autocommit and this layer emits ``BEGIN``), so savepoints work and a write
  transaction can take the write lock up front with ``BEGIN IMMEDIATE``
  (:meth:`Database.write`, :func:`begin_immediate`): concurrent writers queue behind the
  busy timeout instead of failing to upgrade a read lock ("database is locked").
* **Databases** (:class:`Database`): an engine with its name, retry policy and transaction
  helpers; :meth:`Database.transact` retries a whole transaction for a bounded time.
* **Named databases** (:func:`register_database`) for the connectors' ``database`` option.
* **Masking**: every message and log line that names a database hides its password
  (through :mod:`active_data_flow.masking`).

Why connector engines stay at ``synchronous=FULL`` on SQLite: a sink's commit is the
durability point of a batch, and a flow's cursor may be committed in *another* database
right after it. With ``NORMAL`` in WAL mode a power loss can undo the last commits, and a
cursor that survived in the other database would then cover rows that are gone. The flow
store can afford ``NORMAL``: what a power loss takes from it is its last commits, so a
cursor goes back and a batch is read again (at least once), never skipped.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, RootTransaction

from active_data_flow.errors import (
    ConfigurationError,
    ConnectorError,
    ConnectorTimeout,
    RecordRejected,
    SinkError,
    SourceError,
)
from active_data_flow.masking import mask_text, mask_url

__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_URL",
    "Database",
    "DatabaseUnavailable",
    "Profile",
    "RetryPolicy",
    "Role",
    "begin_immediate",
    "cached_database",
    "check_reference",
    "configure_sqlite",
    "describe",
    "dispose_engines",
    "engine_for",
    "is_transient_db_error",
    "make_engine",
    "register_database",
    "registered_databases",
    "registered_name",
    "registered_name_of_url",
    "release",
    "resolve_database",
    "resolve_url",
    "same_database",
    "translate",
    "unregister_database",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

Role = Literal["source", "sink"]
Profile = Literal["connector", "store"]

DEFAULT_NAME = "default"
DEFAULT_URL = "sqlite:///active_data_flow.db"


class DatabaseUnavailable(ConnectorTimeout):
    """The database kept failing transiently (unreachable, locked, deadlocked) for the whole
    time allowed for retries."""


# -- transient errors -----------------------------------------------------------------------
# MySQL/MariaDB error numbers worth a retry: lock wait timeout, deadlock, server gone away,
# lost connection, cannot connect, connection killed, query interrupted, shutdown.
_MYSQL_TRANSIENT = {1213, 1205, 2006, 2013, 2003, 2002, 1927, 1053, 1317, 4031}
# PostgreSQL SQLSTATE classes: connection exception, transaction rollback (serialisation,
# deadlock), insufficient resources, operator intervention (admin shutdown, cannot connect).
_PG_TRANSIENT_CLASSES = {"08", "40", "53", "57"}
_PG_LOCK_NOT_AVAILABLE = "55P03"
_TRANSIENT_WORDS = ("locked", "busy", "connection", "server closed", "terminat", "timeout",
                    "timed out")


def is_transient_db_error(exc: BaseException) -> bool:
    """Whether retrying the transaction that raised ``exc`` may succeed.

    Transient: an exhausted pool, an invalidated connection, deadlocks, serialisation
    failures, lock timeouts, disconnects and shutdowns (by SQLSTATE on PostgreSQL, error
    number on MySQL/MariaDB, message on SQLite). Never an integrity error: a constraint
    that said no will say no again.
    """
    if isinstance(exc, sa.exc.IntegrityError):
        return False
    if isinstance(exc, sa.exc.TimeoutError):  # no free connection in the pool
        return True
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate[:2] in _PG_TRANSIENT_CLASSES or sqlstate == _PG_LOCK_NOT_AVAILABLE
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0] in _MYSQL_TRANSIENT
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        text = str(orig).lower()
        return any(word in text for word in _TRANSIENT_WORDS)
    return False


def describe(exc: BaseException) -> str:
    """``Type: message`` of the driver's error (else of ``exc``) on one line, at most 500
    characters. Not masked: pass it through :meth:`Database.mask`."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        text = f"{type(exc.orig).__name__}: {exc.orig}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:500]


def translate(
    exc: BaseException,
    db: Database,
    role: Role,
    action: str,
    *,
    record: Any = None,
    key: Any = None,
) -> ConnectorError:
    """The connector error for a driver error; the caller raises it ``from exc``.

    Transient errors become :class:`ConnectorTimeout` (runtimes may retry them); integrity
    errors of a sink become :class:`RecordRejected`; anything else a :class:`SourceError`
    or :class:`SinkError`. The message names the database with its password masked.
    """
    if isinstance(exc, ConnectorError):
        return exc
    detail = db.mask(describe(exc))
    where = f"{role} ({db.label})"
    if is_transient_db_error(exc):
        return ConnectorTimeout(f"{where}: {action} failed, transiently: {detail}")
    if role == "sink" and isinstance(exc, sa.exc.IntegrityError):
        return RecordRejected(f"{where}: {action} violates a constraint: {detail}",
                              record=record, key=key)
    kind = SourceError if role == "source" else SinkError
    return kind(f"{where}: {action} failed: {detail}")


def _missing_table(exc: BaseException) -> bool:
    """Whether ``exc`` says a table or column of the flow store (``adf_...``) is missing."""
    text = str(getattr(exc, "orig", exc)).lower()
    return "adf_" in text and any(w in text for w in (
        "no such table", "does not exist", "doesn't exist", "no such column", "unknown column"))


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- retries and transactions -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry transient database errors.

    Attributes:
        attempts: tries in all (1 = no retry).
        backoff_s: the first pause; each further pause doubles, with +-25% jitter.
        max_backoff_s: the longest pause.
    """

    attempts: int = 3
    backoff_s: float = 0.2
    max_backoff_s: float = 5.0

    def pause(self, attempt: int) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``attempt`` counts from 1)."""
        base = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1))
        return float(base * random.uniform(0.75, 1.25))


# Transactions retried by transact() mostly wait for each other (a busy SQLite file, a row
# lock, a deadlock victim): short pauses let them through sooner than RetryPolicy's.
_TRANSACT_FIRST_PAUSE_S = 0.05
_TRANSACT_MAX_PAUSE_S = 1.0


class Database:
    """One engine, with the name it is known by, its retry policy and transaction helpers.

    Args:
        engine: the engine.
        name: the name it is known by (a registered name, or a label such as
            ``"flow store"``); it appears in messages.
        retry: how :meth:`connect` and :meth:`retrying` retry transient errors.
        owned: the engine was made here, so :meth:`close` may dispose of it.
        retry_seconds: how long :meth:`transact` retries a transaction.
        unavailable_error: raised by :meth:`transact` when transient failures outlast
            ``retry_seconds``.
        schema_error: raised by :meth:`transact` when a table or column of the flow store
            is missing.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        owned: bool = False,
        retry_seconds: float = 20.0,
        unavailable_error: type[Exception] = DatabaseUnavailable,
        schema_error: type[Exception] = ConfigurationError,
    ) -> None:
        self.engine = engine
        self.name = name
        self.retry = retry if retry is not None else RetryPolicy()
        self.owned = owned
        self.retry_seconds = retry_seconds
        self.unavailable_error = unavailable_error
        self.schema_error = schema_error
        # The options engine_for() made the engine with: a later call with others differs.
        self.engine_options: dict[str, Any] = {}

    def view(self, **changes: Any) -> Database:
        """A :class:`Database` on the same engine with some constructor arguments changed
        (``name``, ``retry``, ``retry_seconds``, the error classes)."""
        args: dict[str, Any] = {
            "name": self.name, "retry": self.retry, "owned": self.owned,
            "retry_seconds": self.retry_seconds, "unavailable_error": self.unavailable_error,
            "schema_error": self.schema_error, **changes,
        }
        db = Database(self.engine, **args)
        db.engine_options = self.engine_options
        return db

    def __repr__(self) -> str:
        return f"<Database {self.label}>"

    # -- naming it, safely --------------------------------------------------------------
    @property
    def url(self) -> URL:
        """The engine's URL (password included: show :attr:`display_url` instead)."""
        return self.engine.url

    @property
    def backend(self) -> str:
        """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB counts as MySQL)."""
        return _backend(self.engine.url)

    @property
    def dialect(self) -> str:
        """The dialect's name: ``sqlite``, ``postgresql``, ``mysql``..."""
        return self.engine.dialect.name

    @property
    def display_url(self) -> str:
        """The URL with its password masked."""
        return mask_url(self.engine.url)

    @property
    def label(self) -> str:
        """``database 'name' (url with the password masked)`` for messages and logs."""
        url = self.display_url
        return f"database {self.name!r} ({url})" if self.name else f"database {url}"

    def mask(self, text: str) -> str:
        """``text`` with URL passwords and this database's password replaced by ``***``.

        A driver may quote the password anywhere in its messages, so besides the masking
        rule the password itself is replaced, as given and as it appears in a rendered URL.
        """
        text = mask_text(text)
        password = self.engine.url.password
        if password:
            for form in {str(password), quote(str(password), safe=" +")}:
                text = text.replace(form, "***")
        return text

    # -- connecting and retrying (connectors) -----------------------------------------------
    def connect(self, role: Role) -> Connection:
        """A connection from the pool, retrying transient failures per :attr:`retry`.

        This is the connectivity check of a connector's first read or write.

        Raises:
            ConnectorTimeout: the database stayed unreachable; the message names it.
        """
        try:
            return self.retrying(role, "connecting", self.engine.connect, connect_phase=True)
        except ConnectorTimeout as exc:
            cause = exc.__cause__
            detail = self.mask(describe(cause)) if cause is not None else str(exc)
            raise ConnectorTimeout(
                f"{role}: cannot connect to {self.label} after {self.retry.attempts} "
                f"attempt(s): {detail}"
            ) from cause

    def retrying(
        self,
        role: Role,
        action: str,
        fn: Callable[[], T],
        *,
        connect_phase: bool = False,
        on_retry: Callable[[], None] | None = None,
    ) -> T:
        """Call ``fn``, retrying transient database errors per :attr:`retry`.

        While connecting (``connect_phase``) any driver error counts as transient: a refused
        or reset connection is an ``OperationalError`` that is not yet "invalidated".
        ``on_retry`` runs before each pause (to drop a broken connection, say).

        Raises:
            ConnectorTimeout: still failing after the last attempt.
            ConnectorError: a non-transient failure (see :func:`translate`).
        """
        attempt = 1
        while True:
            try:
                return fn()
            except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
                if not (connect_phase or is_transient_db_error(exc)):
                    raise translate(exc, self, role, action) from exc
                if attempt >= self.retry.attempts:
                    raise ConnectorTimeout(
                        f"{role} ({self.label}): {action} failed after {attempt} attempt(s): "
                        f"{self.mask(describe(exc))}"
                    ) from exc
                pause = self.retry.pause(attempt)
                log.warning(
                    "%s (%s): %s failed (%s); retrying in %.2fs (attempt %d of %d)",
                    role, self.label, action, self.mask(describe(exc)), pause, attempt + 1,
                    self.retry.attempts, extra={"action": "db_retry", "database": self.name},
                )
                if on_retry is not None:
                    on_retry()
                time.sleep(pause)
                attempt += 1

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on success."""
        with self.engine.connect() as conn, begin_immediate(conn):
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (it ends, rolled back or committed, when the block does)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def transact(self, work: Callable[[Connection], T], *, write: bool = True) -> T:
        """Run ``work(conn)`` in a transaction, retrying it whole on transient failures.

        ``work`` may run several times, each time in a fresh transaction, so it must be
        safe to repeat (the flow store's are guarded updates). Pauses start at 50 ms and
        double up to a second, with jitter.

        Raises:
            unavailable_error: transient failures went on for ``retry_seconds``.
            schema_error: a table or column of the flow store (``adf_...``) is missing.
        """
        deadline = time.monotonic() + self.retry_seconds
        pause = _TRANSACT_FIRST_PAUSE_S
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.write() if write else self.read() as conn:
                    return work(conn)
            except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
                if not self._retryable(exc, attempt, time.monotonic() + pause > deadline):
                    raise
                log.info(
                    "%s: transient %s, retrying the transaction in %.2fs: %s", self.label,
                    type(exc).__name__, pause, self.mask(_first_line(exc)),
                    extra={"action": "db_retry", "database": self.name},
                )
                time.sleep(pause * random.uniform(0.5, 1.5))
                pause = min(pause * 2, _TRANSACT_MAX_PAUSE_S)

    def _retryable(self, exc: BaseException, attempt: int, out_of_time: bool) -> bool:
        """Whether :meth:`transact` may retry after ``exc``; raises its own errors instead."""
        if _missing_table(exc):
            raise self.schema_error(
                f"the flow store's tables are missing or outdated in {self.label} "
                f"({self.mask(_first_line(exc))}); run `adf db upgrade` (FlowStore.upgrade())"
            ) from exc
        if not is_transient_db_error(exc):
            return False
        if out_of_time:
            raise self.unavailable_error(
                f"{self.label} unavailable after {attempt} attempt(s): "
                f"{type(exc).__name__}: {self.mask(_first_line(exc))}"
            ) from exc
        return True

    def close(self) -> None:
        """Close the engine's pooled connections, if the engine was made here (:attr:`owned`).

        The engine stays usable: it opens new connections when asked.
        """
        if self.owned:
            self.engine.dispose()


def begin_immediate(conn: Connection) -> RootTransaction:
    """Begin a write transaction on ``conn``; on SQLite, take the write lock now.

    On SQLite this is ``BEGIN IMMEDIATE``: a writer that must wait does so at the start,
    behind the busy timeout, instead of failing later when it upgrades a read lock. Elsewhere
    it is an ordinary ``BEGIN``. The connection stays marked as a writer: later transactions
    it begins are immediate too. Use the result as ``conn.begin()``'s.
    """
    if conn.dialect.name != "sqlite":
        return conn.begin()
    conn.execution_options(adf_write=True)  # read by _on_sqlite_begin
    trans = conn.begin()
    raw = conn.connection.dbapi_connection
    if raw is not None and not raw.in_transaction:
        # An engine not set up here (no begin hook): pysqlite would begin lazily, at the first
        # write, and let the RELEASE of a first savepoint commit everything. Begin now.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    return trans


def release(conn: Connection | None) -> None:
    """Return ``conn`` to its pool, rolling back; a broken connection is discarded."""
    if conn is None or conn.closed:
        return
    try:
        if conn.in_transaction():
            conn.rollback()
        conn.close()
    except sa.exc.DBAPIError:
        try:
            conn.invalidate()
            conn.close()
        except Exception:  # already gone; nothing more to release
            log.debug("discarding a broken connection failed", exc_info=True)


# -- URLs ----------------------------------------------------------------------------------
def resolve_url(
    url: str | URL | None,
    *,
    env: str = "ADF_DATABASE_URL",
    default: str = DEFAULT_URL,
) -> URL:
    """The URL to use: ``url``, else the environment variable ``env``, else ``default``.

    Raises:
        ConfigurationError: not a SQLAlchemy URL, or a ``postgres://`` URL (SQLAlchemy
            knows PostgreSQL as ``postgresql://``); the error names ``env`` as the option.
    """
    raw = url if url is not None else os.environ.get(env) or default
    try:
        parsed = sa.make_url(raw)
    except Exception as exc:  # SQLAlchemy's ArgumentError says little, and may echo a password
        raise ConfigurationError(
            f"{env}: not a database URL: {mask_url(str(raw))!r} ({mask_text(str(exc))})",
            option=env,
        ) from None
    _check_backend(parsed, env)
    return parsed


def _check_backend(url: URL, option: str) -> None:
    if url.get_backend_name() == "postgres":
        raise ConfigurationError(
            f"{option}: {mask_url(url)!r}: SQLAlchemy names PostgreSQL 'postgresql', not "
            "'postgres': write postgresql:// (or postgresql+psycopg://)",
            option=option,
        )


def _backend(url: URL) -> str:
    name = url.get_backend_name()
    return "mysql" if name == "mariadb" else name


def _server_key(url: URL) -> tuple[str, str, int | None, str | None]:
    backend = _backend(url)
    if backend == "sqlite":
        return backend, "", None, os.path.realpath(url.database or "")
    host = (url.host or "localhost").lower()
    if host in ("localhost", "127.0.0.1", "::1"):
        host = "localhost"
    default_port = {"postgresql": 5432, "mysql": 3306}.get(backend)
    return backend, host, url.port or default_port, url.database


def same_database(a: URL, b: URL) -> bool:
    """Whether two URLs point at the same database (same server and database, or same file),
    whatever their drivers, users or options."""
    return _server_key(a) == _server_key(b)


def _is_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:") or (
        url.query.get("mode") == "memory")


# -- making engines ---------------------------------------------------------------------------
_STORE_SERVER_OPTIONS: dict[str, Any] = {
    # Guarded updates re-check their condition against the latest committed row, and InnoDB
    # does not lock rows a condition rejects (which would deadlock pausing against finishing).
    "isolation_level": "READ COMMITTED",
    "pool_size": 5, "max_overflow": 20, "pool_recycle": 3600,
}
_BUSY_TIMEOUT_S: dict[str, float] = {"connector": 5.0, "store": 30.0}  # connector: pysqlite's
_SQLITE_PRAGMAS: dict[str, tuple[str, ...]] = {
    "connector": ("PRAGMA synchronous = FULL",),  # see the module docs
    "store": ("PRAGMA foreign_keys = ON", "PRAGMA synchronous = NORMAL"),
}

_made: weakref.WeakSet[Engine] = weakref.WeakSet()  # engines made here, for the fork handler
_configured: weakref.WeakSet[Engine] = weakref.WeakSet()  # SQLite engines with our hooks


def make_engine(
    url: str | URL, *, profile: Profile = "connector", sqlite_wal: bool = True,
    **engine_options: Any,
) -> Engine:
    """A new engine for ``url``, set up for ``profile`` (prefer the cached :func:`engine_for`).

    Args:
        url: a SQLAlchemy URL.
        profile: ``"connector"`` or ``"store"`` (see the module docs).
        sqlite_wal: switch a SQLite file to write-ahead logging. The mode is a property of
            the file and stays with it; ``False`` keeps the file's mode (network file
            systems, where WAL does not work).
        **engine_options: passed to :func:`sqlalchemy.create_engine`; they override the
            profile's (``pool_size``, ``connect_args``...).

    Raises:
        ConfigurationError: a bad URL, an unknown driver, a bad option (masked message).
    """
    parsed = _parse(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    options = _sqlite_options(parsed, profile, engine_options) if sqlite else {
        "pool_pre_ping": True,
        **(_STORE_SERVER_OPTIONS if profile == "store" else {}),
        **engine_options,
    }
    try:
        engine = sa.create_engine(parsed, **options)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError, TypeError) as exc:
        raise ConfigurationError(
            f"cannot create an engine for {mask_url(parsed)}: {mask_text(str(exc))}",
            option="database",
        ) from exc
    if sqlite:
        timeout = options.get("connect_args", {}).get("timeout", _BUSY_TIMEOUT_S[profile])
        configure_sqlite(engine, profile=profile, wal=sqlite_wal, busy_timeout_s=timeout)
    _made.add(engine)
    return engine


def _parse(url: str | URL) -> URL:
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"not a valid SQLAlchemy URL: {mask_url(str(url))!r} ({mask_text(str(exc))})",
            option="database",
        ) from None
    _check_backend(parsed, "database")
    return parsed


def _sqlite_options(url: URL, profile: Profile, options: dict[str, Any]) -> dict[str, Any]:
    connect_args = {
        # Pooled connections move between threads (workers, the web server's pool).
        "check_same_thread": False,
        "timeout": _BUSY_TIMEOUT_S[profile],
        **options.get("connect_args", {}),
    }
    if _is_memory(url):
        # Each in-memory connection is a database of its own: keep SQLAlchemy's pool (one
        # connection per thread), so a thread always sees the same database.
        connect_args.pop("check_same_thread")
    return {"pool_pre_ping": True, **options, "connect_args": connect_args}


def configure_sqlite(
    engine: Engine, *, profile: Profile = "connector", wal: bool = True,
    busy_timeout_s: float | None = None,
) -> None:
    """Set up a SQLite engine as this layer's own are (at most once per engine).

    The driver is put in autocommit and transactions begin explicitly (``BEGIN``, or
    ``BEGIN IMMEDIATE`` on a connection :func:`begin_immediate` marked), so savepoints work
    and writers queue up front; each new connection gets the busy timeout, the profile's
    pragmas and, for a file, write-ahead logging. For engines made elsewhere (the flow store
    accepts one); connectors leave engines they are given alone.
    """
    if engine.dialect.name != "sqlite" or engine in _configured:
        return
    _configured.add(engine)
    busy_ms = int(1000 * (busy_timeout_s if busy_timeout_s is not None
                          else _BUSY_TIMEOUT_S[profile]))
    pragmas = (f"PRAGMA busy_timeout = {busy_ms}", *_SQLITE_PRAGMAS[profile])
    use_wal = wal and not _is_memory(engine.url)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # autocommit at the driver; we emit BEGIN
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
            if use_wal:
                _use_wal(cursor)
        finally:
            cursor.close()

    sa.event.listen(engine, "connect", on_connect)
    sa.event.listen(engine, "begin", _on_sqlite_begin)


def _use_wal(cursor: Any) -> None:
    # Idempotent, and a no-op (the old mode is kept) where WAL is impossible. A file another
    # connection holds may refuse the switch for now: connecting must not fail for that.
    try:
        cursor.execute("PRAGMA journal_mode = WAL")
    except Exception as exc:
        log.debug("could not switch a SQLite file to WAL (%s); keeping its journal mode", exc)


def _on_sqlite_begin(conn: Connection) -> None:
    options = conn.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return  # SQLAlchemy "begins" autocommit connections too; SQLite must not
    raw = conn.connection.dbapi_connection
    if raw is not None and raw.isolation_level is not None:
        # Returning an AUTOCOMMIT connection to the pool resets pysqlite to its own
        # transaction handling; take it back (nothing is open at a begin).
        raw.isolation_level = None
    conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("adf_write") else "BEGIN")


# -- the engine cache and the named databases -------------------------------------------------
_lock = threading.RLock()
_cache: dict[tuple[str, str], Database] = {}  # (url, profile) -> the engine made for it
_named: dict[str, Database] = {}


def engine_for(
    url: str | URL, *, profile: Profile = "connector", **engine_options: Any
) -> Database:
    """The process's one :class:`Database` (and engine) for ``url`` and ``profile``.

    Made at the first call, with ``engine_options`` (see :func:`make_engine`, which also
    takes ``sqlite_wal``), and disposed by :func:`dispose_engines`. A later call without
    options gets it as it is; one with other options replaces it (its idle connections are
    closed; whoever holds it keeps a working engine), unless a registered database uses it.

    Raises:
        ConfigurationError: a bad URL or option, or other options for an engine that a
            registered database uses.
    """
    key = (_parse(url).render_as_string(hide_password=False), profile)
    with _lock:
        cached = _cache.get(key)
        if cached is not None and (not engine_options
                                   or engine_options == cached.engine_options):
            return cached
        if cached is not None:
            _check_unshared(cached, engine_options)
        db = Database(make_engine(key[0], profile=profile, **engine_options), owned=True)
        db.engine_options = dict(engine_options)
        _cache[key] = db
    if cached is not None:
        cached.engine.dispose()
    return db


def _check_unshared(cached: Database, options: dict[str, Any]) -> None:
    users = sorted(n for n, db in _named.items() if db.engine is cached.engine)
    if users:
        raise ConfigurationError(
            f"{cached.label} is open with engine options {sorted(cached.engine_options)}, and "
            f"registered database(s) {', '.join(map(repr, users))} use it; other options "
            f"({sorted(options)}) need another registration (unregister those first)",
            option="database",
        )


def cached_database(url: str | URL, *, profile: Profile = "connector") -> Database | None:
    """The cached :class:`Database` of ``url`` and ``profile``, if one was made."""
    key = (_parse(url).render_as_string(hide_password=False), profile)
    with _lock:
        return _cache.get(key)


def register_database(
    name: str,
    url_or_engine: str | URL | Engine,
    *,
    retries: int = 3,
    backoff: float = 0.2,
    sqlite_wal: bool = True,
    **engine_options: Any,
) -> Engine:
    """Make a database known by name to the SQLAlchemy connectors.

    Connectors name it with ``database="reporting"``; specs from the flow store or the web
    API may name only registered databases, never URLs. The database named ``"default"``
    serves connectors that name none (and whose model was not registered with one).

    Args:
        name: the name connectors use.
        url_or_engine: a SQLAlchemy URL (its engine is the one :func:`engine_for` keeps for
            the URL, shared with connectors that name the URL, and disposed by
            :func:`dispose_engines`) or an engine the application owns.
        retries: tries in all for transient errors (connection refused, reset or timed out,
            deadlocks); 1 disables retrying.
        backoff: the first pause between tries in seconds; pauses double after each try.
        sqlite_wal: switch a SQLite file to write-ahead logging (see below); only with a URL.
        **engine_options: passed to :func:`sqlalchemy.create_engine` (``pool_size``,
            ``pool_timeout``, ``connect_args``...); only with a URL.

    A SQLite file opened from a URL is switched to write-ahead logging (``journal_mode=WAL``,
    as Rails does since 7.1): readers no longer block writers, and a commit costs one fsync
    instead of four while staying just as durable (``synchronous`` stays FULL). The mode is
    a property of the file and stays with it; pass ``sqlite_wal=False`` to keep the file's
    journal mode, e.g. on a network file system, where WAL does not work.

    Returns:
        The engine.

    Raises:
        ConfigurationError: a bad name, URL or option.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"database name must be a non-empty string, got {name!r}",
                                 option="database")
    if retries < 1 or backoff < 0:
        raise ConfigurationError("retries must be >= 1 and backoff >= 0", option="retries")
    policy = RetryPolicy(attempts=retries, backoff_s=backoff)
    if isinstance(url_or_engine, Engine):
        if engine_options:
            raise ConfigurationError(
                f"database {name!r}: engine options {sorted(engine_options)} apply only when "
                "registering a URL; configure the engine you pass yourself",
                option="database",
            )
        db = Database(url_or_engine, name=name, retry=policy)
        with _lock:
            previous = _named.pop(name, None)
            _named[name] = db
    else:
        if not sqlite_wal:
            engine_options["sqlite_wal"] = False
        with _lock:
            previous = _named.pop(name, None)  # first: its engine may be re-made with options
            try:
                db = engine_for(url_or_engine, **engine_options).view(name=name, retry=policy)
            except BaseException:
                if previous is not None:
                    _named[name] = previous
                raise
            _named[name] = db
    if previous is not None:
        _close_unless_shared(previous, keep=db.engine)
    return db.engine


def _close_unless_shared(db: Database, *, keep: Engine | None = None) -> None:
    """Close the idle connections of an engine made here that no registration uses now."""
    with _lock:
        shared = db.engine is keep or any(d.engine is db.engine for d in _named.values())
    if db.owned and not shared:
        db.engine.dispose()


def registered_databases() -> list[str]:
    """The names registered with :func:`register_database`."""
    with _lock:
        return sorted(_named)


def registered_name(engine: Engine) -> str | None:
    """The registered name of ``engine``, if it was registered."""
    with _lock:
        for name, db in _named.items():
            if db.engine is engine:
                return name
    return None


def registered_name_of_url(url: str) -> str | None:
    """The registered name of the database at ``url``, if one is registered."""
    try:
        wanted = sa.make_url(url)
    except sa.exc.ArgumentError:
        return None
    with _lock:
        for name, db in _named.items():
            if db.engine.url == wanted:
                return name
    return None


def unregister_database(name: str) -> None:
    """Forget a registered database (closing its engine's connections if it was made here
    and no other registration uses it)."""
    with _lock:
        db = _named.pop(name, None)
    if db is not None:
        _close_unless_shared(db)


def dispose_engines() -> None:
    """Close the pooled connections of every engine made here (at shutdown, in tests).

    The cache forgets the engines no registered database uses; the engines themselves stay
    usable by whoever holds them.
    """
    with _lock:
        held = {id(db.engine) for db in _named.values()}
        owned = [db for db in [*_named.values(), *_cache.values()] if db.owned]
        for key in [k for k, db in _cache.items() if id(db.engine) not in held]:
            del _cache[key]
    for engine in {id(db.engine): db.engine for db in owned}.values():
        engine.dispose()


def _after_fork_in_child() -> None:
    # A forked worker must not share its parent's sockets: drop the pools without closing
    # (closing would end the parent's sessions); the child opens its own connections.
    for engine in list(_made):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- the connectors' ``database`` option ------------------------------------------------------
def check_reference(value: str | Engine | None, *, trusted: bool, what: str) -> None:
    """Validate a ``database`` option at construction, without connecting.

    Outside trusted code only registered names are accepted; a URL is parsed (so a typo
    fails at construction) but its engine is created only at first use. Messages mask
    passwords.

    Raises:
        ConfigurationError: naming the option ``database``.
    """
    if value is None or isinstance(value, Engine):
        return
    if not value.strip():
        raise ConfigurationError(f"{what}: option 'database' is empty", option="database")
    if not trusted:
        if value not in registered_databases():
            known = ", ".join(registered_databases()) or "none are registered"
            raise ConfigurationError(
                f"{what}: option 'database': {mask_url(value)!r} is not a registered "
                "database; specs from the flow store or the web API may only name registered "
                f"databases (registered: {known})",
                option="database",
            )
        return
    if "://" in value:
        try:
            _parse(value)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{what}: option 'database': {exc}",
                                     option="database") from None


def resolve_database(ref: str | Engine | None, default_name: str | None, what: str) -> Database:
    """The :class:`Database` a connector uses: its option, its model's, else ``"default"``.

    Raises:
        ConfigurationError: no database given and none registered as the default, an
            unknown name, or a bad URL.
    """
    if isinstance(ref, Engine):
        return _registered_engine(ref) or Database(ref)
    if ref is None:
        ref = default_name or DEFAULT_NAME
        if ref not in registered_databases():
            raise ConfigurationError(
                f"{what}: no database given; set the `database` option (a registered name or "
                f"a URL) or call register_database({ref!r}, url) "
                f"(registered: {', '.join(registered_databases()) or 'none'})",
                option="database",
            )
    with _lock:
        if ref in _named:
            return _named[ref]
    if "://" not in ref:
        known = ", ".join(registered_databases()) or "none"
        raise ConfigurationError(
            f"{what}: database {ref!r} is not registered (registered: {known}) and is not "
            "a URL", option="database",
        )
    return engine_for(ref)


def _registered_engine(engine: Engine) -> Database | None:
    with _lock:
        return next((db for db in _named.values() if db.engine is engine), None)
