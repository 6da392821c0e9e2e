"""Driver errors: which are worth retrying, and what each becomes at the connector edge.

Transient errors (a connection refused, reset, killed or timed out; a deadlock, a
serialisation failure, a lock wait timeout; a busy SQLite file; an exhausted pool) become
:class:`ConnectorTimeout`, which runtimes may retry; a sink's integrity errors become
:class:`RecordRejected`; anything else a :class:`SourceError` or :class:`SinkError`. The
caller raises the result ``from`` the driver's exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from active_data_flow.errors import (
    ConnectorError,
    ConnectorTimeout,
    RecordRejected,
    SinkError,
    SourceError,
)

if TYPE_CHECKING:
    from active_data_flow.connectors.sqlalchemy._engines import Database

__all__ = ["Role", "describe", "is_transient_db_error", "translate"]

Role = Literal["source", "sink"]

# Driver error codes that mean "roll back and try again": deadlocks, serialisation
# failures and lock wait timeouts.
_PG_RETRY_CODES = {"40001", "40P01", "55P03"}
_MYSQL_RETRY_CODES = {1205, 1213, 2006, 2013}


def is_transient_db_error(exc: BaseException) -> bool:
    """Whether retrying the transaction that raised ``exc`` may succeed."""
    if isinstance(exc, sa.exc.TimeoutError):  # no free connection in the pool
        return True
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code in _PG_RETRY_CODES:
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_RETRY_CODES:
        return True
    text = str(orig).lower()
    return "database is locked" in text or "database table is locked" in text


def translate(
    exc: BaseException,
    db: Database,
    role: Role,
    action: str,
    *,
    record: Any = None,
    key: Any = None,
) -> ConnectorError:
    """The ActiveDataFlow error for a driver error; the caller raises it ``from exc``.

    Transient errors become :class:`ConnectorTimeout`; integrity errors of a sink become
    :class:`RecordRejected`; anything else a :class:`SourceError` or :class:`SinkError`.
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


def describe(exc: BaseException) -> str:
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        text = f"{type(exc.orig).__name__}: {exc.orig}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:500]
