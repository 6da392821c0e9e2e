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

from active_data_flow._sql import is_transient_db_error
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
