"""Database: an engine with its name, retry policy and transaction helpers."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, RootTransaction

from active_data_flow.connectors.sqlalchemy._db._base import Role, T, log
from active_data_flow.connectors.sqlalchemy._db.errors import (
    DatabaseUnavailable,
    _first_line,
    _missing_table,
    describe,
    is_transient_db_error,
    translate,
)
from active_data_flow.connectors.sqlalchemy._db.urls import _backend
from active_data_flow.errors import (
    ConfigurationError,
    ConnectorTimeout,
)
from active_data_flow.masking import mask_text, mask_url

__all__ = ["Database", "RetryPolicy", "begin_immediate", "release"]


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

    def wait_reachable(
        self, timeout_s: float, *, on_retry: Callable[[str, float], None] | None = None,
        option: str = "database", fix: str = "",
    ) -> None:
        """Connect once, retrying transient failures (refused, reset, timed out) for up to
        ``timeout_s`` seconds; ``on_retry(reason, pause)`` runs before each pause (to say
        so). A failure no retry cures (a database or user that does not exist, refused
        credentials, a missing SQLite folder) is not retried; ``fix`` ends its message
        (where to change the setting).

        Raises:
            ConfigurationError: a permanent failure; ``option`` names the setting to fix.
            unavailable_error: still unreachable after ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        pause = 0.25
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.engine.connect():
                    return
            except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
                detail = self.mask(describe(exc))
                if not is_transient_db_error(exc):
                    raise ConfigurationError(f"cannot use {self.label}: {detail}{fix}",
                                             option=option) from exc
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.unavailable_error(
                        f"{self.label} unreachable for {timeout_s:g}s ({attempt} attempt(s)): "
                        f"{detail}") from exc
                wait = min(pause, left)
                if on_retry is not None:
                    on_retry(self.mask(_first_line(exc)), wait)
                time.sleep(wait)
                pause = min(pause * 2, 2.0)

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
