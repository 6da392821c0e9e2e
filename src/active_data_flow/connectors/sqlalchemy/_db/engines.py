"""Making engines per profile, and setting SQLite up."""

from __future__ import annotations

import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from active_data_flow.connectors.sqlalchemy._db._base import Profile, log
from active_data_flow.connectors.sqlalchemy._db.urls import _check_backend, _is_memory
from active_data_flow.errors import (
    ConfigurationError,
)
from active_data_flow.masking import mask_text, mask_url

__all__ = ["configure_sqlite", "make_engine"]


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
