"""The engine cache and the named databases the connectors' ``database`` option names."""

from __future__ import annotations

import os
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from active_data_flow.connectors.sqlalchemy._db._base import DEFAULT_NAME, Profile
from active_data_flow.connectors.sqlalchemy._db.database import Database, RetryPolicy
from active_data_flow.connectors.sqlalchemy._db.engines import (
    _made,
    _parse,
    make_engine,
)
from active_data_flow.errors import (
    ConfigurationError,
)
from active_data_flow.masking import mask_url

__all__ = [
    "cached_database",
    "check_reference",
    "dispose_engines",
    "engine_for",
    "register_database",
    "registered_databases",
    "registered_name",
    "registered_name_of_url",
    "resolve_database",
    "unregister_database",
]


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
