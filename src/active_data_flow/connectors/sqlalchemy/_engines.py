"""Databases: named engines, the URL -> engine cache, connecting, retrying with backoff.

A connector's ``database`` option is a name registered with :func:`register_database`, a
URL, a live :class:`~sqlalchemy.engine.Engine`, or unset (the model's registered database,
else the one named ``"default"``). Engines made here from URLs are cached per URL (one pool
per database per process), use ``pool_pre_ping`` so a connection that died while idle is
replaced transparently, and are disposed by :func:`dispose_engines`; engines the
application passes in are used as they are and never disposed here.

Every message and log line names the database with its password masked.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from active_data_flow.connectors.sqlalchemy._errors import (
    Role,
    describe,
    is_transient_db_error,
    translate,
)
from active_data_flow.errors import ConfigurationError, ConnectorTimeout

__all__ = [
    "Database",
    "RetryPolicy",
    "connect",
    "dispose_engines",
    "register_database",
    "registered_databases",
    "release",
    "resolve_database",
    "retrying",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_NAME = "default"


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


@dataclass(eq=False, slots=True)
class Database:
    """An engine with the name it is known by and the retry policy that applies to it."""

    engine: Engine
    name: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    owned: bool = False  # made here from a URL: ours to dispose

    @property
    def label(self) -> str:
        """``database 'name' (url with the password masked)`` for messages and logs."""
        url = self.engine.url.render_as_string(hide_password=True)
        return f"database {self.name!r} ({url})" if self.name else f"database {url}"

    @property
    def dialect(self) -> str:
        """The dialect's name: ``sqlite``, ``postgresql``, ``mysql``..."""
        return self.engine.dialect.name

    def mask(self, text: str) -> str:
        """``text`` with the database password replaced by ``***``."""
        password = self.engine.url.password
        return text.replace(str(password), "***") if password else text


_lock = threading.RLock()
_named: dict[str, Database] = {}
_by_url: dict[str, Database] = {}


def register_database(
    name: str,
    url_or_engine: str | sa.URL | Engine,
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
        url_or_engine: a SQLAlchemy URL (an engine is created, with ``pool_pre_ping``,
            and disposed by :func:`dispose_engines`) or an engine the application owns.
        retries: tries in all for transient errors (connection refused, reset or timed out,
            deadlocks); 1 disables retrying.
        backoff: the first pause between tries in seconds; pauses double after each try.
        sqlite_wal: switch a SQLite file to write-ahead logging (see below); only with a URL.
        **engine_options: passed to :func:`sqlalchemy.create_engine` (``pool_size``,
            ``pool_timeout``, ``connect_args``...); only with a URL.

    A SQLite file opened from a URL is switched to write-ahead logging (``journal_mode=WAL``,
    as Rails does since 7.1): readers no longer block writers, and a commit costs one fsync
    instead of four while staying just as durable (``synchronous`` keeps SQLite's default,
    FULL). The mode is a property of the file and stays with it; pass ``sqlite_wal=False``
    to keep the file's journal mode, e.g. on a network file system, where WAL does not work.

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
        db = Database(url_or_engine, name, policy, owned=False)
    else:
        engine = _create_engine(url_or_engine, engine_options, sqlite_wal=sqlite_wal)
        db = Database(engine, name, policy, owned=True)
    with _lock:
        previous = _named.get(name)
        _named[name] = db
    if previous is not None and previous.owned and previous.engine is not db.engine:
        previous.engine.dispose()
    return db.engine


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
    """Forget a registered database (disposing its engine if it was created here)."""
    with _lock:
        db = _named.pop(name, None)
    if db is not None and db.owned:
        db.engine.dispose()


def dispose_engines() -> None:
    """Close the pooled connections of every engine created here (at shutdown, in tests)."""
    with _lock:
        owned = [db for db in [*_named.values(), *_by_url.values()] if db.owned]
        _by_url.clear()
    for db in owned:
        db.engine.dispose()


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
                f"{what}: option 'database': {_mask_url_text(value)!r} is not a registered "
                "database; specs from the flow store or the web API may only name registered "
                f"databases (registered: {known})",
                option="database",
            )
        return
    if "://" in value:
        try:
            sa.make_url(value)
        except (sa.exc.ArgumentError, ValueError) as exc:
            raise ConfigurationError(
                f"{what}: option 'database': {_mask_url_text(value)!r} is not a valid "
                f"SQLAlchemy URL: {_mask_url_text(str(exc))}", option="database",
            ) from None


def resolve_database(ref: str | Engine | None, default_name: str | None, what: str) -> Database:
    """The :class:`Database` a connector uses: its option, its model's, else ``"default"``."""
    if isinstance(ref, Engine):
        return Database(ref, registered_name(ref), _named_policy(ref))
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
            known = ", ".join(sorted(_named)) or "none"
            raise ConfigurationError(
                f"{what}: database {ref!r} is not registered (registered: {known}) and is not "
                "a URL", option="database",
            )
        db = _by_url.get(ref)
        if db is None:
            db = Database(_create_engine(ref, {}), None, RetryPolicy(), owned=True)
            _by_url[ref] = db
        return db


def _named_policy(engine: Engine) -> RetryPolicy:
    with _lock:
        for db in _named.values():
            if db.engine is engine:
                return db.retry
    return RetryPolicy()


def _create_engine(
    url: str | sa.URL, options: dict[str, Any], *, sqlite_wal: bool = True
) -> Engine:
    try:
        engine = sa.create_engine(url, **{"pool_pre_ping": True, **options})
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError, TypeError) as exc:
        raise ConfigurationError(
            f"cannot create an engine for {_mask_url_text(str(url))}: {exc}", option="database"
        ) from exc
    database = engine.url.database or ""
    if sqlite_wal and engine.dialect.name == "sqlite" and database not in ("", ":memory:") \
            and not database.startswith("file::memory:"):
        sa.event.listen(engine, "connect", _use_wal)
    return engine


def _use_wal(dbapi_connection: Any, record: Any) -> None:
    # Idempotent, and a no-op (the old mode is kept) where WAL is impossible. A file another
    # connection holds may refuse the switch for now: connecting must not fail for that.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    except Exception as exc:
        log.debug("could not switch a SQLite file to WAL (%s); keeping its journal mode", exc)
    finally:
        cursor.close()


_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def _mask_url_text(text: str) -> str:
    try:
        return sa.make_url(text).render_as_string(hide_password=True)
    except Exception:  # not a URL: mask anything shaped like user:password@
        return _PASSWORD_IN_URL.sub(r"\1***@", text)


def _after_fork_in_child() -> None:
    # A forked worker must not share its parent's sockets: drop the pools without closing
    # (closing would end the parent's sessions); the child opens its own connections.
    with _lock:
        for db in [*_named.values(), *_by_url.values()]:
            if db.owned:
                db.engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def connect(db: Database, role: Role) -> Connection:
    """A connection from ``db``'s pool, retrying transient failures with backoff.

    This is the connectivity check of a connector's first read or write.

    Raises:
        ConnectorTimeout: the database stayed unreachable; the message names it.
    """
    try:
        return retrying(db, role, "connecting", db.engine.connect, connect_phase=True)
    except ConnectorTimeout as exc:
        cause = exc.__cause__
        detail = db.mask(describe(cause)) if cause is not None else str(exc)
        raise ConnectorTimeout(
            f"{role}: cannot connect to {db.label} after {db.retry.attempts} attempt(s): "
            f"{detail}"
        ) from cause


def retrying(
    db: Database,
    role: Role,
    action: str,
    fn: Callable[[], T],
    *,
    connect_phase: bool = False,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Call ``fn``, retrying transient database errors per ``db.retry``.

    While connecting (``connect_phase``) any driver error counts as transient: a refused
    or reset connection is an ``OperationalError`` that is not yet "invalidated".
    """
    attempt = 1
    while True:
        try:
            return fn()
        except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
            transient = connect_phase or is_transient_db_error(exc)
            if not transient:
                raise translate(exc, db, role, action) from exc
            if attempt >= db.retry.attempts:
                raise ConnectorTimeout(
                    f"{role} ({db.label}): {action} failed after {attempt} attempt(s): "
                    f"{db.mask(describe(exc))}"
                ) from exc
            pause = db.retry.pause(attempt)
            log.warning(
                "%s (%s): %s failed (%s); retrying in %.2fs (attempt %d of %d)",
                role, db.label, action, db.mask(describe(exc)), pause, attempt + 1,
                db.retry.attempts, extra={"action": "db_retry", "database": db.name},
            )
            if on_retry is not None:
                on_retry()
            time.sleep(pause)
            attempt += 1


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
