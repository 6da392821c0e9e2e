"""SQL helpers shared by the SQLAlchemy layers (the connectors and the flow store).

Not part of the core: it imports SQLAlchemy, and only modules behind the ``sqlalchemy`` or
``heartbeat`` extras import it.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["is_transient_db_error"]

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
