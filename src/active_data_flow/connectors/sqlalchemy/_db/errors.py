"""Driver errors: which are worth retrying, and what each becomes at the connector edge."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from active_data_flow.connectors.sqlalchemy._db._base import Role
from active_data_flow.errors import (
    ConnectorError,
    ConnectorTimeout,
    RecordRejected,
    SinkError,
    SourceError,
)

if TYPE_CHECKING:
    from active_data_flow.connectors.sqlalchemy._db.database import Database

__all__ = ["DatabaseUnavailable", "describe", "is_transient_db_error", "translate"]


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
# Connection failures without an error code (libpq reports the server's FATAL as text) that
# no retry cures: a database or role that does not exist, refused credentials.
_PERMANENT_WORDS = ("does not exist", "authentication failed", "no password supplied",
                    "pg_hba.conf")


def is_transient_db_error(exc: BaseException) -> bool:
    """Whether retrying the transaction that raised ``exc`` may succeed.

    Transient: an exhausted pool, an invalidated connection, deadlocks, serialisation
    failures, lock timeouts, disconnects and shutdowns (by SQLSTATE on PostgreSQL, error
    number on MySQL/MariaDB, message on SQLite). Never an integrity error: a constraint
    that said no will say no again; nor a database or user that does not exist, nor refused
    credentials.
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
        if any(word in text for word in _PERMANENT_WORDS):
            return False
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
